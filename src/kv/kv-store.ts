import type { KvStore, Upload } from '@tus/utils'
import type { Namespace } from 'etcd3'
import { checkKvKey, describe, kvValuePrefix } from '../keys.js'
import { checkOptionsObject, milliseconds, resolveLockerOptions, wholeNumber } from '../options.js'
import { assertEtcdClient } from '../session/client-check.js'
import { accessError, callOptions } from '../session/etcd-calls.js'
import { endpointsOf, SessionKeeper } from '../session/session-keeper.js'
import { KeyedSerial } from '../util/keyed-serial.js'
import { MAX_TIMER_MS } from '../util/timers.js'
import { type Fence, FencedWriter } from './fenced-writer.js'
import {
  KV_STORE,
  KV_STORE_DEFAULTS,
  type KvStoreOptions,
  LOCKER_KV_STORE,
  MAX_CACHE_SIZE,
} from './kv-options.js'
import { parse, serialize, unreachable } from './kv-values.js'
import { LeasingCache, type LeasingCounters } from './leasing-cache.js'

export type { Fence } from './fenced-writer.js'
export type { KvStoreOptions } from './kv-options.js'

/** @internal What `locker.kvStore()` shares with the store: its session, prefix and locks. */
export interface SharedSession {
  keeper: SessionKeeper
  prefix: string
  fence(key: string): Fence | undefined
  /** Whether a cache of any store on this session serves `key` (or is about to). */
  cachedOnSession(key: string): boolean
}

/**
 * A `KvStore` of `@tus/utils` in etcd: upload metadata shared by every tus instance, for
 * `FileStore`'s `configstore` or the `cache` of `S3Store`/`AzureStore`. Values are JSON at
 * `P/.kv/<key>`.
 *
 * With `leasing` (the default), a read leases the key to this process and later reads are served
 * from memory, with no round trip, until a writer elsewhere revokes the lease; a write elsewhere
 * waits for that revoke, so reads stay linearizable. A cached value is never served once the
 * session's lease could have expired.
 *
 * Made by `locker.kvStore()`, writes are fenced: `set`/`delete` of an upload whose lock this
 * process holds commit only while that lock key is still the one it created, and otherwise
 * reject with `LockLostError`, writing nothing.
 */
export class Etcd3KvStore<T = Upload> implements KvStore<T> {
  private readonly keeper: SessionKeeper
  private readonly prefix: string
  private readonly fence: (key: string) => Fence | undefined
  private readonly cachedOnSession: (key: string) => boolean
  private readonly ownsSession: boolean
  private readonly serial = new KeyedSerial()
  private readonly cache: LeasingCache | undefined
  private readonly writer: FencedWriter

  /**
   * A standalone store with its own session (`locker.kvStore()` shares the locker's instead).
   * @param client An `Etcd3` client (or a `Namespace` of one); not closed by the store.
   * @param options `prefix` (default `/tusd`), `ttl`, `grantTimeout`, `safetyMargin` as for
   *   `Etcd3Locker`; `leasing`, `revokeBackoff`, `cacheSize` and `cacheIdle` (see
   *   {@link KvStoreOptions}).
   * @throws TypeError when `client` is not an `etcd3` client, TypeError or RangeError naming a
   *   bad option.
   */
  constructor(client: Namespace, options?: KvStoreOptions)
  /** @internal On the session, prefix and locks of `locker.kvStore()`. */
  constructor(client: Namespace, options: KvStoreOptions, shared: SharedSession)
  constructor(
    private readonly client: Namespace,
    options: KvStoreOptions = {},
    shared?: SharedSession,
  ) {
    assertEtcdClient(client, 'Etcd3KvStore')
    // Made by locker.kvStore(), whose caller's options errors name.
    const owner = shared === undefined ? KV_STORE : LOCKER_KV_STORE
    const given: KvStoreOptions = checkOptionsObject(options, owner)
    const {
      leasing = KV_STORE_DEFAULTS.leasing,
      revokeBackoff = KV_STORE_DEFAULTS.revokeBackoff,
      cacheSize = KV_STORE_DEFAULTS.cacheSize,
      cacheIdle = KV_STORE_DEFAULTS.cacheIdle,
      ...sessionOptions
    } = given
    if (typeof leasing !== 'boolean') {
      throw new TypeError(
        `${owner.name} option "leasing" must be a boolean, got ${describe(leasing)}`,
      )
    }
    if (typeof revokeBackoff !== 'number') {
      throw new TypeError(
        `${owner.name} option "revokeBackoff" must be a number, got ${describe(revokeBackoff)}`,
      )
    }
    if (!(revokeBackoff >= 0) || revokeBackoff > MAX_TIMER_MS) {
      throw new RangeError(
        `${owner.name} option "revokeBackoff" must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, got ${revokeBackoff}`,
      )
    }
    wholeNumber(owner, 'cacheSize', cacheSize, 1, MAX_CACHE_SIZE, 'keys')
    milliseconds(owner, 'cacheIdle', cacheIdle)
    if (shared) {
      this.keeper = shared.keeper
      this.prefix = shared.prefix
      this.fence = shared.fence
      this.cachedOnSession = shared.cachedOnSession
      this.ownsSession = false
    } else {
      const resolved = resolveLockerOptions(sessionOptions, KV_STORE)
      this.keeper = new SessionKeeper(client, { ...resolved, endpoints: endpointsOf(client) })
      this.prefix = resolved.prefix
      this.fence = () => undefined
      this.cachedOnSession = (key) => this.holdsInCache(key)
      this.ownsSession = true
    }
    this.cache = leasing
      ? new LeasingCache(
          client,
          this.keeper,
          this.prefix,
          this.serial,
          revokeBackoff,
          this.cachedOnSession,
          { size: cacheSize, idleMs: cacheIdle },
        )
      : undefined
    this.writer = new FencedWriter(
      client,
      this.keeper,
      this.prefix,
      this.cache,
      this.cachedOnSession,
      this.fence,
    )
    // Only a cache needs the session (its leasing keys live on it); start granting it now.
    if (this.ownsSession && leasing) this.keeper.start()
  }

