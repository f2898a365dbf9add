import { type IWatchResponse, MaintenanceClient, type Namespace, Range, WatchClient } from 'etcd3'
import { callOptions } from '../session/etcd-calls.js'
import { Fifo } from '../util/fifo.js'
import { log } from '../util/log.js'
import { type Pool, perPool } from '../util/per-pool.js'
import { Progress, progressAnswersAreOrdered } from './progress.js'
import { WatchStream } from './stream.js'
import { Phase, Watch, type WatchListener, type WatchRange } from './watch.js'

/**
 * How long the stream stays open after the last {@link WatchHub.touch} (a `lock()`) with no
 * watch (ms): a waiter's first watch after a quiet spell (the hand-over from a kept key) would
 * otherwise pay a stream setup on the way to its lock.
 */
const LINGER_MS = 30_000

/** etcd's watch id of a refused create and of a progress answer. */
const NO_WATCH = -1

/**
 * Most creates and cancels sent and not answered yet; the rest wait in the hub, in order. A
 * window far wider than a round trip's worth keeps etcd busy, and it bounds what gRPC holds:
 * grpc-js keeps a stream's messages not yet written in an array that it copies after every
 * message it writes, so 20 000 requests written at once cost it O(n^2) (15 s of copying and
 * 47 s of garbage collection, measured, to cancel 20 000 watches).
 */
export const WATCH_REQUEST_WINDOW = 512

/**
 * What a read of a watch's owner can prove about the watch (taken before the read is sent):
 * the stream it was created on, that stream's member, and etcd's revision at the create.
 */
export interface SyncCheck {
  readonly generation: number
  readonly member: string
  readonly revision: bigint
}

/** What a hub counts, for metrics and tests. */
export interface WatchCounters {
  /** Watches open now (created or being created, not ended). */
  readonly watchesOpen: number
  /** Creates sent or waiting for room in the window, and not answered yet. */
  readonly createsInFlight: number
  /** Creates and cancels waiting for room in the window of 512 requests unanswered at once. */
  readonly requestsQueued: number
  /** Creates etcd refused (permission denied, a bad range). */
  readonly createsRefused: number
  /** Progress requests sent. */
  readonly progressRequests: number
  /** Watches confirmed caught up by a progress answer. */
  readonly progressConfirmations: number
  /** Watches confirmed synced by a read of their owner's (nothing written since the create). */
  readonly readConfirmations: number
  /** Streams opened again after one broke. */
  readonly streamResumes: number
  /** Answers for a watch id the hub does not know (ignored). */
  readonly unknownIds: number
}

/** Status calls made to find the version of the member serving a stream (see learnVersion). */
const VERSION_TRIES = 12

/**
 * The watch hub of `client`'s connection pool (one per `Etcd3`, shared by its namespaces).
 * Keys given to it are whole keys: see {@link namespacePrefix}.
 */
export const watchHubOf: (client: Namespace) => WatchHub = perPool((pool) => new WatchHub(pool))

/** The bytes `client` puts before every key (its `namespace()`), as a string. */
export function namespacePrefix(client: Namespace): string {
  return client.prefix.toString()
}

/**
 * Every watch of one etcd client, on one bidirectional stream of the `etcd3` package's
 * `WatchClient` (the client's pool: its TLS, auth and members).
 *
 * - Each watch gets an id of ours; creates and cancels go out as they come, without waiting
 *   for answers, up to {@link WATCH_REQUEST_WINDOW} unanswered (the rest wait in order).
 *   Answers and events reach their watch through a Map. etcd answers creates in
 *   order, so a refused one (id -1) is the oldest create not answered yet: it fails alone.
 * - An answer for an id we do not know is counted and ignored; a listener that throws is
 *   logged. Nothing is thrown from the stream's handlers.
 * - A broken stream is opened again (backing off) and every watch created again from its next
 *   revision, all at once. A compacted start revision interrupts that watch alone.
 * - A watch is live only once confirmed: by a progress answer (see {@link Progress}), for the
 *   watches that ask for it, or by a read of their owner's that shows nothing was written
 *   between the create and the read ({@link confirmedByRead}).
 */
