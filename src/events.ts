/**
 * What an {@link Etcd3Locker} tells its listeners (`locker.on(name, listener)`): for logs,
 * metrics and tests. Listeners run synchronously and must not throw.
 */
/** Why a holder was asked to release its lock. */
export type ReleaseCause = 'local-waiter' | 'remote-waiter' | 'session-lost' | 'key-deleted'

export interface LockerEvents {
  /** etcd granted a session: `lease` in hex, `ttl` the granted TTL in seconds. */
  sessionGranted: [info: { lease: string; ttl: number }]
  /** The session ended: lease expired, etcd forgot it, or `close()` revoked it. */
  sessionLost: [info: { lease: string; reason: string }]
  /**
   * A `lock()` resolved after waiting `waitedMs`; `retained` when it took the key kept from this
   * process's last unlock of the upload (no etcd call).
   */
  lockAcquired: [info: { id: string; waitedMs: number; retained: boolean }]
  /** A held lock was unlocked after `heldMs`. */
  lockReleased: [info: { id: string; heldMs: number }]
  /**
   * A holder's `requestRelease` was called: `cause` says who wants the upload (another request
   * of this process, another client's queue entry, the session was lost, or the lock's key was
   * deleted in etcd by someone else), `reason` in words.
   */
  releaseRequested: [info: { id: string; cause: ReleaseCause; reason: string }]
  /** A `lock()` rejected: `error` is what it rejected with. */
  lockFailed: [info: { id: string; error: unknown }]
}
