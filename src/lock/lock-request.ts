import { ERRORS, type RequestRelease } from '@tus/utils'
import { EtcdLeaseInvalidError, type Namespace } from 'etcd3'
import { LockTimeoutError } from '../errors.js'
import type { LockerEvents, ReleaseCause } from '../events.js'
import { describe } from '../keys.js'
import { accessError, backoffMs, isRetryable } from '../session/etcd-calls.js'
import type { Session } from '../session/session.js'
import { endpointsOf } from '../session/session-keeper.js'
import {
  type AbortHandler,
  abortable,
  delay,
  LinkedAbort,
  listenForAbort,
  settledWithin,
  stopListeningForAbort,
} from '../util/abort.js'
import type { DeadlineItem, DeadlineQueue } from '../util/deadline-queue.js'
import type { InFlightLimit } from '../util/in-flight-limit.js'
import { log } from '../util/log.js'
import { thrownMessage } from '../util/thrown-message.js'
import type { WatchHub } from '../watch/hub.js'
import { type ContentionListener, ContentionWatch } from './contention-watch.js'
import type { LocalQueue } from './local-queue.js'
import { QueueEntry } from './queue-entry.js'
import type { KeptKey, Retention } from './retention.js'
import type { Predecessor, TurnListener } from './turn-wait.js'

/** What a lock request needs of its locker. */
export interface LockContext {
  readonly client: Namespace
  readonly acquireLockTimeout: number
  /** The waits due a report (`lockWaiting`) after {@link LONG_WAIT_MS}: one timer for them all. */
  readonly waitReports: DeadlineQueue<LockRequest>
  /** The waits due to time out after `acquireLockTimeout` (reported first, if due a report). */
  readonly waitTimeouts: DeadlineQueue<LockRequest>
  /** Aborts with a `LockerClosedError` when `close()` is called (before a drain, if any). */
  readonly closing: AbortSignal
  session(): Promise<Session>
  localQueue(queuePrefix: string): LocalQueue<LockRequest>
  /** Keys kept after the last local unlock (protocol step 6). */
  readonly retention: Retention
  /** The client's watches (one stream, kept open while locks are in use). */
  readonly watches: WatchHub
  /** Caps this locker's queue reads in flight (a burst queues here, not inside etcd; its writes
   * queue in their batch, see `TxnBatch`). */
  readonly limit: InFlightLimit
  /** Drops the local queue of `queuePrefix` once it is empty. */
  forgetQueue(queuePrefix: string): void
  emit<K extends keyof LockerEvents>(event: K, ...info: LockerEvents[K]): void
}

// How long a lock() that gives up waits for its key's delete before it rejects anyway; the delete
// goes on (retried until etcd answers or the session ends) and the next local request waits for it.
// unlock() does not wait at all.
const RELEASE_WAIT_MS = 500

const RELEASE_REASONS: Record<ReleaseCause, string> = {
  'local-waiter': 'a request of this process waits',
  'remote-waiter': 'another client queued',
  'session-lost': 'the etcd session was lost',
  'key-deleted': 'its lock key was deleted in etcd',
  shutdown: 'this process is shutting down',
}

// The holder hears waiters of other processes through a watch from its own revision + 1, which
// replays whatever it missed: starting it a little after acquiring loses nothing, and short holds
// (HEAD, small PATCH) end before it would start. A key kept at unlock starts its watch then.
const CONTENTION_WATCH_DELAY_MS = 50

/** A lock() still waiting after this long is reported (lockWaiting): the examples log it. */
export const LONG_WAIT_MS = 1_000

// The abort reason of acquireLockTimeout, told apart from the request's own abort: a timeout in
// etcd becomes a LockTimeoutError naming what it waited for, the rest ERRORS.ERR_LOCK_TIMEOUT.
const TIMED_OUT = Symbol('acquireLockTimeout')

type State = 'idle' | 'acquiring' | 'held' | 'done'
type WaitingOn = LockerEvents['lockWaiting'][0]['waitingOn']

/**
 * One `lock()` call of an {@link Etcd3Lock}, from its wait to its unlock: protocol steps 1 to 6
 * for one request of this process for one upload. Used once.
 */