export class WatchHub {
  private readonly watches = new Map<number, Watch>()
  /** Creates sent on this stream in order, from the oldest maybe unanswered. */
  private readonly creating = new Fifo<Watch>()
  /** Creates and cancels waiting for room in the window, in order. */
  private readonly outbox = new Fifo<Watch>()
  /** Creates in the outbox (each watch is queued for a create at most once per stream). */
  private queuedCreates = 0
  /** Requests sent on this stream and not answered yet (at most WATCH_REQUEST_WINDOW). */
  private inFlight = 0
  private nextId = 1
  private readonly stream: WatchStream
  private readonly progress: Progress
  private readonly maintenance: MaintenanceClient
  private linger: NodeJS.Timeout | undefined
  /** Until when the stream stays open with no watch (ms since the epoch). */
  private lingerUntil = 0
  private resumes = 0
  private refused = 0
  private requests = 0
  private confirmations = 0
  private readConfirmations = 0
  private unknown = 0
  private resuming = false
  /** Cancels made in this turn, sent at its end (see {@link sendAtTurnEnd}). */
  private cancelsDue: Watch[] = []
  /** Which stream this is (counted on each open): answers about an older one are ignored. */
  private generation = 0
  /** The etcd member serving this stream (from its answers' headers), once one came. */
  private streamMember: string | undefined

  constructor(pool: Pool) {
    this.maintenance = new MaintenanceClient(pool)
    this.stream = new WatchStream(new WatchClient(pool), {
      wanted: () => this.watches.size > 0 || Date.now() < this.lingerUntil,
      opened: () => this.guarded(() => this.opened()),
      response: (res) => this.guarded(() => this.dispatch(res)),
      broken: () => this.guarded(() => this.broken()),
      closedForGood: (error) => this.closedForGood(error),
    })
    this.progress = new Progress(
      () => this.stream.write({ progress_request: {} }),
      (watch, revision) => {
        this.confirmations += 1
        this.confirm(watch, revision)
      },
      () => {
        this.requests += 1
      },
    )
  }

  /** Counters of this hub, now. */
  get counters(): WatchCounters {
    return {
      watchesOpen: this.watches.size,
      createsInFlight: this.creating.length + this.queuedCreates,
      requestsQueued: this.outbox.length,
      createsRefused: this.refused,
      progressRequests: this.requests,
      progressConfirmations: this.confirmations,
      readConfirmations: this.readConfirmations,
      streamResumes: this.resumes,
      unknownIds: this.unknown,
    }
  }

  /** Watches are about to be needed: opens the stream (if it is not) and keeps it a while. */
  touch(): void {
    this.lingerUntil = Date.now() + LINGER_MS
    if (this.watches.size === 0) this.lingerThenClose()
    this.stream.ensure()
  }

  /**
   * Watches are not needed any more (a locker closes): the stream closes once its last watch
   * ends, so that a process whose client stays open can still exit.
   */
  untouch(): void {
    this.lingerUntil = 0
    if (this.watches.size === 0) this.stream.close()
  }

  /** Starts watching `range`; `listener` hears its events until it is cancelled or ends. */
  watch(range: WatchRange, listener: WatchListener): Watch {
    const watch = new Watch(this.nextId++, range, listener, this)
    this.watches.set(watch.id, watch)
    clearTimeout(this.linger)
    this.linger = undefined
    if (this.stream.isOpen) this.send(watch)
    else this.stream.ensure()
    return watch
  }

  /** See {@link Watch.cancel}. */
  cancel(watch: Watch, afterTurn = false): Promise<void> {
    if (watch.phase === Phase.Done) return Promise.resolve()
    if (watch.phase === Phase.Cancelling) return this.untilCancelled(watch)
    if (watch.phase === Phase.Unsent) {
      this.end(watch)
      return Promise.resolve()
    }
    // Creating or created: etcd has registered the id by the time it reads the cancel.
    watch.phase = Phase.Cancelling
    if (afterTurn) this.sendAtTurnEnd(watch)
    else this.send(watch)
    return this.untilCancelled(watch)
  }

