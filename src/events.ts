/**
 * What an {@link Etcd3Locker} tells its listeners (`locker.on(name, listener)`): for logs,
 * metrics and tests. Listeners run synchronously and must not throw.
 */
export interface LockerEvents {
  /** etcd granted a session: `lease` in hex, `ttl` the granted TTL in seconds. */
  sessionGranted: [info: { lease: string; ttl: number }]
  /** The session ended: lease expired, etcd forgot it, or `close()` revoked it. */
  sessionLost: [info: { lease: string; reason: string }]
  /** A `lock()` resolved after waiting `waitedMs`. */
  lockAcquired: [info: { id: string; waitedMs: number }]
  /** A held lock was unlocked after `heldMs`. */
  lockReleased: [info: { id: string; heldMs: number }]
  /** A holder's `requestRelease` was called, and why. */
  releaseRequested: [info: { id: string; reason: string }]
  /** A `lock()` rejected: `error` is what it rejected with. */
  lockFailed: [info: { id: string; error: unknown }]
}
