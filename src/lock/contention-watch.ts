import { type IEvent, type Namespace, Range } from 'etcd3'
import { readBatchOf } from '../session/read-batch.js'
import { log } from '../util/log.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'
import type { Watch, WatchListener } from '../watch/watch.js'
import type { QueueEntry } from './queue-entry.js'

/** What a {@link ContentionWatch} tells the one who holds or retains the upload. */
export interface ContentionListener {
  /**
   * Another entry joined the queue after ours: a waiter (any process, etcdctl, tusd); `waiter`
   * is the last segment of its key (its lease in hex, for lockers and etcdctl).
   */
  contended(waiter: string): void
  /** Our own key was deleted (by hand, or its lease revoked): we no longer hold the upload. */
  keyDeleted(): void
}

const MAX_READ_BACKOFF_MS = 1_000

/**
 * Protocol step 4 for one held or retained upload: a watch on that upload's queue `P/<id>/`
 * from etcd's revision when it creates the watch, plus one read of the queue at that revision,
 * on the client's watch hub. An instance hears of its own uploads only, so a lock cycle
 * elsewhere in the fleet costs it nothing.
 *
 * A PUT of another key created after ours is a waiter; a DELETE of our own key means someone
 * removed it (a retained key must never be reused then). Either is told once, and the watch
 * ends. A broken stream is resumed by the hub; when etcd ends the watch (compaction, a refused
 * create), it starts over: a new watch from etcd's revision then, and a read at it.
 */
export class ContentionWatch {
  private watch: Watch | undefined
  private done = false
  /** The read at the current watch's start revision found our key first, nobody after it. */
  private checked = false
  private retry: NodeJS.Timeout | undefined
  /** Someone acts on {@link live} (a kept key): etcd is asked to confirm the watch. */
  private liveWanted = false
  /** Watches started over so far (a compaction, a refused create): the back-off's step. */
  private attempt = 0
  /** What the hub tells, for every watch this one starts. */
  private readonly hears: WatchListener = new QueueWatchListener(this)

  private readonly queuePrefix: string
  private readonly key: string
  /** `queuePrefix` and `key` as etcd has them (with the client's namespace). */
  private readonly wholePrefix: string
  private readonly wholeKey: string

  /**
   * Watches `entry`'s queue for it, `revision` being the entry's create revision. The watch
   * starts from etcd's revision when it creates it (so etcd need not catch it up, but for a
   * write applied while it registers the watch), and one read of the queue at that very
   * revision tells what happened between our key's create and then: a watch from our old
   * revision would make etcd decode every revision since, of every key, to catch it up (with
   * thousands of such watches, its whole CPU, and its writes wait for it), while one read of the
   * upload's queue, served by the member at a known revision, costs it almost nothing.
   */
  constructor(
    private readonly client: Namespace,
    entry: QueueEntry,
    private readonly revision: bigint,
    /** Who hears of it: changes as the key passes between a holder and retention. */
    public listener: ContentionListener,
  ) {
    this.queuePrefix = entry.queuePrefix
    this.key = entry.key
    const ns = namespacePrefix(client)
    this.wholePrefix = ns + this.queuePrefix
    this.wholeKey = ns + this.key
    this.watchThenRead(0)
  }

  /** Whether the watch has told its listener, or was stopped. */
  get ended(): boolean {
    return this.done
  }

  /**
   * Whether etcd is watching for us now, confirmed synced (a progress answer, or the read at its
   * start served at the create's very revision by the watch's member), and that read showed our
   * key first with nobody after it. Only then does the absence of a `keyDeleted` mean (to within
   * an event's delivery) that our key is still there.
   */
  get live(): boolean {
    return !this.done && this.checked && this.watch?.live === true
  }

  /**
   * From now on {@link live} matters (the key is kept): etcd is asked to confirm the watch
   * (progress requests), where the read at its start could not (something was written since).
   */
  wantLive(): void {
    if (this.liveWanted) return
    this.liveWanted = true
    if (this.watch !== undefined) watchHubOf(this.client).requestConfirmation(this.watch)
  }

  /**
   * Stops watching; nothing is told after this. Idempotent. Resolves once etcd confirmed the
   * cancel (or there was nothing to cancel): a delete of our key after that reaches no watcher.
   */
  stop(): Promise<void> {
    if (this.done) return Promise.resolve()
    this.done = true
    clearTimeout(this.retry)
    const watch = this.watch
    this.watch = undefined
    return watch?.cancel() ?? Promise.resolve()
  }