  /**
   * Sends `watch`'s cancel once this turn of the event loop is over (see {@link Watch.cancel}):
   * a write on the stream costs the client 20 to 40 µs, and the owner's next step waits on
   * etcd where the cancel waits on nothing. Events of a cancelling watch are not delivered.
   */
  private sendAtTurnEnd(watch: Watch): void {
    this.cancelsDue.push(watch)
    if (this.cancelsDue.length > 1) return // the first one's turn end sends it too
    setImmediate(() =>
      this.guarded(() => {
        const due = this.cancelsDue
        this.cancelsDue = []
        // Ended meanwhile (a broken stream ends a cancelling watch): nothing to send.
        for (const next of due) {
          if (next.phase === Phase.Cancelling && this.watches.get(next.id) === next) this.send(next)
        }
      }),
    )
  }

  /**
   * Sends what `watch` needs now (its create when unsent, its cancel when cancelling) if the
   * window has room, else queues it behind the others.
   */
  private send(watch: Watch): void {
    if (this.inFlight < WATCH_REQUEST_WINDOW && this.outbox.length === 0) {
      this.sendNow(watch)
      return
    }
    if (watch.phase === Phase.Unsent) {
      watch.createQueued = true
      this.queuedCreates += 1
    }
    this.outbox.push(watch)
  }

  private sendNow(watch: Watch): void {
    if (watch.phase === Phase.Unsent) {
      this.create(watch)
    } else if (watch.phase === Phase.Cancelling && !watch.cancelSent) {
      watch.cancelSent = true
      this.sent(watch)
      this.stream.write({ cancel_request: { watch_id: watch.id } })
    }
  }

  /** Sends what waits in the outbox while the window has room. */
  private pump(): void {
    while (this.inFlight < WATCH_REQUEST_WINDOW && this.outbox.length > 0) {
      if (!this.stream.isOpen) return
      const watch = this.outbox.shift() as Watch
      if (watch.createQueued) {
        watch.createQueued = false
        this.queuedCreates -= 1
      }
      // Ended (cancelled while queued) or already sent since: nothing to send.
      if (this.watches.get(watch.id) === watch) this.sendNow(watch)
    }
  }

  /** A request of `watch` went out: it holds a place in the window until answered. */
  private sent(watch: Watch): void {
    watch.awaiting += 1
    this.inFlight += 1
  }

  /** `count` requests of `watch` were answered (or will never be): their places free up. */
  private answered(watch: Watch, count = 1): void {
    const freed = Math.min(count, watch.awaiting)
    if (freed === 0) return
    watch.awaiting -= freed
    this.inFlight -= freed
    this.pump()
  }

  /** A new or broken stream: nothing is in flight on it, nothing waits to go out. */
  private clearWindow(): void {
    this.inFlight = 0
    this.outbox.clear()
    this.queuedCreates = 0
    for (const watch of this.watches.values()) {
      watch.awaiting = 0
      watch.cancelSent = false
      watch.createQueued = false
    }
  }

  private untilCancelled(watch: Watch): Promise<void> {
    return new Promise((resolve) => {
      const before = watch.cancelled
      watch.cancelled = () => {
        before?.()
        resolve()
      }
    })
  }

  private create(watch: Watch): void {
    const { range } = watch
    const key = typeof range.key === 'string' ? Buffer.from(range.key) : range.key
    const { rangeEnd } = range
    watch.phase = Phase.Creating
    watch.createdAt = undefined
    watch.isLive = false
    watch.progressMark = this.progress.mark
    this.creating.push(watch)
    this.sent(watch)
    this.stream.write({
      create_request: {
        key,
        range_end: rangeEnd === 'prefix' ? Range.prefix(key).end : rangeEnd,
        start_revision: watch.next === 'now' ? undefined : watch.next.toString(),
        // etcd3's FilterType: NOPUT = 0, NODELETE = 1.
        filters: range.only === 'put' ? [1] : range.only === 'delete' ? [0] : undefined,
        watch_id: watch.id,
      },
    })
  }

  private opened(): void {
    if (this.resuming) this.resumes += 1
    this.resuming = false
    this.creating.clear()
    this.progress.reset()
    this.generation += 1
    this.streamMember = undefined
    this.progress.setTrusted(undefined)
    this.clearWindow()
    for (const watch of this.watches.values()) {
      if (watch.phase === Phase.Unsent) this.send(watch)
    }
  }