export class LockRequest implements ContentionListener, TurnListener, DeadlineItem, AbortHandler {
  private state: State = 'idle'
  private entry: QueueEntry | undefined
  private requestRelease: RequestRelease | undefined
  private releaseRequested = false
  private watch: ContentionWatch | undefined
  private watchTimer: NodeJS.Timeout | undefined
  /** Someone of another process queued, or our key was deleted: the key must not be kept. */
  private contention: ReleaseCause | undefined
  /** The last segment (lease hex) of the key of the other client that queued, if one did. */
  private waiter: string | undefined
  /** What this request waits on now, and the entry ahead in etcd's queue (when it waits on one). */
  private waitingOn: WaitingOn = 'local-request'
  private waitingBehind: Predecessor | undefined
  private heldSince = 0
  /** When the wait began on the monotonic clock: what acquireLockTimeout is measured from. */
  startedAt = 0
  /** Kept by the deadline queue the wait is in (its report's or its timeout's); see there. */
  deadlineQueue: object | undefined
  deadlinePrev: DeadlineItem | undefined
  deadlineNext: DeadlineItem | undefined
  private stop: LinkedAbort | undefined
  /** What settles the promise `lock()` returned, until it is settled (two fields, no object). */
  private resolveLock: (() => void) | undefined
  private rejectLock: ((error: unknown) => void) | undefined
  /** Etcd errors retried so far: the back-off's step. */
  private attempt = 0

  constructor(
    private readonly context: LockContext,
    /** Where this request puts itself once it holds: its `Etcd3Lock`, whose `unlock()` ends it. */
    private readonly slot: HoldSlot,
  ) {}

  /** The upload id, as given. */
  get id(): string {
    return this.slot.id
  }

  /** `P/<escaped id>/`: where this upload's queue lives in etcd. */
  get queuePrefix(): string {
    return this.slot.queuePrefix
  }

