/**
 * Errors of this package. Each carries `status_code` and `body` like `ERRORS` of `@tus/utils`,
 * so `@tus/server` answers a tus client with them instead of a bare 500.
 * Acquire timeouts and aborts use `ERRORS.ERR_LOCK_TIMEOUT` of `@tus/utils` itself.
 */

/** Base class: an error `@tus/server` can turn into an HTTP response. */
export class LockerError extends Error {
  readonly status_code: number
  readonly body: string

  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.status_code = status
    this.body = `${message}\n`
  }
}

/** `lock()` was called, or was waiting, when `close()` ran. */
export class LockerClosedError extends LockerError {
  constructor() {
    super('the upload locker is closed', 503)
  }
}

/** etcd did not grant a session within `grantTimeout`, or refused to. */
export class SessionUnavailableError extends LockerError {
  constructor(endpoints: string, timeoutMs: number, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause ?? 'no answer')
    super(`etcd at ${endpoints} did not grant a lock session within ${timeoutMs} ms: ${why}`, 503, {
      cause,
    })
  }
}

/** The session (lease) that held or queued this lock ended: etcd may give the lock to another. */
export class SessionLostError extends LockerError {
  constructor(reason: string) {
    super(`the etcd lock session was lost: ${reason}`, 503)
  }
}

/** This process's queue entry for the upload vanished from etcd (session expired, or deleted by hand). */
export class LockLostError extends LockerError {
  constructor(key: string) {
    super(`the lock key ${key} is gone from etcd: the lock was lost`, 503)
  }
}