  /**
   * Whether the member serving this stream answers progress requests in order: its version,
   * asked once per stream. The client's pool sends each call to a member of its choosing, so
   * only a status answer from the stream's own member (the headers' `member_id`) counts; in a
   * cluster mid-upgrade another member's version says nothing about this one. A few tries,
   * each with a deadline; otherwise nothing is confirmed on this stream (takes read first).
   */
  private async learnVersion(generation: number, member: string): Promise<void> {
    for (let attempt = 0; attempt < VERSION_TRIES; attempt++) {
      const status = await this.maintenance.status(callOptions()).catch(() => undefined)
      if (generation !== this.generation) return
      if (status?.header.member_id === member) {
        this.progress.setTrusted(progressAnswersAreOrdered(status.version))
        return
      }
    }
    this.progress.setTrusted(false)
  }

  private dispatch(res: IWatchResponse): void {
    if (this.streamMember === undefined && res.header?.member_id) {
      this.streamMember = res.header.member_id
      void this.learnVersion(this.generation, this.streamMember)
    }
    const id = Number(res.watch_id)
    if (res.created) {
      this.createAnswered(id, res)
      return
    }
    if (id === NO_WATCH) {
      if (res.events.length === 0 && !res.canceled)
        this.progress.answered(BigInt(res.header.revision))
      else this.unknown += 1
      return
    }
    const watch = this.watches.get(id)
    if (watch === undefined || watch.phase === Phase.Unsent || watch.phase === Phase.Creating) {
      this.unknown += 1
      return
    }
    if (res.canceled) {
      const why = res.cancel_reason || 'cancelled by etcd'
      const compacted = res.compact_revision !== '0' && res.compact_revision !== ''
      this.finish(watch, compacted ? `compacted at ${res.compact_revision} (${why})` : why)
      return
    }
    if (watch.phase !== Phase.Created || res.events.length === 0) return
    const last = res.events[res.events.length - 1]
    if (last !== undefined) watch.next = BigInt(last.kv.mod_revision) + 1n
    this.tell(watch, () => watch.listener.events(res.events, watch))
  }

  private createAnswered(id: number, res: IWatchResponse): void {
    if (res.canceled) {
      // Refused (id -1): etcd answers creates in order, so it is the oldest one unanswered.
      const refused = this.oldestUnanswered()
      if (refused === undefined) {
        this.unknown += 1
        return
      }
      this.refused += 1
      this.finish(refused, res.cancel_reason || 'watch refused by etcd')
      return
    }
    const watch = this.watches.get(id)
    const waiting = watch?.phase === Phase.Creating || watch?.phase === Phase.Cancelling
    if (watch === undefined || !waiting || watch.createdAt !== undefined) {
      this.unknown += 1
      return
    }
    const revision = BigInt(res.header.revision)
    watch.createdAt = revision
    watch.createdAhead = watch.next === 'now' || watch.next > revision
    this.oldestUnanswered(watch)
    this.answered(watch)
    if (watch.phase === Phase.Cancelling) return // its cancel's answer ends it
    watch.phase = Phase.Created
    if (watch.next === 'now') watch.next = revision + 1n
    // Never live at once, even from 'now': etcd reads the revision it answers with before it
    // registers the watch, and a write applied in between leaves the watch behind, caught up
    // by etcd's next pass (test/watch/hub.test.ts, "under writes").
    if (watch.wantsConfirmation) this.progress.await(watch)
    this.tell(watch, () => watch.listener.created?.(revision, watch))
  }

  /**
   * From now on the owner of `watch` needs to know when it is live: etcd is asked to confirm it
   * (now, if etcd created it already; otherwise once etcd has, and again after a resume).
   */
  requestConfirmation(watch: Watch): void {
    if (watch.wantsConfirmation) return
    watch.wantsConfirmation = true
    if (watch.phase === Phase.Created && !watch.isLive) this.progress.await(watch)
  }

  /**
   * What a read sent from now on can prove of `watch` (see {@link confirmedByRead}), or
   * `undefined` when it can prove nothing (not created on this stream, or already live).
   */
  syncCheck(watch: Watch): SyncCheck | undefined {
    const member = this.streamMember
    const revision = watch.createdAt
    if (watch.phase !== Phase.Created || watch.isLive) return undefined
    // From a revision etcd has passed (a resume): registered behind whatever a read shows.
    if (!watch.createdAhead) return undefined
    if (member === undefined || revision === undefined) return undefined
    return { generation: this.generation, member, revision }
  }

