import type { Lock, RequestRelease } from '@tus/utils'
import { type HoldSlot, type LockContext, LockRequest } from './lock-request.js'

/**
 * An upload lock (a `Lock` of `@tus/utils`), made by `Etcd3Locker.newLock(id)`. It behaves like
 * `MemoryLocker`'s: it may be locked again after `unlock()`, and a second `lock()` while it holds
 * or waits queues like any other request of this process for the upload (it asks the holder to
 * release, and times out with `ERRORS.ERR_LOCK_TIMEOUT`).
 */
export class Etcd3Lock implements Lock {
  /**
   * The request that holds, set by the request itself as it takes the lock: this lock is its
   * requests' hold slot (see `HoldSlot`), not an object beside it, one less per held lock and
   * waiter. Not part of the API.
   */
  private holding: LockRequest | undefined

  constructor(
    private readonly context: LockContext,
    /** The upload id, as given. */
    readonly id: string,
    /** `P/<escaped id>/`: where this upload's queue lives in etcd. */
    readonly queuePrefix: string,
  ) {}

  /**
   * Waits for the lock. Rejects with `ERRORS.ERR_LOCK_TIMEOUT` when `signal` aborts or
   * `acquireLockTimeout` passes first (after deleting this request's queue key), with
   * `LockerClosedError` after `close()`, with `SessionUnavailableError` when etcd does not grant a
   * session, with `SessionLostError` when the session ends while waiting, and with `LockLostError`
   * when this request's queue key is deleted by someone else while it waits.
   * `requestRelease` is called (at most once per hold) when another request wants this upload.
   */
  lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    // Not an async function: its suspended frame would stay with every waiter for as long as it
    // waits (thousands in a process may), and the request sets `holding` itself. It still never
    // throws, as an async function would not (called without its object, say).
    try {
      return new LockRequest(this.context, this as unknown as HoldSlot).lock(signal, requestRelease)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * Releases the lock this `Lock` holds: deletes its key (if it is still ours) and lets the next
   * request go. Resolves at once: the delete is sent in the background and retried until etcd has
   * it or the session ends; the next request of this process for this upload waits for it, and
   * `close()` revokes the session anyway. Idempotent: a second call, or a call on a lock that
   * holds nothing, resolves and does nothing.
   */
  unlock(): Promise<void> {
    const request = this.holding
    this.holding = undefined
    return request?.unlock() ?? Promise.resolve()
  }

  /** Our lock key and its create revision while this lock holds: what KV writes are fenced by. */
  heldEntry():
    | {
        /** The lock key in etcd. */
        key: string
        /** Its create revision. */
        revision: bigint
      }
    | undefined {
    return this.holding?.heldEntry()
  }
}