  /**
   * Waits for the lock; resolves and rejects as `Etcd3Lock.lock()` documents. Its steps are
   * methods called back as each wait ends, not an async function: a process may have thousands
   * of requests waiting, and a suspended function keeps its frame and its promise for as long.
   */
  lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    if (this.state !== 'idle') throw new Error(`${this.queuePrefix}: a LockRequest is used once`)
    checkLockArguments(signal, requestRelease)
    this.context.watches.touch()
    this.state = 'acquiring'
    this.requestRelease = requestRelease
    this.startedAt = performance.now()
    const stop = new LinkedAbort()
    this.stop = stop
    // The locker's timers, not one of its own: a waiter's every object counts.
    if (this.context.acquireLockTimeout >= LONG_WAIT_MS) this.context.waitReports.add(this)
    else this.context.waitTimeouts.add(this)
    stop.link(signal, ERRORS.ERR_LOCK_TIMEOUT)
    stop.link(this.context.closing)
    const queue = this.context.localQueue(this.queuePrefix)
    const turn = queue.waitTurn(this, stop.signal)
    // Only a request that really queues may ask: one whose signal had aborted never waited.
    if (!stop.signal.aborted && queue.head !== this) queue.head?.askToRelease('local-waiter')
    return new Promise<void>((resolve, reject) => {
      this.resolveLock = resolve
      this.rejectLock = reject
      turn.then(
        () => this.guarded(stop, () => this.turnInProcess(stop)),
        (caught: unknown) => this.guarded(stop, () => this.gaveUpInProcess(caught, stop)),
      )
    })
  }

  /** Behind another request of this process, given up: as MemoryLocker, its ERR_LOCK_TIMEOUT. */
  private gaveUpInProcess(caught: unknown, stop: LinkedAbort): void {
    const error = caught === TIMED_OUT ? ERRORS.ERR_LOCK_TIMEOUT : caught
    this.state = 'done'
    this.endWait(stop)
    this.context.forgetQueue(this.queuePrefix)
    log.lock('%s: gave up while queued in this process (%s)', this.queuePrefix, reason(error))
    this.context.emit('lockFailed', { id: this.id, error })
    this.rejectOnce(error)
  }

  /** First of this process: a key kept from the last unlock, or a place in etcd's queue. */
  private turnInProcess(stop: LinkedAbort): void {
    this.waitingOn = 'etcd'
    // take() sees the abort itself: a key it hands out is ours to hold or give back.
    this.context.retention.take(this.queuePrefix, this, stop.signal).then(
      (kept) => this.guarded(stop, () => this.taken(kept, stop)),
      (error: unknown) => this.gaveUp(error, stop),
    )
  }

  /** What take() found: a key kept for us to hold, or nothing (then etcd's queue). */
  private taken(kept: KeptKey | undefined, stop: LinkedAbort): void {
    if (kept !== undefined) {
      this.entry = kept.entry
      this.watch = kept.watch
      // Lost while take() read the key: reject as any lock() whose session is lost first.
      stop.link(kept.entry.session.signal)
    }
    if (stop.signal.aborted) this.gaveUp(stop.signal.reason, stop)
    else if (kept !== undefined) this.hold(stop, true)
    else {
      // What a kept key's watch told while take() checked it is about that key, not ours.
      this.contention = undefined
      this.waiter = undefined
      this.acquire(stop)
    }
  }

  /** Gives up in etcd: deletes our key (waiting for that a little), then rejects. */
  private gaveUp(caught: unknown, stop: LinkedAbort): void {
    const error = caught === TIMED_OUT ? this.timeoutError() : caught
    this.state = 'done'
    void this.watch?.stop()
    log.lock('%s: gave up (%s)', this.queuePrefix, reason(error))
    void settledWithin(
      this.leaveQueue(this.context.localQueue(this.queuePrefix)),
      RELEASE_WAIT_MS,
    ).then(() => {
      this.context.emit('lockFailed', { id: this.id, error })
      this.endWait(stop)
      this.rejectOnce(error)
    })
  }

  /** Ours is first in etcd's queue (or a kept key was taken): the lock is held from now on. */
  private hold(stop: LinkedAbort, retained: boolean): void {
    // Looked up before user code runs: a listener that unlocks at once makes the queue go, and a
    // lookup after that would make a new empty one that nothing drops.
    const queue = this.context.localQueue(this.queuePrefix)
    this.endWait(stop)
    const entry = this.entry
    if (entry === undefined) throw new Error(`${this.queuePrefix}: held with no queue entry`)
    this.state = 'held'
    this.heldSince = Date.now()
    const waitedMs = Math.floor(performance.now() - this.startedAt)
    log.lock(
      '%s: held by %s (rev %s)%s',
      this.queuePrefix,
      entry.session.leaseHex,
      String(entry.revision),
      retained ? ', kept from the last unlock' : '',
    )
    // The request hears its session's end itself (handleAbort): no closure kept per hold.
    listenForAbort(entry.session.signal, this)
    this.slot.holding = this
    if (this.watch === undefined) {
      this.watchTimer = setTimeout(() => {
        this.watchTimer = undefined
        const revision = entry.revision
        if (this.state !== 'held' || revision === undefined) return
        this.watch = new ContentionWatch(this.context.client, entry, revision, this)
      }, CONTENTION_WATCH_DELAY_MS)
    }
    // Once the hold is set up, and before anyone asks it to release: listeners are user code
    // (see IsolatedListeners), and hear of a hold before of a request to end it.
    this.context.emit('lockAcquired', {
      id: this.id,
      waitedMs,
      retained,
    })
    if (entry.session.isLost) this.askToRelease('session-lost')
    if (this.contention !== undefined) this.askToRelease(this.contention)
    if (queue.size > 1) this.askToRelease('local-waiter')
    // Last, as the async function it was resolved on its return (its callers run later anyway).
    this.resolveOnce()
  }

  /**
   * Runs a step called back from a promise or a wait: what it throws (a bug) rejects this
   * request's lock(), never the process (an unhandled rejection), and never hangs it.
   */
  private guarded(stop: LinkedAbort, run: () => void): void {
    try {
      run()
    } catch (error) {
      if (this.state === 'acquiring') {
        this.gaveUp(error, stop)
        return
      }
      if (this.state === 'held' && this.rejectLock !== undefined) {
        // Thrown once held, before lock() resolved: nothing may stay held that lock()'s caller
        // is told it does not have. Given up as from a wait: key deleted, lockFailed.
        this.stopHearingSessionLost()
        clearTimeout(this.watchTimer)
        if (this.slot.holding === this) this.slot.holding = undefined
        this.gaveUp(error, stop)
        return
      }
      log.lock('%s: %s', this.queuePrefix, reason(error))
      this.rejectOnce(error)
    }
  }

  /** Resolves lock()'s promise, unless it was settled already: a request settles it once. */
  private resolveOnce(): void {
    const resolve = this.resolveLock
    this.resolveLock = undefined
    this.rejectLock = undefined
    resolve?.()
  }

  /** Rejects lock()'s promise with `error`, unless it was settled already. */
  private rejectOnce(error: unknown): void {
    const reject = this.rejectLock
    this.resolveLock = undefined
    this.rejectLock = undefined
    reject?.(error)
  }

  // This request is its own ContentionListener: methods, not closures kept per hold.

  /** {@link ContentionListener.contended}: another client queued for this upload. */
  contended(waiter: string): void {
    this.contention = 'remote-waiter'
    this.waiter = waiter
    this.context.retention.noteTaken(this.queuePrefix)
    this.askToRelease('remote-waiter')
    // Told, or asked already: kept only for a hold that has not begun (it asks as it begins).
    if (this.state === 'held') this.waiter = undefined
  }

  /** {@link ContentionListener.keyDeleted}: our lock key was deleted in etcd. */
  keyDeleted(): void {
    this.contention = 'key-deleted'
    this.askToRelease('key-deleted')
  }

  /** {@link AbortHandler.handleAbort}: the session of the hold was lost. */
  handleAbort(): void {
    this.askToRelease('session-lost')
  }

  private stopHearingSessionLost(): void {
    if (this.entry !== undefined) stopListeningForAbort(this.entry.session.signal, this)
  }

  /** Releases the lock as `Etcd3Lock.unlock()` documents; does nothing unless it holds. */
  unlock(): Promise<void> {
    if (this.state !== 'held') return Promise.resolve()
    this.state = 'done'
    clearTimeout(this.watchTimer)
    const { entry, watch } = this
    this.stopHearingSessionLost()
    log.lock('%s: unlock', this.queuePrefix)
    const heldMs = Date.now() - this.heldSince
    const queue = this.context.localQueue(this.queuePrefix)
    // Nobody elsewhere waits: keep the key for this process's next request (step 6), unless
    // this process is shutting down.
    const kept =
      this.contention === undefined &&
      entry !== undefined &&
      !this.context.closing.aborted &&
      this.context.retention.offer(this.queuePrefix, entry, watch)
    if (kept) {
      this.entry = undefined
      queue.leave(this)
      this.context.forgetQueue(this.queuePrefix)
    } else {
      void watch?.stop()
      // The delete goes on after unlock() returns: @tus/server awaits unlock() before it
      // answers, and nothing of this request needs the delete. The next request of this process
      // for the upload waits for it (local queue); others wait on its watch event, as for any
      // holder.
      void this.leaveQueue(queue)
    }
    // Last, once the key is kept or on its way out: listeners are user code.
    this.context.emit('lockReleased', { id: this.id, heldMs })
    return Promise.resolve()
  }

  /** Whether `lock()` resolved and `unlock()` has not been called yet. */
  get holds(): boolean {
    return this.state === 'held'
  }

  /** Our lock key and its create revision while this lock is held: what KV writes are fenced by. */
  heldEntry(): { key: string; revision: bigint } | undefined {
    const revision = this.entry?.revision
    if (this.state !== 'held' || this.entry === undefined || revision === undefined)
      return undefined
    return { key: this.entry.key, revision }
  }

  /**
   * Steps 2 and 3: enqueue in etcd, then wait for each predecessor's delete until ours is first;
   * an etcd error that may pass is retried, backing off. Each step calls the next back.
   */
  private acquire(stop: LinkedAbort): void {
    let session: Promise<Session>
    try {
      session = this.context.session()
    } catch (error) {
      this.gaveUp(error, stop)
      return
    }
    abortable(session, stop.signal).then(
      (live) => this.guarded(stop, () => this.enqueue(live, stop)),
      (error: unknown) => this.gaveUp(error, stop),
    )
  }

  /** Step 2 on `session`: our key in etcd's queue, then who is ahead of it. */
  private enqueue(session: Session, stop: LinkedAbort): void {
    stop.link(session.signal)
    const entry = new QueueEntry(this.context.client, this.queuePrefix, session, this.context.limit)
    this.entry = entry
    abortable(entry.enqueue(), stop.signal).then(
      (first) =>
        this.guarded(stop, () => (first ? this.first(entry, stop) : this.lookAhead(entry, stop))),
      (error: unknown) => this.guarded(stop, () => this.etcdError(error, entry, stop)),
    )
  }

  /** Reads who is just ahead of our key, and waits for its delete; holds when nobody is. */
  private lookAhead(entry: QueueEntry, stop: LinkedAbort): void {
    abortable(entry.predecessor(), stop.signal).then(
      (predecessor) => {
        if (predecessor === undefined) {
          this.guarded(stop, () => this.first(entry, stop))
          return
        }
        log.lock('%s: %s waits for %s', this.queuePrefix, entry.key, predecessor.key)
        this.waitingBehind = predecessor
        this.waitingOn = 'queue-entry'
        // This request hears the wait's end itself (turnCame, turnFailed).
        this.guarded(stop, () => entry.waitForTurnThen(predecessor, stop.signal, this))
      },
      (error: unknown) => this.guarded(stop, () => this.etcdError(error, entry, stop)),
    )
  }

  /** {@link TurnListener.turnCame}: the predecessor went (or the queue must be read again). */
  turnCame(outcome: 'first' | 'look-again'): void {
    const { entry, stop } = this
    if (this.state !== 'acquiring' || entry === undefined || stop === undefined) return
    this.guarded(stop, () =>
      outcome === 'first' ? this.first(entry, stop) : this.lookAhead(entry, stop),
    )
  }

  /** {@link TurnListener.turnFailed}: our key went first, the wait aborted, or etcd failed. */
  turnFailed(error: unknown): void {
    const { entry, stop } = this
    if (this.state !== 'acquiring' || entry === undefined || stop === undefined) return
    this.guarded(stop, () => this.etcdError(error, entry, stop))
  }

  /**
   * Ours is first. A process frozen while it waited (GC, SIGSTOP) can wake to the news that it is
   * first in a queue its expired lease has already left: it holds only while the session is
   * trusted.
   */
  private first(entry: QueueEntry, stop: LinkedAbort): void {
    if (entry.session.isTrusted) {
      this.hold(stop, false)
      return
    }
    entry.session.markExpired('the lease deadline passed while this request waited')
    this.etcdError(stop.signal.reason, entry, stop)
  }

  /** An error while enqueued: given up, or retried after a back-off when etcd may answer later. */
  private etcdError(error: unknown, entry: QueueEntry, stop: LinkedAbort): void {
    if (error instanceof EtcdLeaseInvalidError) {
      // etcd no longer knows our lease: the session is over, whatever the keepalive thinks.
      entry.session.markLost('etcd says the lease is gone')
      this.gaveUp(stop.signal.reason, stop)
      return
    }
    // Timed out, aborted, closed or session lost: say that, not what it interrupted.
    if (stop.signal.aborted) {
      this.gaveUp(stop.signal.reason, stop)
      return
    }
    if (!isRetryable(error)) {
      this.gaveUp(accessError(error, this.where()), stop)
      return
    }
    log.lock('%s: etcd error (%s), retrying', this.queuePrefix, reason(error))
    this.waitingOn = 'etcd'
    delay(backoffMs(this.attempt++), stop.signal).then(
      () => this.guarded(stop, () => this.acquire(stop)),
      (aborted: unknown) => this.gaveUp(aborted, stop),
    )
  }

  /** What a timeout in etcd rejects with: it names etcd and the entry it waited behind. */
  private timeoutError(): LockTimeoutError {
    const onEntry = this.waitingOn === 'queue-entry'
    return new LockTimeoutError({
      id: this.id,
      waitedMs: this.context.acquireLockTimeout,
      waitingOn: onEntry ? 'queue-entry' : 'etcd',
      holder: onEntry ? this.holderAhead() : undefined,
      queuePrefix: this.queuePrefix,
      endpoints: endpointsOf(this.context.client),
    })
  }

  /** The last segment (lease hex) of the entry this request waits behind, if it waits on one. */
  private holderAhead(): string | undefined {
    return this.waitingBehind?.key.slice(this.queuePrefix.length)
  }

  /** This lock's queue and root prefix (`P/<escaped id>/` less its last segment), for errors. */
  private where(): { key: string; prefix: string } {
    const key = this.queuePrefix
    return { key, prefix: key.slice(0, key.slice(0, -1).lastIndexOf('/')) }
  }

  /** Deletes our key (if any), then hands the turn to the next request of this process. */
  private leaveQueue(queue: LocalQueue<LockRequest>): Promise<void> {
    const deleted = this.entry?.release() ?? Promise.resolve()
    return deleted.finally(() => {
      queue.leave(this)
      this.context.forgetQueue(this.queuePrefix)
    })
  }

  /** The wait is over (held or given up): its place in the timers and its links to the signals go. */
  private endWait(stop: LinkedAbort): void {
    this.context.waitReports.remove(this)
    this.context.waitTimeouts.remove(this)
    this.stop = undefined
    stop.dispose()
  }

  /**
   * Its report queue's: the wait has lasted {@link LONG_WAIT_MS}. Reports it, then
   * joins the timeout queue (due `acquireLockTimeout` after the start, on the monotonic clock:
   * a wall clock set back while a request waits must not make it wait longer).
   */
  waitReportDue(): void {
    const stop = this.stop
    if (this.state !== 'acquiring' || stop === undefined) return
    this.context.emit('lockWaiting', {
      id: this.id,
      waitedMs: Math.floor(performance.now() - this.startedAt),
      waitingOn: this.waitingOn,
      holder: this.waitingOn === 'queue-entry' ? this.holderAhead() : undefined,
    })
    // Ended by a listener (its abort reaches the request a microtask later).
    if (this.state !== 'acquiring' || this.stop !== stop || stop.signal.aborted) return
    this.context.waitTimeouts.add(this)
  }

  /** Its timeout queue's: `acquireLockTimeout` has passed. */
  waitTimedOut(): void {
    const stop = this.stop
    if (this.state !== 'acquiring' || stop === undefined) return
    stop.abort(TIMED_OUT)
  }

  /** Calls the holder's `requestRelease`, once per hold; its errors are logged, not thrown. */
  askToRelease(cause: ReleaseCause): void {
    if (this.state !== 'held' || this.releaseRequested) return
    this.releaseRequested = true
    const waiter = cause === 'remote-waiter' ? this.waiter : undefined
    this.waiter = undefined // told once: not kept for the rest of the hold
    const why = RELEASE_REASONS[cause] + (waiter ? ` (lease ${waiter})` : '')
    log.lock('%s: asking the holder to release: %s', this.queuePrefix, why)
    // Just before requestRelease: a listener can tell why when requestRelease runs.
    this.context.emit('releaseRequested', { id: this.id, cause, reason: why, waiter })
    try {
      Promise.resolve(this.requestRelease?.()).catch((error: unknown) => {
        log.lock('%s: requestRelease rejected: %s', this.queuePrefix, reason(error))
      })
    } catch (error) {
      log.lock('%s: requestRelease threw: %s', this.queuePrefix, reason(error))
    }
  }
}

/** Where a request puts itself once it holds: its `Etcd3Lock`, whose `unlock()` ends it. */
export interface HoldSlot {
  /** The upload id, as given. */
  readonly id: string
  /** `P/<escaped id>/`: where this upload's queue lives in etcd. */
  readonly queuePrefix: string
  holding: LockRequest | undefined
}

/** Refuses what `@tus/server` never passes, before any state changes or timer starts. */
function checkLockArguments(signal: unknown, requestRelease: unknown): void {
  const s = signal as Partial<AbortSignal> | null | undefined
  if (typeof s?.addEventListener !== 'function' || typeof s.aborted !== 'boolean') {
    throw new TypeError(
      `lock() needs an AbortSignal as its first argument, got ${describe(signal)}`,
    )
  }
  if (typeof requestRelease !== 'function') {
    throw new TypeError(
      `lock() needs a requestRelease function as its second argument, got ${describe(requestRelease)}`,
    )
  }
}

/** What to log of `error` (an etcd answer's `body`, a string as it is); never throws. */
function reason(error: unknown): string {
  if (error instanceof Error) return error.message
  const body = typeof error === 'object' && error !== null && 'body' in error ? error.body : error
  return typeof body === 'string' ? body : thrownMessage(body)
}
