import { EtcdLeaseInvalidError, type Namespace } from 'etcd3'
import { kvLeasePrefix, kvValuePrefix } from '../keys.js'
import { callOptions, retryWhileSessionLives } from '../session/etcd-calls.js'
import type { Session } from '../session/session.js'
import type { SessionKeeper } from '../session/session-keeper.js'
import type { KeyedSerial } from '../util/keyed-serial.js'
import { log } from '../util/log.js'
import { timerDelay } from '../util/timers.js'
import { namespacePrefix, watchHubOf } from '../watch/hub.js'
import { LeftoverLeases } from './leftover-leases.js'

/** The value a writer puts on a leasing key to ask its owner to give the key up. */
export const REVOKE = 'REVOKE'

/** One key this process may serve from memory: it owns the key's leasing key. */
export interface CacheEntry {
  /** JSON text of the value; `undefined` when the key does not exist. */
  raw: string | undefined
  /** Create revision of our leasing key: owner writes are guarded by it. */
  readonly leaseKeyRevision: bigint
  readonly session: Session
  /** When it was last read or installed (`Date.now()`): an entry unread for the idle time goes. */
  lastRead: number
  stopWatching(): void
}

/** How many entries a cache keeps, and for how long unread. */
export interface CacheBounds {
  /** Most entries at once; the least recently read is given up first. */
  readonly size: number
  /** ms an entry may stay unread before it is given up. */
  readonly idleMs: number
}

/**
 * Counts kept for metrics: cache hits and misses of `get`, revokes honoured, and entries given up
 * by the cache's bounds (`cacheSize`, `cacheIdle`).
 */
export interface LeasingCounters {
  /** Reads served from memory, while this process held the key's lease. */
  hits: number
  /** Reads that went to etcd. */
  misses: number
  /** Writes that first had to revoke another process's lease on the key. */
  revokes: number
  /** Entries given up for `cacheSize` or `cacheIdle`. */
  evictions: number
}

/**
 * The owner side of the leasing protocol (after etcd's `clientv3/leasing`): a `get` that misses
 * leases the key (`P/.kvlease/<key>` on our session) and caches the value; while the lease is
 * ours and the session is trusted, reads are local. A writer elsewhere puts `REVOKE` on the
 * leasing key: we stop serving at once, then delete the leasing key so its write can commit.
 * Everything cached under a session is dropped the moment that session is lost.
 *
 * Bounded: at most `bounds.size` entries (least recently read given up first), and an entry
 * unread for `bounds.idleMs` is given up (leasing key deleted, watch cancelled), so memory,
 * leasing keys and watches follow the keys in use now. One timer serves the whole cache: the
 * map is kept in order of last read, so the first entry is always the next to go idle.
 */
export class LeasingCache {
  readonly counters: LeasingCounters = { hits: 0, misses: 0, revokes: 0, evictions: 0 }
  /** In order of last read, least recent first. */
  private readonly entries = new Map<string, CacheEntry>()
  private idleTimer: NodeJS.Timeout | undefined
  /** Keys whose lease-and-read txn is in flight: they may be cached a moment from now. */
  private readonly fetching = new Map<string, number>()
  private readonly releasedAt = new Map<string, number>()
  private readonly watchedSessions = new WeakSet<Session>()
  private readonly leftovers: LeftoverLeases

  constructor(
    private readonly client: Namespace,
    private readonly keeper: SessionKeeper,
    private readonly prefix: string,
    private readonly serial: KeyedSerial,
    /** After giving a key up, ms before leasing it again: its writer is likely busy with it. */
    private readonly revokeBackoff: number,
    /** Whether a cache of any store on this session serves `key` (or is leasing it now). */
    cachedOnSession: (key: string) => boolean,
    private readonly bounds: CacheBounds,
  ) {
    this.leftovers = new LeftoverLeases(client, (key) => this.leaseKey(key), cachedOnSession)
  }

  /** How many keys are cached now. */
  get size(): number {
    return this.entries.size
  }

  valueKey(key: string): string {
    return kvValuePrefix(this.prefix) + key
  }

  leaseKey(key: string): string {
    return kvLeasePrefix(this.prefix) + key
  }

