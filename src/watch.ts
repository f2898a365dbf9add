import type { Namespace } from 'etcd3'
import { log } from './log.js'

/**
 * Resolves `'deleted'` when `key` is deleted: watched from `fromRevision`, so a delete that
 * already happened counts. Resolves `'interrupted'` when etcd cancels the watch (compaction) or
 * its stream breaks: the etcd3 client resumes a broken watch from the revision of its create
 * response, which can skip events it had not delivered yet, so the caller must read again rather
 * than trust it. Rejects with `signal.reason` when the signal aborts first.
 */
export function deletedOrInterrupted(
  client: Namespace,
  key: string,
  fromRevision: bigint,
  signal: AbortSignal,
): Promise<'deleted' | 'interrupted'> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const watcher = client.watch().key(key).startRevision(fromRevision.toString()).watcher()
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
    watcher.on('delete', () => finish(() => resolve('deleted')))
    // Stays attached after finish: an 'error' without a listener would crash the process.
    watcher.on('error', (error) => {
      log.lock('watch on %s cancelled by etcd (%s); reading again', key, error)
      finish(() => resolve('interrupted'))
    })
    watcher.on('disconnected', () => finish(() => resolve('interrupted')))
  })
}
