import { type IEvent, type Namespace, Range } from 'etcd3'
import { callOptions } from '../session/etcd-calls.js'
import { log } from '../util/log.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'
import type { Watch } from '../watch/watch.js'
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
 * from our key's create revision + 1 (or, for a hold that came after a wait, from one read of
 * the queue), on the client's watch hub. An instance hears of its own uploads only, so a lock
 * cycle elsewhere in the fleet costs it nothing.
 *
 * A PUT of another key created after ours is a waiter; a DELETE of our own key means someone
 * removed it (a retained key must never be reused then). Either is told once, and the watch
 * ends. A broken stream is resumed by the hub; when etcd ends the watch (compaction, a refused
 * create), the queue is read once and the watch resumes from the revision of that read: never
 * again from a compacted one.
 */
export class ContentionWatch {
  private watch: Watch | undefined
  private done = false
  private retry: NodeJS.Timeout | undefined

  private readonly queuePrefix: string
  private readonly key: string
  /** `queuePrefix` and `key` as etcd has them (with the client's namespace). */
  private readonly wholePrefix: string
  private readonly wholeKey: string

  /**
   * Watches `entry`'s queue for it, `revision` being the entry's create revision. An entry held
   * at once (see {@link QueueEntry.heldAtEnqueue}) is watched from `revision + 1`; one that held
   * only after a wait reads its queue once and is watched from that read's revision: a watch
   * from its old create revision makes etcd decode every revision since, of every key, to catch
   * it up (and with thousands of such watches etcd spends its CPU there), while one read of the
   * upload's queue costs it almost nothing.
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
    if (entry.heldAtEnqueue) this.watchFrom(revision + 1n)
    else this.readThenWatch(0)
  }

  /** Whether the watch has told its listener, or was stopped. */
  get ended(): boolean {
    return this.done
  }

  /**
   * Whether etcd confirmed the watch caught up (see the hub's `live`) and nothing interrupted it
   * since. Only then does the absence of a `keyDeleted` mean (to within an event's delivery)
   * that our key is still there.
   */
  get live(): boolean {
    return !this.done && this.watch?.live === true
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

  private watchFrom(from: bigint): void {
    if (this.done) return
    const start = Buffer.from(this.wholePrefix)
    const watch = watchHubOf(this.client).watch(
      { key: start, rangeEnd: Range.prefix(start).end, from },
      {
        events: (events) => {
          if (this.watch === watch) this.onEvents(events)
        },
        interrupted: (why) => {
          if (this.watch !== watch) return
          this.watch = undefined
          log.lock('%s: contention watch ended (%s); reading the queue', this.queuePrefix, why)
          this.readThenWatch(0)
        },
      },
    )
    this.watch = watch
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

  /**
   * One read of the queue from our revision on: our key first (else it is gone), anything after
   * it is a waiter; otherwise watch from the read's revision + 1. Retried, backing off,
   * until etcd answers or the watch is stopped.
   */
  private readThenWatch(attempt: number): void {
    const wait = attempt === 0 ? 0 : Math.min(MAX_READ_BACKOFF_MS, 50 * 2 ** attempt)
    this.retry = setTimeout(() => {
      if (this.done) return
      this.client
        .getAll()
        .prefix(this.queuePrefix)
        .minCreateRevision(this.revision.toString())
        .sort('Create', 'Ascend')
        .limit(2)
        .options(callOptions())
        .exec()
        .then(
          (res) => {
            if (this.done) return
            const [first, next] = res.kvs
            const ours =
              first !== undefined &&
              first.key.toString() === this.key &&
              BigInt(first.create_revision) === this.revision
            if (!ours) {
              this.tell('keyDeleted')
            } else if (next !== undefined) {
              this.tell('contended', next.key.toString().slice(this.queuePrefix.length))
            } else {
              this.watchFrom(BigInt(res.header.revision) + 1n)
            }
          },
          () => this.readThenWatch(attempt + 1),
        )
    }, wait)
    this.retry.unref()
  }

  private tell(what: keyof ContentionListener, waiterKey = ''): void {
    if (this.done) return
    void this.stop()
    if (what === 'contended') this.listener.contended(waiterKey)
    else this.listener.keyDeleted()
  }
}
