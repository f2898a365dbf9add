import type { IKeyValue, Namespace, Watcher } from 'etcd3'
import { kvLeasePrefix, kvValuePrefix } from '../keys.js'
import { callOptions } from '../session/etcd-calls.js'
import { log } from '../util/log.js'

interface Holder {
  readonly queuePrefix: string
  readonly key: string
  readonly revision: bigint
  readonly onContended: () => void
}

// How long a PUT seen on a queue is remembered for holders that register after it was
// delivered (a holder registers once it holds, possibly after waiting up to acquireLockTimeout).
const REMEMBER_MS = 10 * 60_000
// Keep the watch this long after the last holder left: holds often follow one another.
const LINGER_MS = 10_000
const RESTART_DELAY_MS = 200

/**
 * Protocol step 4 for every holder of a locker at once: one etcd watch on the whole prefix
 * instead of one per held lock. A PUT on a held upload's queue of a key other than the holder's,
 * created after it, is a waiter (of any process, `etcdctl lock`, tusd): the holder is told once.
 *
 * The watch starts at the first holder's revision + 1. Every PUT it delivers is remembered per
 * queue, so a holder registering later hears waiters that queued before it registered; a holder
 * older than the watch's start, and every holder after the watch broke, reads its queue once.
 */
export class ContentionWatch {
  private readonly holders = new Map<string, Set<Holder>>()
  private readonly newestPut = new Map<string, { revision: bigint; at: number }>()
  private watcher: Watcher | undefined
  private from = 0n
  private idle: NodeJS.Timeout | undefined

  constructor(
    private readonly client: Namespace,
    private readonly prefix: string,
  ) {}

  /** Calls `onContended` once when another entry joins `queuePrefix` after `revision`. */
  register(
    queuePrefix: string,
    key: string,
    revision: bigint,
    onContended: () => void,
  ): () => void {
    let fired = false
    const holder: Holder = {
      queuePrefix,
      key,
      revision,
      onContended: () => {
        if (fired) return
        fired = true
        unregister()
        onContended()
      },
    }
    const unregister = () => {
      const set = this.holders.get(queuePrefix)
      set?.delete(holder)
      if (set?.size === 0) this.holders.delete(queuePrefix)
      if (this.holders.size === 0) {
        clearTimeout(this.idle)
        this.idle = setTimeout(() => this.holders.size === 0 && this.stop(), LINGER_MS).unref()
      }
    }
    clearTimeout(this.idle)
    const set = this.holders.get(queuePrefix) ?? new Set()
    set.add(holder)
    this.holders.set(queuePrefix, set)
    this.cover(holder)
    return unregister
  }

  /** Makes sure `holder` hears every PUT after its revision: from the watch, memory, or a read. */
  private cover(holder: Holder): void {
    if (this.watcher === undefined) {
      this.start(holder.revision + 1n)
      return
    }
    if (holder.revision + 1n < this.from) {
      this.readQueue(holder)
      return
    }
    const seen = this.newestPut.get(holder.queuePrefix)
    if (seen !== undefined && seen.revision > holder.revision) holder.onContended()
  }

  private start(from: bigint): void {
    this.from = from
    const watcher = this.client
      .watch()
      .prefix(`${this.prefix}/`)
      .startRevision(from.toString())
      .watcher()
    this.watcher = watcher
    watcher.on('put', (kv) => this.onPut(kv))
    // Events may have been missed: start again, and let every holder read its queue. A moment
    // later, not inside the client's 'disconnected' emit: a watch attached while the etcd3 client
    // is still handling its broken stream can leave it with two streams, and it then throws.
    const restart = () => {
      if (this.watcher !== watcher) return
      log.lock('contention watch interrupted; holders read their queues')
      this.stop()
      const holders = [...this.holders.values()].flatMap((set) => [...set])
      setTimeout(() => {
        for (const holder of holders) {
          if (!this.holders.get(holder.queuePrefix)?.has(holder)) continue
          if (this.watcher === undefined) this.start(holder.revision + 1n)
          this.readQueue(holder)
        }
      }, RESTART_DELAY_MS).unref()
    }
    watcher.on('error', restart)
    watcher.on('disconnected', restart)
  }

  /** Stops watching (the locker is closing). */
  close(): void {
    clearTimeout(this.idle)
    this.holders.clear()
    this.stop()
  }

  private stop(): void {
    const watcher = this.watcher
    this.watcher = undefined
    this.newestPut.clear()
    watcher?.cancel().catch(() => undefined)
  }

  private onPut(kv: IKeyValue): void {
    const key = kv.key.toString()
    if (key.startsWith(kvValuePrefix(this.prefix)) || key.startsWith(kvLeasePrefix(this.prefix))) {
      return
    }
    const queuePrefix = key.slice(0, key.lastIndexOf('/') + 1)
    const revision = BigInt(kv.create_revision)
    const now = Date.now()
    const seen = this.newestPut.get(queuePrefix)
    if (seen === undefined || seen.revision < revision)
      this.newestPut.set(queuePrefix, { revision, at: now })
    this.forgetOld(now)
    for (const holder of this.holders.get(queuePrefix) ?? []) {
      if (key !== holder.key && revision > holder.revision) holder.onContended()
    }
  }

  private forgetOld(now: number): void {
    if (this.newestPut.size < 10_000) return
    for (const [queuePrefix, seen] of this.newestPut) {
      if (now - seen.at > REMEMBER_MS && !this.holders.has(queuePrefix))
        this.newestPut.delete(queuePrefix)
    }
  }

  /** One read: is anything in the holder's queue created after it? Retried until it answers. */
  private readQueue(holder: Holder, attempt = 0): void {
    this.client
      .getAll()
      .prefix(holder.queuePrefix)
      .minCreateRevision((holder.revision + 1n).toString())
      .limit(1)
      .options(callOptions())
      .exec()
      .then(
        (res) => {
          if (res.kvs.length > 0) holder.onContended()
        },
        () => {
          if (!this.holders.get(holder.queuePrefix)?.has(holder)) return
          setTimeout(
            () => this.readQueue(holder, attempt + 1),
            Math.min(1_000, 50 * 2 ** attempt),
          ).unref()
        },
      )
  }
}
