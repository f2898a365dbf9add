import type { Namespace } from 'etcd3'
import { abortable, onAbort, type StopSignal, settledWithin } from '../util/abort.js'
import { log } from '../util/log.js'
import { type ContentionListener, ContentionWatch } from './contention-watch.js'
import type { QueueEntry } from './queue-entry.js'

/** At most this many keys are retained per locker; beyond it the least recently used goes. */
export const MAX_RETAINED_LOCKS = 1_000

/** How long a give-up that nobody waits for waits for etcd to confirm its watch's cancel (ms). */
const CANCEL_WAIT_MS = 1_000

/** An upload another instance took from us is not retained for this long (ms). */
export const TAKEN_COOLDOWN_MS = 60_000

// Across uploads: takes by other instances minus reuses by this one, halving every 10 s. At 3 or
// more (clients spread over instances, as with round robin), no key is kept until it decays:
// most kept keys would only make the next request, on another instance, wait for our delete.
// A take of a kept key counts twice: it costs that request two writes in a row (its enqueue,
// then our delete) where one would do, more than a reuse saves (bench: hand-over). So two kept
// keys taken with no reuse between, or three held locks taken within a few seconds (the score
// decays), stop keeping.
const TAKES_OVER_REUSES_LIMIT = 3
const TAKES_HALF_LIFE_MS = 10_000
const KEPT_TAKE_WEIGHT = 2

/** A retained key, with the watch that gives it up once anyone else queues. */
export interface KeptKey {
  readonly entry: QueueEntry
  readonly watch: ContentionWatch
}

interface Retained extends KeptKey {
  readonly timer: NodeJS.Timeout
  /** Removes the listener that drops the key with its session. */
  readonly forgetSessionLost: () => void
}

/**
 * Protocol step 6: lock keys kept after the last local unlock, so the next request of this
 * process for the upload holds with no etcd call. A retained key is given up (deleted) as soon
 * as anyone else queues for the upload, after `retainMs` unused, beyond
 * {@link MAX_RETAINED_LOCKS}, and dropped with its session. Uploads another instance took from
 * us in the last {@link TAKEN_COOLDOWN_MS} are not retained: round-robin clients would only wait
 * for our delete. Nor are any while other instances take this one's keys more than it reuses
 * them, a kept key's take weighing two reuses (a deployment whose clients do not
 * stick to an instance).
 */
export class Retention {
  // Map order is least recently retained first: the first entry goes when the cap is reached.
  private readonly kept = new Map<string, Retained>()
  /** Deletes of given-up keys in flight: the next request for the upload waits for its one. */
  private readonly releasing = new Map<string, Promise<void>>()
  /** When another instance last took each upload from us; oldest first, bounded too. */
  private readonly taken = new Map<string, number>()
  private score = 0
  private scoredAt = Date.now()

  constructor(
    private readonly client: Namespace,
    /** How long an unused key is kept, ms; 0: never. */
    private readonly retainMs: number,
  ) {}

  /** How many keys are retained now. */
  get size(): number {
    return this.kept.size
  }

  /** The retained key of `queuePrefix`, for KV fencing. */
  entryOf(queuePrefix: string): QueueEntry | undefined {
    return this.kept.get(queuePrefix)?.entry
  }

  /**
   * Keeps `entry` (held by a request that unlocks now, with nobody of another process known to
   * wait) instead of deleting it. `watch` is the holder's contention watch, if it started one.
   * Returns `false` when the key is not kept: the caller deletes it.
   */
  offer(queuePrefix: string, entry: QueueEntry, watch: ContentionWatch | undefined): boolean {
    const revision = entry.revision
    if (this.retainMs === 0 || revision === undefined || watch?.ended) return false
    // One kept key per upload: a second one cannot be (only the local holder offers).
    if (this.kept.has(queuePrefix) || this.releasing.has(queuePrefix)) return false
    if (!entry.session.isTrusted || this.recentlyTaken(queuePrefix)) return false
    if (this.takesOverReuses() >= TAKES_OVER_REUSES_LIMIT) return false
    for (const oldest of this.kept.keys()) {
      if (this.kept.size < MAX_RETAINED_LOCKS) break
      this.giveUp(oldest, 'too many retained')
    }
    const listener = {
      contended: () => this.giveUp(queuePrefix, 'another client queued', true),
      keyDeleted: () => this.drop(queuePrefix, 'its key was deleted in etcd'),
    }
    const kept = watch ?? new ContentionWatch(this.client, entry, revision, listener)
    kept.listener = listener
    kept.wantLive()
    const forgetSessionLost = onAbort(entry.session.signal, () =>
      this.drop(queuePrefix, 'the session was lost'),
    )
    const timer = setTimeout(() => this.giveUp(queuePrefix, 'unused'), this.retainMs)
    timer.unref()
    this.kept.set(queuePrefix, { entry, watch: kept, timer, forgetSessionLost })
    log.lock('%s: retained for %dms', queuePrefix, this.retainMs)
    return true
  }