  /** The entry of `key` if it may be served now (ours, session trusted), else `undefined`. */
  lookup(key: string): CacheEntry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.session.isLost) {
      this.drop(key, entry) // the lease went with the session: nothing to delete
      return undefined
    }
    if (!entry.session.isTrusted) {
      // Past the local deadline, not lost yet: a late keepalive answer may yet revive the
      // session, and with it our leasing key, which no entry would then answer a REVOKE for.
      this.release(key, entry, 'its session is past the local deadline', 'now', false)
      return undefined
    }
    entry.lastRead = Date.now()
    // To the end: the map stays in order of last read.
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry
  }

  /**
   * Gives the lease on `key` up, with no back-off, after an owner write deleted the key and its
   * leasing key in one txn: nothing is left to delete.
   */
  evictDeleted(key: string): void {
    const entry = this.entries.get(key)
    if (entry) this.drop(key, entry)
  }

  /** Forgets `key` after a guarded owner write found the leasing key no longer ours. */
  forget(key: string): void {
    const entry = this.entries.get(key)
    if (entry) this.drop(key, entry)
  }

  /**
   * Whether this cache serves `key`, or may in a moment (a lease-and-read in flight): a writer
   * of this process that finds our session's leasing key on `key` must then revoke it like any
   * other writer, not take it for a leftover.
   */
  holds(key: string): boolean {
    return this.entries.has(key) || this.fetching.has(key)
  }

  /**
   * Stops serving `key` after an owner write of it failed with its outcome unknown (etcd may
   * have the new value), then gives the lease up so that nobody waits for it.
   */
  abandon(key: string, why: string): void {
    const entry = this.entries.get(key)
    // Called from inside the failed write, the only local write of the key: no need to queue the
    // give-up behind it, and reads of the key need not wait for the give-up's delete.
    if (entry) this.release(key, entry, why, 'now')
  }

  /**
   * A miss: reads `key` from etcd and, in the same txn, leases it unless another process has (or
   * we gave it up a moment ago). Returns the value's JSON text, `undefined` when absent.
   */
  async fetch(key: string): Promise<string | undefined> {
    this.counters.misses++
    const session = await this.keeper.session()
    const valueKey = this.valueKey(key)
    const leaseKey = this.leaseKey(key)
    const plainRead = async () =>
      (await this.client.get(valueKey).options(callOptions()).string()) ?? undefined
    if (this.inBackoff(key)) return plainRead()
    let res: Awaited<ReturnType<ReturnType<Namespace['if']>['commit']>>
    this.fetching.set(key, (this.fetching.get(key) ?? 0) + 1)
    try {
      res = await this.client
        .if(leaseKey, 'Create', '==', 0)
        .then(this.client.put(leaseKey).value('').lease(session.leaseId), this.client.get(valueKey))
        .else(this.client.get(valueKey), this.client.get(leaseKey))
        .options(callOptions())
        .commit()
    } catch (error) {
      if (!(error instanceof EtcdLeaseInvalidError)) {
        // Outcome unknown: the txn may have leased the key to us (now or a little later) with no
        // entry to answer a REVOKE, and a writer would wait for our whole TTL. Lease nothing for
        // a while, and check after the deadline, until etcd answers, for such a leftover.
        this.releasedAt.set(key, Date.now())
        this.leftovers.checkLater(key, session)
        throw error
      }
      // The session ended under us: nothing to cache under it; the next read gets a new one.
      session.markLost('etcd says the lease is gone')
      return plainRead()
    } finally {
      this.doneFetching(key)
    }
    const value = res.responses[res.succeeded ? 1 : 0]?.response_range?.kvs[0]?.value.toString()
    if (res.succeeded) {
      this.install(key, value, BigInt(res.header.revision), session)
      return value
    }
    const leasing = res.responses[1]?.response_range?.kvs[0]
    if (leasing !== undefined && this.leftovers.isLeftover(key, leasing, session)) {
      // Ours, but no store of this process caches it (a give-up that failed to delete it, a
      // lease-and-read whose answer was lost): release it for writers.
      this.deleteLeaseKey(key, BigInt(leasing.create_revision), session)
    }
    return value
  }

  /**
   * A write of `key` by this store, which nobody leases: the session to lease the key to in the
   * same txn (so that the next read, a PATCH after the POST that created the upload, is a hit),
   * or `undefined` when it must not be leased now (no trusted session, or in back-off). Until
   * {@link endLeaseOnWrite}, the key counts as being leased (see {@link holds}).
   */
  beginLeaseOnWrite(key: string): Session | undefined {
    const session = this.keeper.live
    if (session === undefined || !session.isTrusted || this.inBackoff(key)) return undefined
    if (this.entries.has(key)) return undefined
    this.fetching.set(key, (this.fetching.get(key) ?? 0) + 1)
    return session
  }

  /**
   * The write's txn answered: it leased the key at `revision` with value `raw`, or it did not
   * (`'not-leased'`), or its outcome is unknown (`'unknown'`: treated as a lease-and-read whose
   * answer was lost).
   */
  endLeaseOnWrite(
    key: string,
    session: Session,
    outcome: { revision: bigint; raw: string } | 'not-leased' | 'unknown',
  ): void {
    this.doneFetching(key)
    if (outcome === 'not-leased') return
    if (outcome === 'unknown') {
      this.releasedAt.set(key, Date.now())
      this.leftovers.checkLater(key, session)
      return
    }
    if (session.isLost) return // the leasing key went with the session
    this.install(key, outcome.raw, outcome.revision, session)
  }

  private install(key: string, raw: string | undefined, revision: bigint, session: Session): void {
    const entry: CacheEntry = {
      raw,
      leaseKeyRevision: revision,
      session,
      lastRead: Date.now(),
      stopWatching: () => {
        void watch.cancel()
      },
    }
    // From just after the txn that leased it: a REVOKE put since then is heard. A broken stream
    // is resumed by the hub from the next revision, so nothing is missed; a watch etcd ends
    // (compaction) may have missed a REVOKE: give the key up rather than risk a stale read.
    const watch = watchHubOf(this.client).watch(
      { key: namespacePrefix(this.client) + this.leaseKey(key), from: revision + 1n },
      {
        events: (events) => {
          for (const event of events) {
            if (event.type === 'Delete') {
              if (this.entries.get(key) === entry) this.drop(key, entry)
              return
            }
            if (event.kv.value.toString() === REVOKE) {
              this.giveUp(key, entry, 'revoked by a writer')
              return
            }
          }
        },
        interrupted: (why) => this.giveUp(key, entry, `watch ended: ${why}`),
      },
    )
    for (const [oldKey, oldEntry] of this.entries) {
      if (this.entries.size < this.bounds.size) break
      this.evict(oldKey, oldEntry, `more than ${this.bounds.size} keys cached (cacheSize)`)
    }
    this.entries.set(key, entry)
    this.dropAllWhenLost(session)
    this.armIdleTimer()
  }

  /** Gives up an entry the bounds no longer allow: like a revoke, but with no back-off. */
  private evict(key: string, entry: CacheEntry, why: string): void {
    this.counters.evictions++
    this.release(key, entry, why, 'after-local-writes', false)
  }

  /** Arms the one idle timer for the entry read least recently, unless it is armed. */
  private armIdleTimer(): void {
    if (this.idleTimer !== undefined) return
    const first = this.entries.values().next().value
    if (first === undefined) return
    const wait = timerDelay(first.lastRead + this.bounds.idleMs - Date.now())
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      const now = Date.now()
      for (const [key, entry] of this.entries) {
        if (now - entry.lastRead < this.bounds.idleMs) break
        this.evict(key, entry, `unread for ${this.bounds.idleMs} ms (cacheIdle)`)
      }
      this.armIdleTimer()
    }, wait)
    this.idleTimer.unref()
  }

  private doneFetching(key: string): void {
    const left = (this.fetching.get(key) ?? 1) - 1
    if (left > 0) this.fetching.set(key, left)
    else this.fetching.delete(key)
  }

  /** A writer asked for `key` (or our watch of it broke): give it up, counted as a revoke. */
  private giveUp(key: string, entry: CacheEntry, why: string): void {
    if (this.entries.get(key) !== entry) return
    this.counters.revokes++
    this.release(key, entry, why)
  }

  /** Stops serving `key` at once, then deletes our leasing key so a writer can go on. */
  private release(
    key: string,
    entry: CacheEntry,
    why: string,
    when: 'after-local-writes' | 'now' = 'after-local-writes',
    backOff = true,
  ): void {
    this.drop(key, entry)
    if (backOff) {
      this.pruneReleased()
      this.releasedAt.set(key, Date.now())
    }
    log.locker('kv %s: cache lease given up (%s)', key, why)
    const deleteLeaseKey = () => this.deleteLeaseKey(key, entry.leaseKeyRevision, entry.session)
    // By default after any local write of the key in flight: it was guarded by the lease we hold.
    if (when === 'now') void deleteLeaseKey()
    else void this.serial.run(key, deleteLeaseKey)
  }

  private drop(key: string, entry: CacheEntry): void {
    this.entries.delete(key)
    entry.stopWatching()
    if (this.entries.size === 0) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
  }

  private deleteLeaseKey(key: string, revision: bigint, session: Session): Promise<void> {
    const leaseKey = this.leaseKey(key)
    return retryWhileSessionLives(
      session,
      () =>
        this.client
          .if(leaseKey, 'Create', '==', revision.toString())
          .then(this.client.delete().key(leaseKey))
          .options(callOptions())
          .commit(),
      `delete ${leaseKey}`,
    )
  }

  /** Forgets give-ups older than the back-off, so the map stays as small as the busy keys. */
  private pruneReleased(): void {
    if (this.releasedAt.size < 1_000) return
    const now = Date.now()
    for (const [key, at] of this.releasedAt) {
      if (now - at >= this.revokeBackoff) this.releasedAt.delete(key)
    }
  }

  private inBackoff(key: string): boolean {
    const at = this.releasedAt.get(key)
    if (at === undefined) return false
    if (Date.now() - at < this.revokeBackoff) return true
    this.releasedAt.delete(key)
    return false
  }

  private dropAllWhenLost(session: Session): void {
    if (this.watchedSessions.has(session)) return
    this.watchedSessions.add(session)
    session.signal.addEventListener('abort', () => {
      for (const [key, entry] of this.entries) if (entry.session === session) this.drop(key, entry)
    })
  }
}