  /**
   * Watches the queue from etcd's revision now, then reads it at the revision etcd created the
   * watch at. A watch etcd ends (a compaction, a refused create) starts over, backing off.
   */
  private watchThenRead(attempt: number): void {
    this.attempt = attempt
    this.afterBackoff(attempt, () => this.startWatch())
  }

  /** Runs `run` at once on the first attempt, else after a back-off that doubles per attempt. */
  private afterBackoff(attempt: number, run: () => void): void {
    if (attempt === 0) {
      run()
      return
    }
    this.retry = setTimeout(
      () => {
        this.retry = undefined
        run()
      },
      Math.min(MAX_READ_BACKOFF_MS, 50 * 2 ** attempt),
    )
    this.retry.unref()
  }

  private startWatch(): void {
    if (this.done) return
    this.checked = false
    this.watch = watchHubOf(this.client).watch(
      { key: this.wholePrefix, rangeEnd: 'prefix', from: 'now', confirm: this.liveWanted },
      this.hears,
    )
  }

  /** etcd created `watch` at `revision`: read the queue at it, once. */
  watchCreated(watch: Watch, revision: bigint): void {
    if (this.watch === watch && !this.checked) this.readAt(watch, revision, 0)
  }

  watchEvents(watch: Watch, events: IEvent[]): void {
    if (this.watch === watch) this.onEvents(events)
  }

  watchInterrupted(watch: Watch, why: string): void {
    if (this.watch !== watch) return
    this.watch = undefined
    log.lock('%s: contention watch ended (%s); watching again', this.queuePrefix, why)
    this.watchThenRead(this.attempt + 1)
  }

  /**
   * The queue from our key on, at `revision` (the watch's start, at first from the member's own
   * store; if that fails, at etcd's revision now, which the watch covers too): our key first
   * (else it is gone), anything after it is a waiter. Retried, backing off, until etcd answers
   * or the watch is stopped.
   */
  private readAt(watch: Watch, revision: bigint, attempt: number): void {
    this.afterBackoff(attempt, () => this.read(watch, revision, attempt))
  }

  private read(watch: Watch, revision: bigint, attempt: number): void {
    if (this.done || this.watch !== watch) return
    const start = Buffer.from(this.wholePrefix)
    const hub = watchHubOf(this.client)
    // Taken before the read goes out: its answer can then show the watch was created synced.
    const check = hub.syncCheck(watch)
    readBatchOf(this.client)
      .range({
        key: start,
        range_end: Range.prefix(start).end,
        min_create_revision: this.revision.toString(),
        sort_order: 'Ascend',
        sort_target: 'Create',
        limit: 2,
        ...(attempt === 0 ? { revision: revision.toString(), serializable: true } : {}),
      })
      .then(
        (res) => {
          if (this.done || this.watch !== watch) return
          const [first, next] = res.kvs
          const ours =
            first !== undefined &&
            first.key.toString() === this.wholeKey &&
            BigInt(first.create_revision) === this.revision
          if (!ours) {
            this.tell('keyDeleted')
          } else if (next !== undefined) {
            this.tell('contended', next.key.toString().slice(this.wholePrefix.length))
          } else {
            this.checked = true
            if (check !== undefined) hub.confirmedByRead(watch, check, res.header)
          }
        },
        () => this.readAt(watch, revision, attempt + 1),
      )
  }

  private onEvents(events: IEvent[]): void {
    const told = events.find(
      (event) =>
        (event.type === 'Delete' && event.kv.key.toString() === this.wholeKey) ||
        (event.type === 'Put' &&
          event.kv.key.toString() !== this.wholeKey &&
          BigInt(event.kv.create_revision) > this.revision),
    )
    if (told === undefined) return
    if (told.type === 'Delete') this.tell('keyDeleted')
    else this.tell('contended', told.kv.key.toString().slice(this.wholePrefix.length))
  }

  private tell(what: keyof ContentionListener, waiterKey = ''): void {
    if (this.done) return
    void this.stop()
    if (what === 'contended') this.listener.contended(waiterKey)
    else this.listener.keyDeleted()
  }
}

/**
 * Hears the hub for one {@link ContentionWatch}: three methods on a prototype, where closures
 * would cost a held lock about 250 bytes more.
 */
class QueueWatchListener implements WatchListener {
  constructor(private readonly owner: ContentionWatch) {}

  created(revision: bigint, watch: Watch): void {
    this.owner.watchCreated(watch, revision)
  }

  events(events: IEvent[], watch: Watch): void {
    this.owner.watchEvents(watch, events)
  }

  interrupted(why: string, watch: Watch): void {
    this.owner.watchInterrupted(watch, why)
  }
}
