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
 * aborts first.
 */
export function firstDeleted(
  client: Namespace,
  watched: Watched,
  keys: readonly string[],
  fromRevision: bigint,
  signal: AbortSignal,
): Promise<string | 'interrupted'> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const builder = client.watch()
    const ranged = 'key' in watched ? builder.key(watched.key) : builder.prefix(watched.prefix)
    const watcher = ranged.only('delete').startRevision(fromRevision.toString()).watcher()
    let settled = false
    const finish = (settle: () => void) => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      watcher.cancel().catch(() => undefined)
      settle()
    }
    const onAbort = () => finish(() => reject(signal.reason))
    signal.addEventListener('abort', onAbort, { once: true })
    // A whole response at once: the deletes of one revision (one txn) arrive together.
    watcher.on('data', (res) => {
      const deleted = new Set(res.events.map((event) => event.kv.key.toString()))
      const first = keys.find((key) => deleted.has(key))
      if (first !== undefined) finish(() => resolve(first))
    })
    // Stays attached after finish: an 'error' without a listener would crash the process.
    watcher.on('error', (error) => {
      log.lock('watch on %s cancelled by etcd (%s); reading again', describe(watched), error)
      finish(() => resolve('interrupted'))
    })
    watcher.on('disconnected', () => finish(() => resolve('interrupted')))
  })
}

/** {@link firstDeleted} of one key: `'deleted'` once `key` is deleted, or `'interrupted'`. */
export async function deletedOrInterrupted(
  client: Namespace,
  key: string,
  fromRevision: bigint,
  signal: AbortSignal,
): Promise<'deleted' | 'interrupted'> {
  const outcome = await firstDeleted(client, { key }, [key], fromRevision, signal)
  return outcome === 'interrupted' ? outcome : 'deleted'
}

function describe(watched: Watched): string {
  return 'key' in watched ? watched.key : `${watched.prefix}*`
}
