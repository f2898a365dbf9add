import type { IEvent, Namespace } from 'etcd3'
import { LockLostError } from '../errors.js'
import {
  type AbortHandler,
  listenForAbort,
  type StopSignal,
  stopListeningForAbort,
} from '../util/abort.js'
import { log } from '../util/log.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'
import type { Watch, WatchListener, WatchRange } from '../watch/watch.js'

/** The entry that must be deleted before ours may hold, as seen at `revision`. */
export interface Predecessor {
  key: string
  revision: bigint
  /** No other entry is older: once this one is deleted, ours holds the lock. */
  last: boolean
}

/** What a wait needs of its queue entry. */
export interface Waiting {
  readonly key: string
  readonly queuePrefix: string
  /** The newest entry before ours now (a read), `undefined` when ours is first. */
  predecessor(): Promise<Predecessor | undefined>
}

/** Who hears how a {@link TurnWait} ended: once, one of the two. */
export interface TurnListener {
  /** `'first'`: ours holds now; `'look-again'`: the caller must read the queue. */
  turnCame(outcome: 'first' | 'look-again'): void
  turnFailed(error: unknown): void
}

/** What the look (a read once etcd created the watch, or none needed) found. */
type Look = 'pending' | 'waiting' | 'first' | 'look-again'

/**
 * One wait of a queue entry for its predecessor's delete (protocol step 3), as one object that
 * is also its watch's listener: a process may have thousands of waiters, and a wait written as
 * an async function with an abort controller and promises for each step cost several KB each.
 *
 * The watch (DELETE events only) starts at etcd's revision when etcd creates it. One read of the
 * queue once etcd created it (the look) tells what happened before: the predecessor gone already
 * (`'first'` at once), or our own key gone ({@link LockLostError}). Unless etcd created it at the
 * revision the queue was seen at: then nothing happened before it, and no read is needed.
 *
 * The second in line (`last`) watches the whole queue: the deletes, in revision order, prove that
 * our key outlived the predecessor's, so the hand-over needs no read after it. Deletes at or
 * before the predecessor's `revision` are ignored: such a delete is of an older key of the same
 * name (a watch from `'now'` on a member that has not applied that revision starts before it).
 * Anyone else watches the predecessor's key alone and reads again once it goes. A wait that saw
 * the predecessor go before its look answered keeps watching and listening until it does: our
 * key's delete meanwhile rejects ({@link LockLostError}), and so does an abort.
 */
export class TurnWait implements WatchListener, WatchRange, AbortHandler {
  private watch: Watch | undefined
  private look: Look = 'pending'
  private looked = false
  /** The watch saw the predecessor go first: `'first'`, once the look agrees. */
  private deleted = false
  private done = false

  constructor(
    private readonly client: Namespace,
    private readonly entry: Waiting,
    private readonly predecessor: Predecessor,
    private readonly signal: StopSignal,
    /** Told once how the wait ended (a lock request itself: no closures kept per wait). */
    private readonly listener: TurnListener,
    /**
     * {@link WatchRange.from}: where the watch starts, `'now'` in the package. A revision before
     * the predecessor's stands for a member behind the one that answered the read (tests).
     */
    readonly from: bigint | 'now' = 'now',
  ) {}

  // The wait is its watch's range itself, read when etcd is asked to create it: no object, key
  // strings or buffers kept per waiter.

  /** {@link WatchRange.key}: the whole queue when second in line, else the predecessor's key. */
  get key(): string {
    const { predecessor } = this
    return (
      namespacePrefix(this.client) + (predecessor.last ? this.entry.queuePrefix : predecessor.key)
    )
  }

  /** {@link WatchRange.rangeEnd} */
  get rangeEnd(): 'prefix' | undefined {
    return this.predecessor.last ? 'prefix' : undefined
  }

  /** {@link WatchRange.only} */
  get only(): 'delete' {
    return 'delete'
  }

  /** Starts watching; tells its listener exactly once. */
  start(): void {
    if (this.signal.aborted) {
      this.listener.turnFailed(this.signal.reason)
      return
    }
    listenForAbort(this.signal, this)
    this.watch = watchHubOf(this.client).watch(this, this)
  }

  /** {@link WatchListener.created}: etcd created the watch (again, after a broken stream). */
  created(revision: bigint): void {
    if (this.done || this.looked) return // created again: resumed from its next revision
    this.looked = true
    // Created at the very revision the queue was seen at: the watch has every revision after
    // it, so a read would show what we saw.
    if (revision === this.predecessor.revision) {
      this.lookFound('waiting')
      return
    }
    this.entry.predecessor().then(
      (now) => {
        if (now === undefined) this.lookFound('first')
        else this.lookFound(now.key === this.predecessor.key ? 'waiting' : 'look-again')
      },
      (error: unknown) => {
        if (error instanceof LockLostError) this.fail(error)
        else this.lookFound('look-again') // etcd not answering: the caller reads again
      },
    )
  }

  /** {@link WatchListener.events}: one response, the deletes of one revision (one txn) together. */
  events(events: IEvent[]): void {
    if (this.done) return
    const ns = namespacePrefix(this.client)
    let ours = false
    let theirs = false
    for (const event of events) {
      if (BigInt(event.kv.mod_revision) <= this.predecessor.revision) continue
      const key = event.kv.key.toString()
      if (!key.startsWith(ns)) continue
      const inClient = key.slice(ns.length)
      if (inClient === this.entry.key) ours = true
      else if (inClient === this.predecessor.key) theirs = true
    }
    if (!this.predecessor.last) {
      if (theirs) this.succeed('look-again')
    } else if (ours) {
      // Ours went first (or with it): holding on the predecessor's delete would make two holders.
      this.fail(new LockLostError(this.entry.key))
    } else if (theirs) {
      // 'first' holds only once the look showed our key there when the watch began: a delete of
      // it before then is in no event.
      this.deleted = true
      if (this.look !== 'pending') this.succeed(this.look === 'look-again' ? 'look-again' : 'first')
    }
  }

  /** {@link WatchListener.interrupted}: the watch ended without a delete; the caller reads. */
  interrupted(why: string): void {
    if (this.done) return
    const watched = this.predecessor.last ? `${this.entry.queuePrefix}*` : this.predecessor.key
    log.lock('watch on %s ended (%s); reading again', watched, why)
    this.succeed('look-again')
  }

  /** {@link AbortHandler.handleAbort}: the wait's signal aborted (this object listens itself). */
  handleAbort(): void {
    this.fail(this.signal.reason)
  }

  private lookFound(look: Look): void {
    if (this.done) return
    this.look = look
    if (look === 'first' || look === 'look-again') this.succeed(look)
    else if (this.deleted) this.succeed('first')
  }

  private succeed(outcome: 'first' | 'look-again'): void {
    // The watch's cancel after the caller's step: a request that now holds writes nothing.
    if (this.end(true)) this.listener.turnCame(outcome)
  }

  private fail(error: unknown): void {
    if (this.end()) this.listener.turnFailed(error)
  }

  /**
   * Ends the wait (its watch cancelled, at the end of this turn when `afterTurn`); `false` when
   * it had ended already.
   */
  private end(afterTurn = false): boolean {
    if (this.done) return false
    this.done = true
    stopListeningForAbort(this.signal, this)
    void this.watch?.cancel(afterTurn)
    return true
  }
}
