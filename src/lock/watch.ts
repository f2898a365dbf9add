import { type Namespace, Range } from 'etcd3'
import { log } from '../util/log.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'

/** What a watch covers: one key, or every key under a prefix. */
export type Watched = { key: string } | { prefix: string }

/**
 * Resolves with the first of `keys` deleted, watched (DELETE events only) over `watched` from
 * `fromRevision`, so a delete that already happened counts. When one watch response deletes
 * several of them, the one listed first in `keys` wins. Resolves `'interrupted'` when the watch
 * ends without a delete (its start revision was compacted, etcd refused it, or a watch from
 * `'now'` lost its stream before etcd created it): the caller must read again. Rejects with
 * `signal.reason` when the signal aborts first. `onWatching` is called when etcd has created the
 * watch (again after a broken stream), with etcd's revision then: when it is `fromRevision` or
 * later, etcd serves the watch from its catch-up loop (up to 100 ms later), not as events happen.
 */
export function firstDeleted(
  client: Namespace,
  watched: Watched,
  keys: readonly string[],
  fromRevision: bigint | 'now',
  signal: AbortSignal,
  onWatching?: (revision: bigint) => void,
): Promise<string | 'interrupted'> {
  if (signal.aborted) return Promise.reject(signal.reason)
  const ns = namespacePrefix(client)
  const start = Buffer.from(ns + ('key' in watched ? watched.key : watched.prefix))
  const rangeEnd = 'key' in watched ? undefined : Range.prefix(start).end
  const whole = keys.map((key) => ns + key)
  return new Promise((resolve, reject) => {
    let settled = false
    const finish = (settle: () => void) => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      void watch.cancel()
      settle()
    }
    const onAbort = () => finish(() => reject(signal.reason))
    signal.addEventListener('abort', onAbort, { once: true })
    const watch = watchHubOf(client).watch(
      {
        key: start,
        rangeEnd,
        only: 'delete',
        from: fromRevision,
      },
      {
        created: (revision) => settled || onWatching?.(revision),
        // A whole response at once: the deletes of one revision (one txn) arrive together.
        events: (events) => {
          const deleted = new Set<string>()
          for (const event of events) deleted.add(event.kv.key.toString())
          const first = whole.findIndex((key) => deleted.has(key))
          const key = keys[first]
          if (key !== undefined) finish(() => resolve(key))
        },
        interrupted: (why) => {
          log.lock('watch on %s ended (%s); reading again', describe(watched), why)
          finish(() => resolve('interrupted'))
        },
      },
    )
  })
}

/** {@link firstDeleted} of one key: `'deleted'` once `key` is deleted, or `'interrupted'`. */
export async function deletedOrInterrupted(
  client: Namespace,
  key: string,
  fromRevision: bigint | 'now',
  signal: AbortSignal,
  onWatching?: (revision: bigint) => void,
): Promise<'deleted' | 'interrupted'> {
  const outcome = await firstDeleted(client, { key }, [key], fromRevision, signal, onWatching)
  return outcome === 'interrupted' ? outcome : 'deleted'
}

function describe(watched: Watched): string {
  return 'key' in watched ? watched.key : `${watched.prefix}*`
}
