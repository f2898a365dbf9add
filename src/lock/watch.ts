import type { Namespace } from 'etcd3'
import { log } from '../util/log.js'

/** What a watch covers: one key, or every key under a prefix. */
export type Watched = { key: string } | { prefix: string }

/**
 * Resolves with the first of `keys` deleted, watched (DELETE events only) over `watched` from
 * `fromRevision`, so a delete that already happened counts. When one watch response deletes
 * several of them, the one listed first in `keys` wins. Resolves `'interrupted'` when etcd
 * cancels the watch (compaction) or its stream breaks: the etcd3 client resumes a broken watch
 * from the revision of its create response, which can skip events it had not delivered yet, so
 * the caller must read again rather than trust it. Rejects with `signal.reason` when the signal
 * aborts first. `onWatching` is called once etcd has created the watch, with etcd's revision
 * then: when it is `fromRevision` or later, etcd serves the watch from its catch-up loop (up to
 * 100 ms later), not as events happen.
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
  return new Promise((resolve, reject) => {
    const builder = client.watch()
    const ranged = 'key' in watched ? builder.key(watched.key) : builder.prefix(watched.prefix)
    const deletes = ranged.only('delete')
    // 'now': from the revision after the one etcd has when it creates the watch, which etcd
    // always serves live (a watch from an older revision waits for its catch-up loop).
    const watcher = (
      fromRevision === 'now' ? deletes : deletes.startRevision(fromRevision.toString())
    ).watcher()
    let settled = false
    const finish = (settle: () => void, cancel = true) => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      if (cancel) watcher.cancel().catch(() => undefined)
      settle()
    }
    const onAbort = () => finish(() => reject(signal.reason))
    signal.addEventListener('abort', onAbort, { once: true })
    if (onWatching) {
      watcher.once('connected', (res) => settled || onWatching(BigInt(res.header.revision)))
    }
    // A whole response at once: the deletes of one revision (one txn) arrive together.
    watcher.on('data', (res) => {
      const deleted = new Set(res.events.map((event) => event.kv.key.toString()))
      const first = keys.find((key) => deleted.has(key))
      if (first !== undefined) finish(() => resolve(first))
    })
    // Stays attached after finish: an 'error' without a listener would crash the process.
    watcher.on('error', (error) => {
      log.lock('watch on %s cancelled by etcd (%s); reading again', describe(watched), error)
      // Gone from the client already: cancelling it again sends a cancel whose answer the etcd3
      // client cannot match, and it throws (a crash of the process).
      finish(() => resolve('interrupted'), false)
    })
    watcher.on('disconnected', () => finish(() => resolve('interrupted')))
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
