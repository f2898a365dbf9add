import type { Namespace } from 'etcd3'
import { onAbort, type StopSignal } from '../util/abort.js'
import { log } from '../util/log.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'

/**
 * Resolves `'deleted'` once `key` is deleted, watched (DELETE events only) from `fromRevision`,
 * so a delete that already happened counts. Resolves `'interrupted'` when the watch ends without
 * a delete (its start revision was compacted, etcd refused it, or a watch from `'now'` lost its
 * stream before etcd created it): the caller must read again. Rejects with `signal.reason` when
 * the signal aborts first. `onWatching` is called when etcd has created the watch (again after a
 * broken stream), with etcd's revision then: when it is `fromRevision` or later, etcd serves the
 * watch from its catch-up loop (up to 100 ms later), not as events happen.
 *
 * The CLI's `release` and the fenced writer wait with it; a lock's waiter has its own wait
 * (`TurnWait`, src/lock/turn-wait.ts), which weighs its own key's delete against its predecessor's.
 */
export function deletedOrInterrupted(
  client: Namespace,
  key: string,
  fromRevision: bigint | 'now',
  signal: StopSignal,
  onWatching?: (revision: bigint) => void,
): Promise<'deleted' | 'interrupted'> {
  if (signal.aborted) return Promise.reject(signal.reason)
  const whole = namespacePrefix(client) + key
  return new Promise((resolve, reject) => {
    let settled = false
    const finish = (settle: () => void) => {
      if (settled) return
      settled = true
      forgetAbort()
      void watch.cancel()
      settle()
    }
    const forgetAbort = onAbort(signal, () => finish(() => reject(signal.reason)))
    const watch = watchHubOf(client).watch(
      { key: whole, only: 'delete', from: fromRevision },
      {
        created: (revision) => settled || onWatching?.(revision),
        events: (events) => {
          if (events.some((event) => event.kv.key.toString() === whole)) {
            finish(() => resolve('deleted'))
          }
        },
        interrupted: (why) => {
          log.lock('watch on %s ended (%s); reading again', key, why)
          finish(() => resolve('interrupted'))
        },
      },
    )
  })
}
