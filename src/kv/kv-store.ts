import type { KvStore, Upload } from '@tus/utils'
import {
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCGenericError,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  type IKeyValue,
  type Namespace,
} from 'etcd3'
import { LockerError, LockLostError } from '../errors.js'
import { checkKvKey, describe, kvLeasePrefix, kvValuePrefix, quote } from '../keys.js'
import { deletedOrInterrupted } from '../lock/watch.js'
import {
  checkOptionsObject,
  type LockerOptions,
  milliseconds,
  type OptionsOwner,
  resolveLockerOptions,
  wholeNumber,
} from '../options.js'
import { accessError, CALL_TIMEOUT_MS, callOptions } from '../session/etcd-calls.js'
import { endpointsOf, SessionKeeper } from '../session/session-keeper.js'
import { LinkedAbort, settledWithin } from '../util/abort.js'
import { KeyedSerial } from '../util/keyed-serial.js'
import { MAX_TIMER_MS, timerDelay } from '../util/timers.js'
import { LeasingCache, type LeasingCounters, REVOKE } from './leasing-cache.js'

/** @internal The defaults of the cache's options, shared with `locker.kvStore()`. */
export const KV_STORE_DEFAULTS = {
  leasing: true,
  revokeBackoff: 1_000,
  cacheSize: 10_000,
  cacheIdle: 30_000,
} as const

/** The largest `cacheSize`: far beyond any process's memory for upload metadata. */
const MAX_CACHE_SIZE = 100_000_000

/**
 * Options of a standalone {@link Etcd3KvStore}; `locker.kvStore()` takes only `leasing`,
 * `revokeBackoff`, `cacheSize` and `cacheIdle` (the session's options are the locker's).
 */
export interface KvStoreOptions
  extends Pick<LockerOptions, 'ttl' | 'prefix' | 'grantTimeout' | 'safetyMargin'> {
  /**
   * Serve reads from a local cache while this process holds the key's lease (default `true`).
   * `false`: every read and write goes to etcd.
   */
  leasing?: boolean
  /**
   * After another process's write revoked this process's lease on a key, ms before a read leases
   * that key again (default 1 000): meanwhile reads of it go to etcd, so a key two instances
   * both write does not bounce between their caches.
   */
  revokeBackoff?: number
  /**
   * Most keys cached at once (default 10 000, whole number >= 1). Beyond it the key read least
   * recently is given up: its leasing key is deleted and its watch cancelled.
   */
  cacheSize?: number
  /**
   * ms a cached key may stay unread before it is given up (default 30 000): the cache, its
   * leasing keys in etcd and its watches follow the uploads in use now, not every upload ever read.
   */
  cacheIdle?: number
}

/** The lock key that fences writes to a KV key while this process holds that upload's lock. */
export interface Fence {
  key: string
  revision: bigint
}

/** @internal What `locker.kvStore()` shares with the store: its session, prefix and locks. */
export interface SharedSession {
  keeper: SessionKeeper
  prefix: string
  fence(key: string): Fence | undefined
  /** Whether a cache of any store on this session serves `key` (or is about to). */
  cachedOnSession(key: string): boolean
}

const KV_STORE: OptionsOwner = {
  name: 'Etcd3KvStore',
  known: [
    'prefix',
    'ttl',
    'grantTimeout',
    'safetyMargin',
    'leasing',
    'revokeBackoff',
    'cacheSize',
    'cacheIdle',
  ],
}

