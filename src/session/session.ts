import { setMaxListeners } from 'node:events'
import type {
  IDuplexStream,
  ILeaseKeepAliveRequest,
  ILeaseKeepAliveResponse,
  Namespace,
} from 'etcd3'
import { ClientClosedError } from 'etcd3'
import { AuthenticationError, SessionLostError, SessionUnavailableError } from '../errors.js'
import { leaseHex } from '../keys.js'
import { settledWithin } from '../util/abort.js'
import { log } from '../util/log.js'
import { timerDelay } from '../util/timers.js'
import { backoffMs, callOptions, isAuthenticationFailure, isRetryable } from './etcd-calls.js'

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>

/** What a session needs to be granted. */
export interface SessionSettings {
  /** TTL to ask for, in seconds. */
  ttl: number
  /** How long to keep trying to get a grant, in ms. */
  grantTimeout: number
  /** ms before the earliest possible expiry at which the session counts itself lost. */
  safetyMargin: number
  /** The client's endpoints, for error messages. */
  endpoints: string
}

// A monotonic clock: an NTP step of the wall clock must not move the local lease deadline.
const now = () => performance.now()

const REOPEN_BACKOFF_MS = [50, 100, 250]

/** A keepalive unanswered this long (ms) is sent again on a new stream. */
export const KEEPALIVE_ANSWER_MS = 500

// How long a lost session's lease is revoked again and again while etcd does not answer.
const LOST_REVOKE_WINDOW_MS = 5 * 60_000
const LOST_REVOKE_MAX_BACKOFF_MS = 5_000

/** The longest time between two keepalives (ms), whatever the TTL. */
export const MAX_KEEPALIVE_INTERVAL_MS = 1_000

/** Whether the etcd3 client was closed under a call: nothing will answer again. */
function isClientClosed(error: unknown): boolean {
  return error instanceof ClientClosedError
}

// After a few failures the etcd3 client stops calling etcd for a while (its circuit breaker)
// and every call then fails saying only that. Per client, the last failure that said why (e.g.
// the TLS handshake error), so a later grant on the same client can still name the cause.
const telling = new WeakMap<Namespace, unknown>()

/** cockatiel's open-circuit error, thrown by the etcd3 client while it lets a host rest. */
function isBrokenCircuit(error: unknown): boolean {
  return (error as { isBrokenCircuitError?: unknown } | null)?.isBrokenCircuitError === true
}

/**
 * One etcd lease per locker, kept alive every TTL/3 (the granted TTL, not the requested one) and
 * at least every second.
 *
 * The session also keeps a local deadline: the send time of the last answered keepalive plus the
 * granted TTL, minus the safety margin. etcd cannot expire the lease before that instant, so
 * when it passes unrenewed, or etcd answers that the lease is gone, {@link signal} aborts with a
 * {@link SessionLostError} and the locker stops trusting every key of this session.
 */
export class Session {
  /** Lower-case hex lease id: the last segment of every lock key of this session. */
  readonly leaseHex: string
  private readonly lost = new AbortController()
  private readonly sentAt: number[] = []
  private stream: KeepAliveStream | undefined
  private reopenAttempt = 0
  private readonly keepaliveTimer: NodeJS.Timeout
  private deadlineTimer: NodeJS.Timeout | undefined
  private answerTimer: NodeJS.Timeout | undefined
  /** Keepalives in a row that went unanswered past their wait. */
  private slowAnswers = 0
  /** ms between keepalives. */
  private readonly interval: number
  private deadline: number

  private constructor(
    private readonly client: Namespace,
    /** Decimal lease id, as etcd's API takes it. */
    readonly leaseId: string,
    /** The TTL etcd granted, in seconds. */
    readonly ttl: number,
    private readonly safetyMargin: number,
    grantSentAt: number,
  ) {
    this.leaseHex = leaseHex(leaseId)
    // Every lock of the session listens for its loss: many listeners are expected, not a leak.
    setMaxListeners(0, this.lost.signal)
    this.deadline = grantSentAt + ttl * 1_000 - safetyMargin
    this.armDeadline()
    // Clamped: a TTL of weeks would overflow the timer, which then fires every millisecond.
    // Every TTL/3, and at least every second: the answer to the last keepalive sent before an
    // etcd leader dies then leaves as much of the TTL as possible for the election.
    this.interval = timerDelay(Math.min((ttl * 1_000) / 3, MAX_KEEPALIVE_INTERVAL_MS))
    this.keepaliveTimer = setInterval(() => this.sendKeepalive(), this.interval)
    this.keepaliveTimer.unref()
    this.openStream()
  }