  /** @internal Whether this store's cache serves `key` or is leasing it now. */
  holdsInCache(key: string): boolean {
    return this.cache?.holds(key) ?? false
  }

  /** Cache hits, misses, revokes and evictions so far (all zero without leasing). */
  get counters(): Readonly<LeasingCounters> {
    return { ...(this.cache?.counters ?? { hits: 0, misses: 0, revokes: 0, evictions: 0 }) }
  }

  /** How many keys the leasing cache holds now (0 without leasing). */
  get cachedKeys(): number {
    return this.cache?.size ?? 0
  }

  /** The value of `key`, or `undefined` when there is none. */
  async get(key: string): Promise<T | undefined> {
    checkKvKey(key)
    const { cache } = this
    if (cache === undefined) {
      return parse(key, await this.readFromEtcd(key).catch(this.refused(key)))
    }
    // A local write of this key in flight must finish first: never a stale read of our own write.
    if (this.serial.idle(key) === undefined) {
      const hit = this.fromCache(cache, key)
      if (hit) return hit.value
    }
    return this.serial.run(key, async () => {
      const hit = this.fromCache(cache, key)
      return hit ? hit.value : parse(key, await cache.fetch(key).catch(this.refused(key)))
    })
  }

  /** The cached value of `key`, counted as a hit, if it may be served now. */
  private fromCache(cache: LeasingCache, key: string): { value: T | undefined } | undefined {
    const entry = cache.lookup(key)
    if (entry === undefined) return undefined
    cache.counters.hits++
    return { value: parse(key, entry.raw) }
  }

  /**
   * Stores `value` (as JSON) under `key`.
   * @throws TypeError, before anything is written, when `value` cannot be serialized, and
   *   RangeError when its JSON is over 1 MiB.
   * @throws LockLostError when this process held or kept the upload's lock at the call, and that
   *   lock key is gone by the time the write commits (another instance may hold it): nothing is
   *   written. The fence is taken at the call, not when a write queued behind others runs.
   */
  async set(key: string, value: T): Promise<void> {
    checkKvKey(key)
    const write = this.writer.fencedAtCall(key, serialize(key, value))
    await this.serial.run(key, write).catch(this.refused(key))
  }

  /** Deletes `key`; fenced like {@link set}. Deleting a missing key resolves. */
  async delete(key: string): Promise<void> {
    checkKvKey(key)
    const write = this.writer.fencedAtCall(key, undefined)
    await this.serial.run(key, write).catch(this.refused(key))
  }

  /** Every key of the store, read from etcd (not the cache). */
  async list(): Promise<string[]> {
    const prefix = kvValuePrefix(this.prefix)
    const keys = await this.client
      .getAll()
      .prefix(prefix)
      .options(callOptions())
      .keys()
      .catch(this.refused(''))
    return keys.map((k) => k.slice(prefix.length))
  }

  /**
   * Revokes the store's own session (standalone stores only; a store from `locker.kvStore()`
   * lives as long as its locker). Idempotent.
   */
  async close(): Promise<void> {
    if (this.ownsSession) await this.keeper.close()
  }

  /** Rethrows etcd's RBAC and credential refusals about `key` as our errors, naming the key. */
  private refused(key: string): (error: unknown) => never {
    return (error) => {
      const mapped = accessError(error, {
        key: kvValuePrefix(this.prefix) + key,
        prefix: this.prefix,
      })
      throw unreachable(mapped, endpointsOf(this.client), key)
    }
  }

  private async readFromEtcd(key: string): Promise<string | undefined> {
    const raw = await this.client
      .get(kvValuePrefix(this.prefix) + key)
      .options(callOptions())
      .string()
    return raw ?? undefined
  }
}
