import { EventEmitter } from 'node:events'
import type { Locker, Upload } from '@tus/utils'
import type { Namespace } from 'etcd3'
import { LockerError } from './errors.js'
import type { LockerEvents } from './events.js'
import { lockQueuePrefix } from './keys.js'
import { Etcd3KvStore, type Fence, KV_STORE_DEFAULTS, type KvStoreOptions } from './kv/kv-store.js'
import { LocalQueue } from './lock/local-queue.js'
import { Etcd3Lock } from './lock/lock.js'
import type { LockContext, LockRequest } from './lock/lock-request.js'
import { Retention } from './lock/retention.js'
import { WatchStream } from './lock/watch-stream.js'
import {
  checkOptionsObject,
  type LockerOptions,
  type OptionsOwner,
  type ResolvedLockerOptions,
  resolveLockerOptions,
} from './options.js'
import { endpointsOf, SessionKeeper } from './session/session-keeper.js'
import { settledWithin } from './util/abort.js'
import { InFlightLimit } from './util/in-flight-limit.js'

/**
 * Upload locks for `@tus/server` on etcd: pass it as the server's `locker`.
 *
 * One locker holds one etcd session (a lease kept alive every TTL/3, at least every second),
 * granted in the background from construction on (a failure surfaces through {@link ready} and
 * `lock()`).
 * Every lock is a key on that session, queued like etcd's `concurrency.Mutex`, so lockers in
 * other processes, `etcdctl lock` and Go clients exclude each other on the same prefix. It emits
 * {@link LockerEvents} (`sessionLost`, `lockAcquired`, ...) for logs and metrics. Call
 * {@link close} on shutdown: it revokes the session and every lock of this process is free at
 * once instead of after the TTL. The etcd client stays yours to close.
 *
 * @example
 * ```ts
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' })
 * const locker = new Etcd3Locker(client, { ttl: 60, prefix: '/tusd' })
 * const server = new Server({ path: '/files', locker, datastore })
 * process.on('SIGTERM', () => locker.close())
 * ```
 */
const KV_STORE_CALL: OptionsOwner = {
  name: 'locker.kvStore()',
  known: ['leasing', 'revokeBackoff', 'cacheSize', 'cacheIdle'],
}

/** How long {@link Etcd3Locker.health} waits for etcd's answer, in ms. */
export const HEALTH_TIMEOUT_MS = 1_000

// How long close() waits for etcd to confirm the cancel of its watches, before and after the revoke.
const CLOSE_WATCH_WAIT_MS = 1_000

// Enough to keep etcd busy; more only queues inside etcd, past the calls' deadlines.
const MAX_CALLS_IN_FLIGHT = 128

export class Etcd3Locker extends EventEmitter<LockerEvents> implements Locker {
  /** The options in force, validated, with defaults filled in. */
  readonly options: Readonly<ResolvedLockerOptions>
  private readonly queues = new Map<string, LocalQueue<LockRequest>>()
  private readonly context: LockContext
  private readonly keeper: SessionKeeper
  private readonly retention: Retention
  private readonly watchStream: WatchStream
  private closed: Promise<void> | undefined
  private readonly kvStores = new Map<string, Etcd3KvStore<unknown>>()

  /**
   * @param client An `Etcd3` client (or a `Namespace` of one). It is not closed by the locker.
   * @param options See {@link LockerOptions}.
   * @throws TypeError or RangeError naming a bad option.
   */
  constructor(
    private readonly client: Namespace,
    options?: LockerOptions,
  ) {
    super()
    assertClient(client)
    this.options = Object.freeze(resolveLockerOptions(options))
    warnIfDefaultFaultHandling(client)
    this.keeper = new SessionKeeper(
      client,
      {
        ttl: this.options.ttl,
        grantTimeout: this.options.grantTimeout,
        safetyMargin: this.options.safetyMargin,
        endpoints: endpointsOf(client),
      },
      {
        granted: (session) =>
          this.emit('sessionGranted', { lease: session.leaseHex, ttl: session.ttl }),
        lost: (session, reason) => this.emit('sessionLost', { lease: session.leaseHex, reason }),
      },
    )
    this.retention = new Retention(client, this.options.retainLocks)
    this.watchStream = new WatchStream(client, this.options.prefix)
    this.context = {
      client,
      acquireLockTimeout: this.options.acquireLockTimeout,
      closing: this.keeper.closing,
      session: () => this.keeper.session(),
      retention: this.retention,
      watchStream: this.watchStream,
      limit: new InFlightLimit(MAX_CALLS_IN_FLIGHT),
      localQueue: (queuePrefix) => this.localQueue(queuePrefix),
      forgetQueue: (queuePrefix) => {
        if (this.queues.get(queuePrefix)?.size === 0) this.queues.delete(queuePrefix)
      },
      emit: (event, ...info) => {
        // TypeScript cannot narrow a generic event's tuple here; the signature above checks it.
        ;(this.emit as (name: string, ...args: unknown[]) => boolean)(event, ...info)
      },
    }
    // The first request must not pay for the grant (connect, grant: ~60 ms).
    this.keeper.start()
  }

  /**
   * A lock on upload `id` (a `Lock` of `@tus/utils`); nothing happens in etcd until `lock()`.
   * Any non-empty string of valid Unicode up to 64 KiB in UTF-8 is an id (see `escapeId`).
   * @throws TypeError for a non-string id; RangeError for the empty id, an id with a lone
   *   surrogate, or one longer than 65 536 bytes in UTF-8.
   */
  newLock(id: string): Etcd3Lock {
    return new Etcd3Lock(this.context, id, lockQueuePrefix(this.options.prefix, id))
  }