  /**
   * The retained key of `queuePrefix`, taken out of retention for a request of this process, or
   * `undefined` when there is none (after waiting for the delete of one given up just now), or
   * when `signal` aborted first. From then on `listener` hears what its watch sees.
   *
   * The key is handed out with no etcd call while its watch is live (etcd confirmed it caught
   * up): a delete of it (by hand) would have been told, to within an event's delivery. A watch
   * being set up, still caught up by etcd, or resuming after a broken stream proves nothing:
   * then one read must show the key is still ours.
   */
  async take(
    queuePrefix: string,
    listener: ContentionListener,
    signal: StopSignal,
  ): Promise<KeptKey | undefined> {
    const releasing = this.releasing.get(queuePrefix)
    if (releasing) await abortable(releasing, signal).catch(() => undefined)
    if (signal.aborted) return undefined
    const kept = this.remove(queuePrefix)
    if (kept === undefined) return undefined
    // At once, in the same step: a waiter seen from now on is the new holder's to hear.
    kept.watch.listener = listener
    if (!kept.entry.session.isTrusted) {
      // Its deadline passed unnoticed (a busy event loop): the key may be gone any moment.
      void kept.watch.stop()
      kept.entry.session.markExpired('the lease deadline passed while a lock was retained')
      return undefined
    }
    if (kept.watch.live) {
      this.addToScore(-1)
      return kept
    }
    const ours = await kept.entry.stillOurs().catch(() => undefined)
    if (ours === true && !signal.aborted && !kept.watch.ended) {
      this.addToScore(-1)
      return kept
    }
    if (ours === false) {
      void kept.watch.stop() // deleted by someone else: nothing to delete
      return undefined
    }
    // Unknown, or nobody may use it now: delete it, and only then let the caller enqueue. Its
    // enqueue would otherwise adopt this very key (same name, same session) and our delete,
    // landing after, would leave it holding with no key: two holders.
    this.deleteTracked(queuePrefix, kept, false)
    await abortable(this.releasing.get(queuePrefix) ?? Promise.resolve(), signal).catch(
      () => undefined,
    )
    return undefined
  }

  /**
   * Notes that another instance took `queuePrefix` from us: from a holder (`weight` 1) or from
   * a kept key ({@link KEPT_TAKE_WEIGHT}).
   */
  noteTaken(queuePrefix: string, weight = 1): void {
    this.addToScore(weight)
    this.taken.delete(queuePrefix)
    this.taken.set(queuePrefix, Date.now())
    for (const [oldest, at] of this.taken) {
      if (this.taken.size <= MAX_RETAINED_LOCKS && Date.now() - at < TAKEN_COOLDOWN_MS) break
      this.taken.delete(oldest)
    }
  }

  /**
   * Gives up every retained key (the locker closes: its revoke deletes them). Resolves once etcd
   * confirmed their watches' cancels, so that the revoke's deletes reach none of them.
   */
  close(): Promise<void> {
    const stopped = [...this.kept.keys()].map((queuePrefix) =>
      this.drop(queuePrefix, 'the locker closes'),
    )
    this.taken.clear()
    return Promise.all(stopped).then(() => undefined)
  }

  /** The score of takes by others over reuses here, decayed to now. */
  private takesOverReuses(): number {
    const now = Date.now()
    this.score *= 0.5 ** ((now - this.scoredAt) / TAKES_HALF_LIFE_MS)
    this.scoredAt = now
    return this.score
  }

  private addToScore(delta: number): void {
    this.score = Math.max(0, this.takesOverReuses() + delta)
  }

  private recentlyTaken(queuePrefix: string): boolean {
    const at = this.taken.get(queuePrefix)
    if (at === undefined) return false
    if (Date.now() - at < TAKEN_COOLDOWN_MS) return true
    this.taken.delete(queuePrefix)
    return false
  }

  /**
   * Deletes the retained key of `queuePrefix`; the next request waits for the delete. For a
   * waiter (`taken`), at once; otherwise once etcd confirmed the watch's cancel (at most
   * {@link CANCEL_WAIT_MS}), so that our own delete is no event for anyone.
   */
  private giveUp(queuePrefix: string, why: string, taken = false): void {
    const kept = this.remove(queuePrefix)
    if (kept === undefined) return
    if (taken) this.noteTaken(queuePrefix, KEPT_TAKE_WEIGHT)
    log.lock('%s: retained key given up: %s', queuePrefix, why)
    this.deleteTracked(queuePrefix, kept, !taken)
  }

  /** Stops the watch and deletes the key; the next request for the upload waits for it. */
  private deleteTracked(queuePrefix: string, kept: KeptKey, waitForCancel: boolean): void {
    const stopped = kept.watch.stop()
    const deleted: Promise<void> = (async () => {
      if (waitForCancel) await settledWithin(stopped, CANCEL_WAIT_MS)
      await kept.entry.release()
    })().finally(() => {
      if (this.releasing.get(queuePrefix) === deleted) this.releasing.delete(queuePrefix)
    })
    this.releasing.set(queuePrefix, deleted)
  }

  /** Forgets the retained key of `queuePrefix` without deleting it (there is nothing to delete). */
  private drop(queuePrefix: string, why: string): Promise<void> {
    const kept = this.remove(queuePrefix)
    if (kept === undefined) return Promise.resolve()
    log.lock('%s: retained key dropped: %s', queuePrefix, why)
    return kept.watch.stop()
  }

  private remove(queuePrefix: string): Retained | undefined {
    const kept = this.kept.get(queuePrefix)
    if (kept === undefined) return undefined
    this.kept.delete(queuePrefix)
    clearTimeout(kept.timer)
    kept.forgetSessionLost()
    return kept
  }
}
