/**
 * Errors of this package. Each carries `status_code` and `body` like `ERRORS` of `@tus/utils`,
 * so `@tus/server` answers a tus client with them instead of a bare 500.
 * Aborts, and timeouts behind another request of this process, use `ERRORS.ERR_LOCK_TIMEOUT`
 * of `@tus/utils` itself (as `MemoryLocker`); a timeout while waiting on etcd is a
 * {@link LockTimeoutError}, which says what it waited for.
 */

import { etcdErrorText } from './util/etcd-error-text.js'

/** Base class: an error `@tus/server` can turn into an HTTP response. */
export class LockerError extends Error {
  /** The HTTP status `@tus/server` answers with. */
  readonly status_code: number
  /** The response body `@tus/server` sends: the message and a newline. */
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
    super(
      `etcd at ${endpoints} did not grant a lock session within ${timeoutMs} ms: ${describeCause(cause)}`,
      503,
      { cause },
    )
  }
}

/**
 * etcd rejected the client's credentials (`auth: { username, password }` of the etcd3 client):
 * wrong password, unknown user, or no user while etcd has auth enabled. Not retried: waiting
 * does not fix a password. The tus client gets a 500, as for any server misconfiguration.
 */
export class AuthenticationError extends LockerError {
  /** @param endpoints The client's endpoints, when known. */
  constructor(cause: unknown, endpoints?: string) {
    const etcd = endpoints === undefined ? 'etcd' : `etcd at ${endpoints}`
    super(
      `${etcd} rejected the credentials of the etcd client (auth: { username, password }): ${messageOf(cause)}`,
      500,
      { cause },
    )
  }
}

/**
 * etcd's RBAC denied this user access to `key` (a key or key prefix of this locker): the user's
 * roles do not grant readwrite on the locker's prefix. Not retried, and nothing was written.
 */
export class PermissionDeniedError extends LockerError {
  /** The key or key prefix etcd refused. */
  readonly key: string

  constructor(key: string, prefix: string, cause: unknown) {
    super(
      `etcd denied access to ${key}: the etcd user needs readwrite permission on the prefix ${prefix}/ (etcdctl role grant-permission <role> --prefix=true readwrite ${prefix}/): ${messageOf(cause)}`,
      500,
      { cause },
    )
    this.key = key
  }
}

function messageOf(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause ?? 'no answer')
}

// What gRPC/OpenSSL say when the TLS handshake fails, on either side.
const PEER_REJECTED_US =
  /alert (bad certificate|certificate required|unknown ca|handshake failure)/i
const WE_REJECTED_PEER =
  /unable to verify|self[- ]signed|certificate (has expired|is not yet valid)|altname|does not match certificate|unable to get (local )?issuer/i

/** The cause of a failed grant, with a hint when it is a TLS problem (gRPC's text alone is cryptic). */
function describeCause(cause: unknown): string {
  const why = etcdErrorText(cause)
  if (PEER_REJECTED_US.test(why)) {
    return `TLS handshake refused by etcd: it requires a client certificate signed by a CA it trusts (--trusted-ca-file); set credentials.privateKey and credentials.certChain of the etcd3 client (${why})`
  }
  if (WE_REJECTED_PEER.test(why)) {
    return `TLS: etcd's server certificate was not accepted; credentials.rootCertificate of the etcd3 client must be the CA that signed it, for the host name in the endpoint (${why})`
  }
  return why
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

/**
 * `lock()` waited `acquireLockTimeout` ms in etcd: for the queue entry ahead of it (another
 * instance, `etcdctl lock` or a Go client holds the upload), or for etcd itself to answer. Like
 * `ERRORS.ERR_LOCK_TIMEOUT` it is a 500 whose body starts with `failed to acquire lock before
 * timeout`, and it goes on to name etcd and what it waited for, so the tus client's answer and
 * the log point the operator at etcd.
 */
export class LockTimeoutError extends LockerError {
  /** The upload id. */
  readonly id: string
  /** What the request waited on when the time ran out. */
  readonly waitingOn: 'queue-entry' | 'etcd'
  /** For `queue-entry`: the lease (hex) of the entry ahead, the last segment of its key. */
  readonly holder: string | undefined

  constructor(info: {
    id: string
    waitedMs: number
    waitingOn: 'queue-entry' | 'etcd'
    holder: string | undefined
    queuePrefix: string
    endpoints: string
  }) {
    const waited = `${ERR_LOCK_TIMEOUT_BODY}: upload ${JSON.stringify(info.id)} waited ${info.waitedMs} ms (acquireLockTimeout)`
    super(
      info.waitingOn === 'queue-entry'
        ? `${waited} in its etcd queue at ${info.endpoints} behind ${info.queuePrefix}${info.holder ?? ''}, the entry of lease ${info.holder ?? 'unknown'} (another instance, etcdctl lock or a Go client holds the upload; 'tus-etcd3-locker locks' shows who)`
        : `${waited} for etcd at ${info.endpoints}, which did not answer its lock calls in time: is etcd up, with a leader?`,
      500,
    )
    this.id = info.id
    this.waitingOn = info.waitingOn
    this.holder = info.holder
  }
}

/** The start of `ERRORS.ERR_LOCK_TIMEOUT.body` of `@tus/utils`: what tus clients know. */
const ERR_LOCK_TIMEOUT_BODY = 'failed to acquire lock before timeout'