  /**
   * A read sent after `check` was taken was answered with `header`. When the stream's own
   * member served it with the very revision etcd created the watch at, nothing was written
   * between the create and the read: etcd registered the watch (asked from `now` or ahead)
   * synced, and it is live, on any etcd version. A read served by another member, or after a
   * write, proves nothing: progress answers confirm the watch then (etcd 3.4.25 / 3.5.8 on).
   * Returns whether it is live now.
   */
  confirmedByRead(
    watch: Watch,
    check: SyncCheck,
    header: { member_id: string; revision: string },
  ): boolean {
    if (watch.live) return true
    const same =
      check.generation === this.generation &&
      watch.phase === Phase.Created &&
      watch.createdAt === check.revision &&
      header.member_id === check.member &&
      BigInt(header.revision) === check.revision
    if (!same) return false
    this.readConfirmations += 1
    this.confirm(watch, check.revision)
    return true
  }

  /**
   * Takes the oldest create still unanswered off the queue (after `answered`, which was just
   * answered by id, when it is that one) and returns it.
   */
  private oldestUnanswered(answered?: Watch): Watch | undefined {
    for (let next = this.creating.peek(); next !== undefined; next = this.creating.peek()) {
      const pending =
        next.createdAt === undefined &&
        (next.phase === Phase.Creating || next.phase === Phase.Cancelling)
      if (pending && next !== answered) {
        if (answered === undefined) this.creating.shift()
        return next
      }
      this.creating.shift()
    }
    return undefined
  }

  private confirm(watch: Watch, revision: bigint): void {
    watch.isLive = true
    if (watch.next !== 'now' && watch.next <= revision) watch.next = revision + 1n
    this.tell(watch, () => watch.listener.live?.(watch))
  }

  /** The watch ended: etcd cancelled it, refused it, or confirmed our cancel. */
  private finish(watch: Watch, why: string): void {
    const ours = watch.phase === Phase.Cancelling
    this.end(watch)
    if (!ours) {
      log.watch('watch %d on %s ended: %s', watch.id, watch.range.key, why)
      this.tell(watch, () => watch.listener.interrupted(why, watch))
    }
  }

  private end(watch: Watch): void {
    watch.phase = Phase.Done
    watch.isLive = false
    this.watches.delete(watch.id)
    if (watch.createQueued) {
      watch.createQueued = false // never sent: its outbox entry is skipped
      this.queuedCreates -= 1
    }
    // Its answers still due (a cancel answered, a create refused) or never coming (etcd ended
    // the watch as our cancel went out, and answers no cancel of a watch it does not know).
    this.answered(watch, watch.awaiting)
    const cancelled = watch.cancelled
    watch.cancelled = undefined
    cancelled?.()
    if (this.watches.size === 0) this.lingerThenClose()
  }

  /** Closes the stream once it has had no watch until {@link lingerUntil}. */
  private lingerThenClose(): void {
    if (this.linger !== undefined) return
    this.linger = setTimeout(
      () => {
        this.linger = undefined
        if (this.watches.size > 0) return
        if (Date.now() < this.lingerUntil) this.lingerThenClose()
        else this.stream.close()
      },
      Math.max(0, this.lingerUntil - Date.now()),
    )
    this.linger.unref()
  }

  private broken(): void {
    this.resuming = this.watches.size > 0
    this.creating.clear()
    this.clearWindow()
    this.progress.reset()
    for (const watch of [...this.watches.values()]) {
      if (watch.phase === Phase.Cancelling) {
        this.end(watch) // a stream that broke watches nothing: cancelled
      } else if (watch.next === 'now') {
        // Never created: 'now' on the next stream could miss what its owner expects to see.
        this.finish(watch, 'the watch stream broke before etcd created the watch')
      } else {
        watch.phase = Phase.Unsent
        watch.isLive = false
      }
    }
  }

  private closedForGood(error: unknown): void {
    for (const watch of [...this.watches.values()]) this.finish(watch, String(error))
  }

  private tell(watch: Watch, call: () => void): void {
    try {
      call()
    } catch (error) {
      log.watch('a listener of watch %d threw: %O', watch.id, error)
    }
  }

  private guarded(call: () => void): void {
    try {
      call()
    } catch (error) {
      log.watch('watch answer not handled: %O', error)
    }
  }
}
