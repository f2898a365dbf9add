/** Why a holder was asked to release its lock. */
export type ReleaseCause =
  | 'local-waiter'
  | 'remote-waiter'
  | 'session-lost'
  | 'key-deleted'
  | 'shutdown'

/**
 * What an {@link Etcd3Locker} tells its listeners (`locker.on(name, listener)`): for logs,
 * metrics and tests. Listeners run synchronously, once the change they tell of is complete. A
 * listener that throws changes nothing of a lock: its error is reported (a process warning
 * with code `TUS_ETCD3_LOCKER_LISTENER_THREW`, once per event; every one in the debug log) and
 * the other listeners still run.
 */
export interface LockerEvents {
  /** etcd granted a session. */
  sessionGranted: [
    info: {
      /** The lease, in hex (as `etcdctl lease list` prints it). */
      lease: string
      /** The TTL etcd granted, in seconds (etcd may raise a small one to its minimum). */
      ttl: number
    },
  ]
  /** The session ended: lease expired, etcd forgot it, or `close()` revoked it. */
  sessionLost: [
    info: {
      /** The lease, in hex. */
      lease: string
      /** Why, in words. */
      reason: string
      /** `true` when `close()` ended it: a shutdown, not a loss. */
      closed: boolean
    },
  ]
  /** A `lock()` resolved. */
  lockAcquired: [
    info: {
      /** The upload id. */
      id: string
      /** How long `lock()` waited, in ms. */
      waitedMs: number
      /** It took the key kept from this process's last unlock of the upload (no etcd call). */
      retained: boolean
    },
  ]
  /** A held lock was unlocked. */
  lockReleased: [
    info: {
      /** The upload id. */
      id: string
      /** How long it was held, in ms. */
      heldMs: number
    },
  ]
  /** A holder's `requestRelease` was called. */
  releaseRequested: [
    info: {
      /** The upload id. */
      id: string
      /**
       * Who wants the upload: another request of this process, another client's queue entry,
       * the session was lost, the lock's key was deleted in etcd by someone else, or `close()`
       * with `drain` shuts this process down.
       */
      cause: ReleaseCause
      /** The same in words, naming the other client's lease when there is one. */
      reason: string
      /**
       * For `remote-waiter`: the other client's lease in hex (the last segment of its queue
       * key: `etcdctl lease list` and the CLI's `sessions` show it).
       */
      waiter: string | undefined
    },
  ]
  /**
   * A `lock()` has waited a second and still waits (once per call): for logs that say why a
   * request is slow.
   */
  lockWaiting: [
    info: {
      /** The upload id. */
      id: string
      /** How long it has waited, in ms. */
      waitedMs: number
      /**
       * What it waits on: `local-request` (another request of this process for the upload),
       * `queue-entry` (the etcd queue entry ahead of it: `holder`), or `etcd` (a session grant,
       * the enqueue, a call being retried: etcd is slow or unreachable).
       */
      waitingOn: 'local-request' | 'queue-entry' | 'etcd'
      /**
       * With `queue-entry`: the lease (hex) of the entry ahead, the holder or the next waiter
       * before it, often another instance's session.
       */
      holder: string | undefined
    },
  ]
  /** A `lock()` rejected. */
  lockFailed: [
    info: {
      /** The upload id. */
      id: string
      /** What `lock()` rejected with. */
      error: unknown
    },
  ]
}