// A foreign write gives up after asking this many owners in a row to release the key.
const MAX_REVOKE_ROUNDS = 10

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

  /**
   * A standalone store with its own session (`locker.kvStore()` shares the locker's instead).
   * @param client An `Etcd3` client (or a `Namespace` of one); not closed by the store.
   * @param options `prefix` (default `/tusd`), `ttl`, `grantTimeout`, `safetyMargin` as for
   *   `Etcd3Locker`; `leasing`, `revokeBackoff`, `cacheSize` and `cacheIdle` (see
   *   {@link KvStoreOptions}).
   * @throws TypeError or RangeError naming a bad option.
   */
  constructor(client: Namespace, options?: KvStoreOptions)
  /** @internal On the session, prefix and locks of `locker.kvStore()`. */
  constructor(client: Namespace, options: KvStoreOptions, shared: SharedSession)
  constructor(
    private readonly client: Namespace,
    options: KvStoreOptions = {},
    shared?: SharedSession,
  ) {
    const given: KvStoreOptions = checkOptionsObject(options, KV_STORE)
    const {
      leasing = KV_STORE_DEFAULTS.leasing,
      revokeBackoff = KV_STORE_DEFAULTS.revokeBackoff,
      cacheSize = KV_STORE_DEFAULTS.cacheSize,
      cacheIdle = KV_STORE_DEFAULTS.cacheIdle,
      ...sessionOptions
    } = given
    if (typeof leasing !== 'boolean') {
      throw new TypeError(
        `Etcd3KvStore option "leasing" must be a boolean, got ${describe(leasing)}`,
      )
    }
    if (typeof revokeBackoff !== 'number') {
      throw new TypeError(
        `Etcd3KvStore option "revokeBackoff" must be a number, got ${describe(revokeBackoff)}`,
      )
    }
    if (!(revokeBackoff >= 0) || revokeBackoff > MAX_TIMER_MS) {
      throw new RangeError(
        `Etcd3KvStore option "revokeBackoff" must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, got ${revokeBackoff}`,
      )
    }
    wholeNumber(KV_STORE, 'cacheSize', cacheSize, 1, MAX_CACHE_SIZE, 'keys')
    milliseconds(KV_STORE, 'cacheIdle', cacheIdle)
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
   * @throws LockLostError when this process holds the upload's lock but etcd gave it to another.
   */
  async set(key: string, value: T): Promise<void> {
    checkKvKey(key)
    const raw = serialize(key, value)
    await this.serial.run(key, () => this.write(key, raw)).catch(this.refused(key))
  }

  /** Deletes `key`; fenced like {@link set}. Deleting a missing key resolves. */
  async delete(key: string): Promise<void> {
    checkKvKey(key)
    await this.serial.run(key, () => this.write(key, undefined)).catch(this.refused(key))
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

  /**
   * Writes `raw` (or deletes, for `undefined`): as the lease owner if this store caches the key,
   * else as every other writer, with or without a cache of its own, must: revoke, wait, write.
   */
  private async write(key: string, raw: string | undefined): Promise<void> {
    const fence = this.fence(key)
    const valueKey = kvValuePrefix(this.prefix) + key
    const op = () =>
      raw === undefined ? this.client.delete().key(valueKey) : this.client.put(valueKey).value(raw)
    const leaseKey = kvLeasePrefix(this.prefix) + key

    const cache = this.cache
    const entry = cache?.lookup(key)
    if (cache !== undefined && entry !== undefined) {
      let res: Awaited<ReturnType<typeof this.guarded>>
      // Deleting the key gives its lease up in the same txn: nothing is left to cache.
      const deleteLease = raw === undefined
      try {
        res = await this.guarded(fence, leaseKey, entry.leaseKeyRevision, op, deleteLease)
      } catch (error) {
        // Outcome unknown (deadline, lost answer): etcd may hold the new value by now.
        cache.abandon(key, 'a write of it failed with its outcome unknown')
        throw error
      }
      if (res.succeeded) {
        if (deleteLease) cache.evictDeleted(key)
        else entry.raw = raw
        return
      }
      this.throwIfFenceBroken(fence, res.fenceKv)
      cache.forget(key) // our lease on the key is gone: write as anyone else would
    }

    for (let round = 0; round < MAX_REVOKE_ROUNDS; round++) {
      // A caching store that writes a key nobody leases leases it in the same txn.
      const leaseTo = raw === undefined ? undefined : cache?.beginLeaseOnWrite(key)
      let res: Awaited<ReturnType<typeof this.guarded>>
      try {
        res = await this.guarded(fence, leaseKey, 0n, op, false, leaseTo?.leaseId)
      } catch (error) {
        if (cache === undefined || leaseTo === undefined) throw error
        if (error instanceof EtcdLeaseInvalidError) {
          // Not applied: the session is over. Write again, without a lease.
          cache.endLeaseOnWrite(key, leaseTo, 'not-leased')
          leaseTo.markLost('etcd says the lease is gone')
          continue
        }
        cache.endLeaseOnWrite(key, leaseTo, 'unknown')
        throw error
      }
      if (cache !== undefined && leaseTo !== undefined && raw !== undefined) {
        const leased = res.succeeded ? { revision: res.revision, raw } : 'not-leased'
        cache.endLeaseOnWrite(key, leaseTo, leased)
      }
      if (res.succeeded) return
      this.throwIfFenceBroken(fence, res.fenceKv)
      const leasing = res.leaseKv
      if (leasing === undefined) continue // given up between our reads: try again
      await this.revokeAndWait(key, leaseKey, leasing)
    }
    throw new Error(
      `Etcd3KvStore could not write ${quote(key)}: its cache lease was taken again ${MAX_REVOKE_ROUNDS} times`,
    )
  }

  /**
   * One txn: `op` if the leasing key's create revision is `leaseRevision` (0: no leasing key) and
   * the fence holds; otherwise read both, to tell the caller why not.
   */
  private async guarded(
    fence: Fence | undefined,
    leaseKey: string,
    leaseRevision: bigint,
    op: () => ReturnType<Namespace['put']> | ReturnType<Namespace['delete']>,
    deleteLease = false,
    /** A lease to put the leasing key on, in the same txn (this process becomes its owner). */
    leaseTo?: string,
  ): Promise<{ succeeded: boolean; revision: bigint; leaseKv?: IKeyValue; fenceKv?: IKeyValue }> {
    let txn = this.client.if(leaseKey, 'Create', '==', leaseRevision.toString())
    if (fence) txn = txn.and(fence.key, 'Create', '==', fence.revision.toString())
    const ops = deleteLease ? [op(), this.client.delete().key(leaseKey)] : [op()]
    if (leaseTo !== undefined) ops.push(this.client.put(leaseKey).value('').lease(leaseTo))
    const res = await txn
      .then(...ops)
      .else(this.client.get(leaseKey), this.client.get(fence?.key ?? leaseKey))
      .options(callOptions())
      .commit()
    return {
      succeeded: res.succeeded,
      revision: BigInt(res.header.revision),
      leaseKv: res.responses[0]?.response_range?.kvs[0],
      fenceKv: fence ? res.responses[1]?.response_range?.kvs[0] : undefined,
    }
  }

  private throwIfFenceBroken(fence: Fence | undefined, fenceKv: IKeyValue | undefined): void {
    if (fence === undefined) return
    if (fenceKv === undefined || BigInt(fenceKv.create_revision) !== fence.revision) {
      throw new LockLostError(fence.key)
    }
  }

  /**
   * Asks the owner of `leasing` to give the key up (its lease stays on the key), then waits for
   * the leasing key's delete: the owner deletes it, or etcd does when the owner's session expires,
   * so the wait is bounded by the owner's remaining TTL.
   */
  private async revokeAndWait(key: string, leaseKey: string, leasing: IKeyValue): Promise<void> {
    const own = this.keeper.live
    if (own !== undefined && leasing.lease === own.leaseId && !this.cachedOnSession(key)) {
      // Our own leftover leasing key (no cache of this process serves it): nobody else would
      // delete it. One that another store of this process caches is revoked like any other.
      await this.client
        .if(leaseKey, 'Create', '==', leasing.create_revision)
        .then(this.client.delete().key(leaseKey))
        .options(callOptions())
        .commit()
      return
    }
    // Watch first, from etcd's revision then (a watch from an older one would be served by
    // etcd's catch-up loop, up to 100 ms after the owner's delete), then revoke, guarded by the
    // leasing key's create revision: if that fails, the key went before the watch began.
    const stop = new LinkedAbort()
    let created!: () => void
    const watching = new Promise<void>((resolve) => {
      created = resolve
    })
    const deleted = deletedOrInterrupted(this.client, leaseKey, 'now', stop.signal, () => created())
    deleted.catch(() => undefined)
    try {
      const [ttl] = await Promise.all([
        this.client.leaseClient
          .leaseTimeToLive({ ID: leasing.lease }, callOptions())
          .then((res) => Number(res.TTL))
          .catch(() => 1),
        settledWithin(watching, CALL_TIMEOUT_MS),
      ])
      const still = await this.client
        .if(leaseKey, 'Create', '==', leasing.create_revision)
        .then(
          ...(leasing.value.toString() === REVOKE
            ? []
            : [this.client.put(leaseKey).value(REVOKE).ignoreLease()]),
        )
        .options(callOptions())
        .commit()
      if (!still.succeeded) return // given up (or taken again) already: write again
      const bound = setTimeout(
        () => stop.abort('the owner did not answer'),
        timerDelay((Math.max(ttl, 0) + 1) * 1_000),
      )
      await deleted.catch(() => undefined)
      clearTimeout(bound)
    } finally {
      stop.abort('done')
    }
  }
}

/**
 * Largest JSON value (1 MiB): with the longest key it still fits etcd's default 1.5 MiB request
 * limit. Refused before sending, because a request above gRPC's own limit (etcd's + 512 KiB) also
 * trips the etcd3 client's circuit breaker, failing every call of the process (locks too) for a while.
 */
const MAX_VALUE_BYTES = 1_048_576

function serialize(key: string, value: unknown): string {
  let raw: string | undefined
  try {
    raw = JSON.stringify(value)
  } catch (error) {
    throw new TypeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: ${(error as Error).message}`,
    )
  }
  if (raw === undefined) {
    throw new TypeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: ${describe(value)} is not JSON`,
    )
  }
  const bytes = Buffer.byteLength(raw, 'utf8')
  if (bytes > MAX_VALUE_BYTES) {
    throw new RangeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: its JSON is ${bytes} bytes, more than ${MAX_VALUE_BYTES}`,
    )
  }
  return raw
}

/**
 * `error` as a {@link LockerError} naming the key: 503 with the endpoints when no etcd member
 * answered (the etcd3 client's own "circuit breaker is open" names neither), 500 when etcd found
 * the write too large. Any other error is returned as is.
 */
function unreachable(error: unknown, endpoints: string, key: string): unknown {
  if (isTooLarge(error)) {
    return new LockerError(
      `Etcd3KvStore cannot write ${quote(key)}: etcd refused the request as too large (its --max-request-bytes, 1.5 MiB by default, bounds key plus JSON value)`,
      500,
      { cause: error },
    )
  }
  if (!isConnectionFailure(error)) return error
  const what = key === '' ? 'list its keys' : `reach ${quote(key)}`
  return new LockerError(
    `Etcd3KvStore could not ${what}: etcd at ${endpoints} did not answer (${(error as Error).message})`,
    503,
    { cause: error },
  )
}

// etcd's own check (above --max-request-bytes), or gRPC's (above that + 512 KiB) for larger ones.
function isTooLarge(error: unknown): boolean {
  return (
    (error instanceof GRPCInvalidArgumentError && /request is too large/.test(error.message)) ||
    (error instanceof GRPCResourceExhastedError && /larger than max/.test(error.message))
  )
}

function isConnectionFailure(error: unknown): boolean {
  return (
    (error as { isBrokenCircuitError?: unknown } | null)?.isBrokenCircuitError === true ||
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError ||
    // An endpoint gRPC cannot even parse ("http://", "") fails every call this way.
    (error instanceof GRPCGenericError && /Could not parse target name/.test(error.message))
  )
}

function parse<T>(key: string, raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    throw new Error(`Etcd3KvStore found a value that is not JSON at ${quote(key)}`)
  }
}