  /**
   * Grants a lease of `settings.ttl` seconds, retrying refused attempts (etcd not up yet) until
   * `settings.grantTimeout` has passed; then rejects with {@link SessionUnavailableError} naming
   * the cause (with a hint for TLS failures). Rejects at once with {@link AuthenticationError}
   * when etcd rejects the client's credentials. A grant that etcd answers after the timeout is
   * revoked, not leaked.
   */
  static async grant(client: Namespace, settings: SessionSettings): Promise<Session> {
    const { ttl, grantTimeout, safetyMargin, endpoints } = settings
    const giveUpAt = now() + grantTimeout
    let failure: unknown
    for (let attempt = 0; now() < giveUpAt; attempt++) {
      const sentAt = now()
      const granting = client.leaseClient.leaseGrant({ TTL: ttl }, callOptions())
      const answer = await settledWithin(
        granting.catch((error: unknown) => {
          if (!isBrokenCircuit(error)) {
            failure = error
            telling.set(client, error)
          } else {
            failure ??= telling.get(client) ?? error
          }
          throw error
        }),
        giveUpAt - sentAt,
      )
      if (answer !== undefined) {
        telling.delete(client)
        const session = new Session(client, answer.ID, Number(answer.TTL), safetyMargin, sentAt)
        log.session('granted lease %s, ttl %ds (asked %ds)', session.leaseHex, session.ttl, ttl)
        return session
      }
      // Waiting does not fix credentials: say so at once instead of after grantTimeout.
      if (isAuthenticationFailure(failure)) throw new AuthenticationError(failure, endpoints)
      // Still in flight at the deadline: revoke it should it be granted after all.
      granting.then(
        (late) =>
          client.leaseClient.leaseRevoke({ ID: late.ID }, callOptions()).catch(() => undefined),
        () => undefined,
      )
      const pause = Math.min(backoffMs(attempt), giveUpAt - now())
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause))
    }
    throw new SessionUnavailableError(endpoints, grantTimeout, failure ?? 'timed out')
  }

  /** Aborts, with a {@link SessionLostError} as reason, when the session is lost or revoked. */
  get signal(): AbortSignal {
    return this.lost.signal
  }

  get isLost(): boolean {
    return this.lost.signal.aborted
  }

  /**
   * Whether etcd certainly still has the lease now: not lost, and the local deadline not passed.
   * Checked on every cached read, because a busy event loop can run the deadline timer late.
   */
  get isTrusted(): boolean {
    return !this.isLost && now() < this.deadline
  }

  /** Revokes the lease: etcd deletes every key of this session at once. Never rejects. */
  async revoke(timeoutMs: number): Promise<void> {
    if (this.isLost) return
    this.markLost('revoked by close()')
    await settledWithin(
      this.client.leaseClient.leaseRevoke({ ID: this.leaseId }, callOptions()),
      timeoutMs,
    )
    log.session('revoked lease %s', this.leaseHex)
  }

  /** Ends the session locally (its keys expire with the lease); the signal aborts with `reason`. */
  markLost(reason: string): void {
    if (this.isLost) return
    clearInterval(this.keepaliveTimer)
    clearTimeout(this.deadlineTimer)
    clearTimeout(this.answerTimer)
    this.closeStream()
    log.session('lease %s lost: %s', this.leaseHex, reason)
    this.lost.abort(new SessionLostError(reason))
  }

  /**
   * Ends a session whose deadline passed, as {@link markLost} does, and later revokes its lease.
   * etcd may still hold the lease, and keep it: a cluster restarted from scratch restores leases
   * with a fresh TTL, and the keys would block every waiter (ours included) that long. The revoke
   * starts only when etcd could have expired the lease anyway (deadline + safety margin), so
   * holders keep the whole margin to stop; then it is retried, backing off, for a bounded time.
   */
  markExpired(reason: string): void {
    if (this.isLost) return
    this.markLost(reason)
    const startAt = this.deadline + this.safetyMargin
    const giveUpAt = startAt + LOST_REVOKE_WINDOW_MS
    const attempt = (n: number) => {
      this.client.leaseClient.leaseRevoke({ ID: this.leaseId }, callOptions()).then(
        () => log.session('revoked lost lease %s', this.leaseHex),
        (error: unknown) => {
          if (!isRetryable(error) || isClientClosed(error) || now() >= giveUpAt) return
          const wait = Math.min(LOST_REVOKE_MAX_BACKOFF_MS, 250 * 2 ** n)
          setTimeout(() => attempt(n + 1), wait).unref()
        },
      )
    }
    setTimeout(() => attempt(0), timerDelay(startAt - now())).unref()
  }

  private openStream(): void {
    this.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        if (this.isLost) {
          stream.cancel()
          return
        }
        this.stream = stream
        this.sentAt.length = 0
        // Only this stream's answers: a cancelled one may still deliver one, for an older send.
        stream.on('data', (res) => {
          if (this.stream === stream) this.onKeepaliveAnswer(res)
        })
        stream.on('error', (error) => this.onStreamBroken(stream, error))
        stream.on('end', () => this.onStreamBroken(stream, new Error('keepalive stream ended')))
        this.sendKeepalive()
      },
      (error: unknown) => this.onStreamBroken(undefined, error),
    )
  }

  private sendKeepalive(): void {
    const stream = this.stream
    if (!stream || this.isLost) return
    const sentAt = now()
    this.sentAt.push(sentAt)
    stream.write({ ID: this.leaseId })
    // A member whose leader just died holds the keepalive until its own request timeout: when
    // no answer comes soon, try again on a fresh stream (possibly another member). The wait
    // doubles while answers stay away (a slow etcd is not a dead one), up to one interval.
    clearTimeout(this.answerTimer)
    const wait = Math.min(KEEPALIVE_ANSWER_MS * 2 ** this.slowAnswers, this.interval)
    this.answerTimer = setTimeout(() => {
      if (this.stream === stream && this.sentAt.includes(sentAt)) {
        this.slowAnswers++
        this.onStreamBroken(stream, new Error(`no keepalive answer within ${wait} ms`))
      }
    }, wait)
    this.answerTimer.unref()
  }

  private onKeepaliveAnswer(res: ILeaseKeepAliveResponse): void {
    const sentAt = this.sentAt.shift()
    if (Number(res.TTL) <= 0) {
      this.markLost('etcd says the lease has expired or was revoked')
      return
    }
    this.reopenAttempt = 0
    this.slowAnswers = 0
    if (sentAt === undefined) return
    const deadline = sentAt + Number(res.TTL) * 1_000 - this.safetyMargin
    if (deadline > this.deadline) this.deadline = deadline
  }

  private onStreamBroken(stream: KeepAliveStream | undefined, error: unknown): void {
    if (stream !== undefined && stream !== this.stream) return
    this.closeStream()
    if (this.isLost) return
    const wait = REOPEN_BACKOFF_MS[Math.min(this.reopenAttempt++, REOPEN_BACKOFF_MS.length - 1)]
    log.session('keepalive stream of %s broken (%s), reopening in %dms', this.leaseHex, error, wait)
    setTimeout(() => {
      if (!this.isLost) this.openStream()
    }, wait).unref()
  }

  private closeStream(): void {
    const stream = this.stream
    this.stream = undefined
    this.sentAt.length = 0
    if (stream) {
      try {
        stream.cancel()
      } catch {
        // already closed
      }
    }
  }

  private armDeadline(): void {
    // One timer re-armed lazily: renewals only move the deadline, they never touch the timer.
    this.deadlineTimer = setTimeout(
      () => {
        if (this.isLost) return
        if (now() >= this.deadline) {
          this.markExpired(`no keepalive answered within the ${this.ttl}s TTL`)
        } else {
          this.armDeadline()
        }
      },
      timerDelay(this.deadline - now()), // fires early for a far deadline, then re-arms
    )
    this.deadlineTimer.unref()
  }
}