  /**
   * A `KvStore` of `@tus/utils` in etcd under this locker's prefix and session (one lease per
   * process for everything), with the leasing cache unless `leasing: false` (`revokeBackoff`,
   * `cacheSize`, `cacheIdle`: see {@link KvStoreOptions}). Its `set`/`delete` of an upload whose lock this locker holds are
   * fenced by that lock. Calls with the same options return the same store: one cache per process.
   *
   * @example `new FileStore({ directory: './files', configstore: locker.kvStore() })`
   * @throws TypeError for an option other than `leasing`, `revokeBackoff`, `cacheSize` and
   *   `cacheIdle`, or a bad value.
   */
  kvStore<T = Upload>(
    options: Pick<KvStoreOptions, 'leasing' | 'revokeBackoff' | 'cacheSize' | 'cacheIdle'> = {},
  ): Etcd3KvStore<T> {
    // The prefix and session are the locker's: refuse them here rather than ignore them.
    const { leasing, revokeBackoff, cacheSize, cacheIdle }: KvStoreOptions = checkOptionsObject(
      options,
      KV_STORE_CALL,
    )
    // Defaults first: kvStore() and kvStore({ leasing: true }) must share one cache.
    const d = KV_STORE_DEFAULTS
    const id = [
      leasing ?? d.leasing,
      revokeBackoff ?? d.revokeBackoff,
      cacheSize ?? d.cacheSize,
      cacheIdle ?? d.cacheIdle,
    ].join('/')
    let store = this.kvStores.get(id)
    if (store === undefined) {
      store = new Etcd3KvStore<unknown>(
        this.client,
        { leasing, revokeBackoff, cacheSize, cacheIdle },
        {
          keeper: this.keeper,
          prefix: this.options.prefix,
          fence: (key) => this.fence(key),
          cachedOnSession: (key) => [...this.kvStores.values()].some((s) => s.holdsInCache(key)),
        },
      )
      this.kvStores.set(id, store)
    }
    return store as Etcd3KvStore<T>
  }

  /**
   * Resolves once etcd has granted this locker's session. Rejects with a
   * `SessionUnavailableError` naming the endpoints and the cause when etcd does not grant it
   * within `grantTimeout`, and with `LockerClosedError` after {@link close}.
   */
  async ready(): Promise<void> {
    await this.keeper.session()
  }

  /**
   * Resolves when a lock could be taken now: the session is live (granted again if it was lost)
   * and etcd answers a linearizable read, which needs a leader, within 1 s.
   * Rejects otherwise, with a 503 `LockerError` naming the cause. For readiness probes
   * (`/health` in the examples).
   */
  async health(): Promise<void> {
    await this.ready()
    try {
      await this.client
        .get(`${this.options.prefix}/.health`)
        .options({ deadline: new Date(Date.now() + HEALTH_TIMEOUT_MS) })
        .exec()
    } catch (error) {
      throw new LockerError(
        `etcd at ${endpointsOf(this.client)} did not answer a read within ${HEALTH_TIMEOUT_MS} ms (${(error as Error).message})`,
        503,
        { cause: error },
      )
    }
  }

  /**
   * Revokes the session: every lock this process holds is free in etcd at once, every holder's
   * `requestRelease` is called, waiting `lock()` calls reject with `LockerClosedError`, and so
   * does every later one. Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      // Kept keys' watches first, so that the revoke's deletes reach none of them.
      await settledWithin(this.retention.close(), CLOSE_WATCH_WAIT_MS)
      await this.keeper.close()
      await settledWithin(this.watchStream.close(), CLOSE_WATCH_WAIT_MS)
    })()
    return this.closed
  }

  /** How many lock keys are kept after their last unlock now (see `retainLocks`). */
  get retainedLocks(): number {
    return this.retention.size
  }

  /** The lock key of upload `key` while this locker holds or retains it. */
  private fence(key: string): Fence | undefined {
    const queuePrefix = lockQueuePrefix(this.options.prefix, key)
    const held = this.queues.get(queuePrefix)?.head?.heldEntry()
    if (held !== undefined) return held
    const kept = this.retention.entryOf(queuePrefix)
    return kept?.revision === undefined ? undefined : { key: kept.key, revision: kept.revision }
  }

  private localQueue(queuePrefix: string): LocalQueue<LockRequest> {
    let queue = this.queues.get(queuePrefix)
    if (queue === undefined) {
      queue = new LocalQueue()
      this.queues.set(queuePrefix, queue)
    }
    return queue
  }
}

let warnedDefaultFaultHandling = false

/**
 * The etcd3 client's default fault handling refuses a healthy cluster for ~4 s after every
 * leader election (a 5 s circuit breaker per member): say once per process what to change.
 */
function warnIfDefaultFaultHandling(client: Namespace): void {
  const options = (client as unknown as { options?: { faultHandling?: { host?: unknown } } })
    .options
  if (warnedDefaultFaultHandling || options === undefined || options.faultHandling?.host) return
  warnedDefaultFaultHandling = true
  process.emitWarning(
    "Etcd3Locker: this etcd client keeps the etcd3 package's default fault handling, which refuses every etcd member for 5 s after 3 failures, so locks fail for seconds after each leader election. Create the client with createEtcdClient({ hosts }) from tus-etcd3-locker (or pass faultHandling: lockFriendlyFaultHandling()).",
    { code: 'TUS_ETCD3_LOCKER_DEFAULT_FAULT_HANDLING' },
  )
}

function assertClient(client: unknown): asserts client is Namespace {
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof (client as Partial<Namespace>).watch !== 'function' ||
    typeof (client as Partial<Namespace>).leaseClient !== 'object'
  ) {
    throw new TypeError(
      'Etcd3Locker needs an Etcd3 client from the etcd3 package as its first argument',
    )
  }
}
