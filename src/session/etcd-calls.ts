import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
} from 'etcd3'
import { AuthenticationError, LockerError, PermissionDeniedError } from '../errors.js'
import { delay } from '../util/abort.js'
import { log } from '../util/log.js'
import type { Session } from './session.js'

/**
 * Whether retrying the same idempotent etcd call may succeed. Auth, permission and argument errors
 * will not change by waiting, and a lease etcd no longer knows is a lost session.
 */
export function isRetryable(error: unknown): boolean {
  return !(
    error instanceof LockerError ||
    error instanceof EtcdLeaseInvalidError ||
    error instanceof EtcdPermissionDeniedError ||
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    error instanceof GRPCUnauthenticatedError ||
    error instanceof GRPCInvalidArgumentError
  )
}

/**
 * `error` as one of our errors when etcd refused the call for who we are: a
 * {@link PermissionDeniedError} (RBAC: no permission on `key`, under the root `prefix`) or an
 * {@link AuthenticationError} (bad or missing credentials). Any other error is returned as is.
 */
export function accessError(
  error: unknown,
  where: { key: string; prefix: string; endpoints?: string },
): unknown {
  if (error instanceof EtcdPermissionDeniedError) {
    return new PermissionDeniedError(where.key, where.prefix, error)
  }
  if (isAuthenticationFailure(error)) return new AuthenticationError(error, where.endpoints)
  return error
}

/** Whether etcd rejected the client's credentials (or their absence, with auth enabled). */
export function isAuthenticationFailure(error: unknown): boolean {
  return (
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    error instanceof GRPCUnauthenticatedError ||
    // etcd with auth enabled answers a client without `auth` options so (gRPC INVALID_ARGUMENT).
    (error instanceof GRPCInvalidArgumentError && /user name is empty/.test(error.message))
  )
}

// Short and capped at 250 ms: after an election, a lock waiting to retry must not sleep past the
// moment etcd has a leader again (the calls fail fast meanwhile, see createEtcdClient).
const BACKOFF_MS = [50, 100, 250]

/** Back-off before retry number `attempt` (0-based). */
export function backoffMs(attempt: number): number {
  return BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] ?? 250
}

/**
 * Deadline of every unary etcd call. Without one, a call on a connection that a network
 * partition silently dropped waits for TCP to give up, minutes later.
 */
export const CALL_TIMEOUT_MS = 2_000

/** gRPC call options with {@link CALL_TIMEOUT_MS} as deadline, for one call. */
export function callOptions(): { deadline: Date } {
  return { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }
}

/**
 * Deadline of the lock cycle's calls (enqueue, queue read, delete), all safe to repeat. When the
 * leader dies, a follower forwards the calls it gets to it until the election, and they are
 * lost: only their deadline ends them. A short one lets the retry reach the new leader soon
 * after it is elected, instead of up to {@link CALL_TIMEOUT_MS} later.
 */
export const LOCK_CALL_TIMEOUT_MS = 500

/** gRPC call options with {@link LOCK_CALL_TIMEOUT_MS} as deadline, for one lock-cycle call. */
export function lockCallOptions(): { deadline: Date } {
  return { deadline: new Date(Date.now() + LOCK_CALL_TIMEOUT_MS) }
}

/**
 * Runs an idempotent etcd `call` until it succeeds, fails for good, or `session` is lost (the
 * session's keys then go with its lease, so the call no longer matters). Never rejects.
 */
export async function retryWhileSessionLives(
  session: Session,
  call: () => Promise<unknown>,
  what: string,
): Promise<void> {
  for (let attempt = 0; !session.isLost; attempt++) {
    try {
      await call()
      return
    } catch (error) {
      if (!isRetryable(error)) {
        log.lock('cannot %s: %s', what, error)
        return
      }
      log.lock('%s failed (%s), retrying', what, error)
      await delay(backoffMs(attempt), session.signal).catch(() => undefined)
    }
  }
}
