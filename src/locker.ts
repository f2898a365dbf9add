import { EventEmitter } from 'node:events'
import type { Locker, Upload } from '@tus/utils'
import type { Namespace } from 'etcd3'
import { LockerError } from './errors.js'
import type { LockerEvents } from './events.js'
import { lockQueuePrefix } from './keys.js'
import type { Fence } from './kv/fenced-writer.js'
import { KV_STORE_DEFAULTS, type KvStoreOptions, LOCKER_KV_STORE } from './kv/kv-options.js'
import { Etcd3KvStore } from './kv/kv-store.js'
import { IsolatedListeners } from './listener-errors.js'
import { LocalQueue } from './lock/local-queue.js'
import { Etcd3Lock } from './lock/lock.js'
import { LONG_WAIT_MS, type LockContext, type LockRequest } from './lock/lock-request.js'
import { Retention } from './lock/retention.js'
import {
  checkOptionsObject,
  type LockerOptions,
  millisecondsOrZero,
  type OptionsOwner,
  type ResolvedLockerOptions,
  resolveLockerOptions,
} from './options.js'
import { assertEtcdClient } from './session/client-check.js'
import { endpointsOf, SessionKeeper } from './session/session-keeper.js'
import { settledWithin } from './util/abort.js'
import { DeadlineQueue } from './util/deadline-queue.js'
import { etcdErrorText } from './util/etcd-error-text.js'
import { InFlightLimit } from './util/in-flight-limit.js'
import { log } from './util/log.js'
import { type WatchCounters, type WatchHub, watchHubOf } from './watch/hub.js'

/** How long {@link Etcd3Locker.health} waits for etcd's answer, in ms. */
export const HEALTH_TIMEOUT_MS = 1_000

// How long close() waits for etcd to confirm the cancel of its watches, before and after the revoke.
const CLOSE_WATCH_WAIT_MS = 1_000

// Enough to keep etcd busy; more only queues inside etcd, past the calls' deadlines.
const MAX_CALLS_IN_FLIGHT = 128

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
 * const client = createEtcdClient({ hosts: process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379' })
 * const locker = new Etcd3Locker(client, { ttl: 10, prefix: '/tusd', lockDrainTimeout: 2_000 })
 * const server = new Server({
 *   path: '/files',
 *   locker,
 *   lockDrainTimeout: locker.options.lockDrainTimeout, // the same on both
 *   datastore,
 * })
 * const http = server.listen({ port: 1080 })
 * let stopping = false
 * process.on('SIGTERM', async () => {
 *   if (stopping) return // a second signal must not cut the revoke short
 *   stopping = true
 *   http.close() // stop accepting; let holders answer, then revoke the session
 *   await locker.close({ drain: 7_000 })
 *   http.closeAllConnections()
 *   client.close()
 *   process.exit(0)
 * })
 * ```
 */
export class Etcd3Locker extends EventEmitter<LockerEvents> implements Locker {
  private optionsInForce: Readonly<ResolvedLockerOptions>
  private readonly queues = new Map<string, LocalQueue<LockRequest>>()
  private readonly context: LockContext
  private readonly keeper: SessionKeeper
  private readonly retention: Retention
  private readonly watches: WatchHub
  private closed: Promise<void> | undefined
  private readonly kvStores = new Map<string, Etcd3KvStore<unknown>>()
  /** Emits to listeners (user code) that cannot change what a lock does, even if they throw. */
  private readonly isolated = new IsolatedListeners<LockerEvents>(this, 'Etcd3Locker')

  /**
   * @param client An `Etcd3` client (or a `Namespace` of one). It is not closed by the locker.
   * @param options See {@link LockerOptions}.
   * @throws TypeError when `client` is not an `etcd3` client, TypeError or RangeError naming a
   *   bad option.
   */
  constructor(
    private readonly client: Namespace,
    options?: LockerOptions,
  ) {
    super()
    assertEtcdClient(client, 'Etcd3Locker')
    this.optionsInForce = Object.freeze(resolveLockerOptions(options))
    warnIfDefaultFaultHandling(client)
    warnIfMarginBelowDrain(this.optionsInForce)
    this.keeper = new SessionKeeper(
      client,
      {
        ttl: this.options.ttl,
        grantTimeout: this.options.grantTimeout,
        safetyMargin: this.options.safetyMargin,
        endpoints: endpointsOf(client),
      },
      {
        granted: (session) => {
          if (session.ttl !== this.optionsInForce.ttl) {
            this.optionsInForce = Object.freeze({ ...this.optionsInForce, ttl: session.ttl })
          }
          this.isolated.emit('sessionGranted', { lease: session.leaseHex, ttl: session.ttl })
        },
        lost: (session, reason, closed) =>
          this.isolated.emit('sessionLost', { lease: session.leaseHex, reason, closed }),
      },
    )
    this.retention = new Retention(client, this.options.retainLocks)
    this.watches = watchHubOf(client)
    this.context = {
      client,
      acquireLockTimeout: this.options.acquireLockTimeout,
      waitReports: new DeadlineQueue(LONG_WAIT_MS, (request) => request.waitReportDue()),
      waitTimeouts: new DeadlineQueue(this.options.acquireLockTimeout, (request) =>
        request.waitTimedOut(),
      ),
      closing: this.keeper.closing,
      session: () => this.keeper.session(),
      retention: this.retention,
      watches: this.watches,
      limit: new InFlightLimit(MAX_CALLS_IN_FLIGHT),
      localQueue: (queuePrefix) => this.localQueue(queuePrefix),
      forgetQueue: (queuePrefix) => {
        if (this.queues.get(queuePrefix)?.size === 0) this.queues.delete(queuePrefix)
      },
      emit: (event, ...info) => this.isolated.emit(event, ...info),
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
      LOCKER_KV_STORE,
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
   * within `grantTimeout`, and with `LockerClosedError` once {@link close} has revoked the session
   * (while `close()` drains or revokes, the session is still there and this resolves; use
   * {@link health} for readiness, which refuses from the call of `close()` on).
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
    // Shutting down (close() called, perhaps still draining): no new lock would be granted.
    if (this.keeper.closing.aborted) throw this.keeper.closing.reason
    await this.ready()
    try {
      await this.client
        .get(`${this.options.prefix}/.health`)
        .options({ deadline: new Date(Date.now() + HEALTH_TIMEOUT_MS) })
        .exec()
    } catch (error) {
      throw new LockerError(
        `etcd at ${endpointsOf(this.client)} did not answer a read within ${HEALTH_TIMEOUT_MS} ms (${etcdErrorText(error)})`,
        503,
        { cause: error },
      )
    }
  }

  /**
   * Revokes the session: every lock this process holds is free in etcd at once, every holder's
   * `requestRelease` is called, waiting `lock()` calls reject with `LockerClosedError`, and so
   * does every later one. Idempotent (a second call returns the first one's promise); never
   * rejects.
   *
   * With `drain` (ms), a graceful shutdown: new and waiting `lock()` calls are refused at once,
   * every holder is asked to release first (`@tus/server` then ends its PATCH after its
   * `lockDrainTimeout`, keeping what it received, and answers it), and the revoke waits until
   * every holder has unlocked or `drain` has passed. Holders' KV writes still work meanwhile.
   * @throws TypeError or RangeError, at once, for a bad `drain`.
   */
  close(options?: CloseOptions): Promise<void> {
    const drain = drainOf(options)
    if (drain > 0 && drain < this.optionsInForce.lockDrainTimeout)
      warnIfDrainTooShort(drain, this.optionsInForce)
    // From the call on, with or without drain: health() and every lock() refuse (503).
    this.keeper.refuse()
    this.closed ??= (async () => {
      if (drain > 0) await this.drain(drain)
      // Kept keys' watches first, so that the revoke's deletes reach none of them.
      await settledWithin(this.retention.close(), CLOSE_WATCH_WAIT_MS)
      await this.keeper.close()
      this.watches.untouch()
    })()
    return this.closed
  }

  /**
   * The options in force, validated, with defaults filled in. `ttl` is the TTL etcd granted once
   * a session is granted (etcd raises a TTL below its minimum), the requested one before.
   */
  get options(): Readonly<ResolvedLockerOptions> {
    return this.optionsInForce
  }

  /** Asks holders to release (new and waiting lock() calls are refused), waits for their unlocks. */
  private async drain(ms: number): Promise<void> {
    const holders = () =>
      [...this.queues.values()].filter((queue) => queue.head?.holds === true).length
    if (holders() === 0) return
    let timer: NodeJS.Timeout | undefined
    let onRelease: (() => void) | undefined
    const released = new Promise<void>((resolve) => {
      // unlock() marks its request done before it emits lockReleased: count it out now.
      onRelease = () => {
        if (holders() === 0) resolve()
      }
      this.on('lockReleased', onRelease)
      timer = setTimeout(resolve, ms)
    })
    for (const queue of this.queues.values()) queue.head?.askToRelease('shutdown')
    await released
    clearTimeout(timer)
    if (onRelease) this.off('lockReleased', onRelease)
    // Revoked with these still holding: their requests may go on writing unfenced data.
    const left = holders()
    if (left > 0) log.locker('close(): %d holders still held after the %dms drain', left, ms)
  }

  /** How many lock keys are kept after their last unlock now (see `retainLocks`). */
  get retainedLocks(): number {
    return this.retention.size
  }

  /**
   * What the watch layer of this locker's etcd client counts now: watches open, creates in
   * flight, progress confirmations, stream resumes, unknown watch ids. The client's lockers and
   * KV stores share one watch stream, so each of them reports the same counts.
   */
  get watchCounters(): WatchCounters {
    return this.watches.counters
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

/** Options of {@link Etcd3Locker.close}. */
export interface CloseOptions {
  /**
   * ms to let holders finish before the revoke (default 0: revoke at once). Give it more than
   * `@tus/server`'s `lockDrainTimeout`, so a PATCH asked to stop can answer its client.
   */
  drain?: number
}

const CLOSE: OptionsOwner = { name: 'Etcd3Locker.close()', known: ['drain'] }

/** A drain shorter than the server's lockDrainTimeout revokes while PATCHes may still write. */
function warnIfDrainTooShort(drain: number, options: ResolvedLockerOptions): void {
  process.emitWarning(
    `Etcd3Locker.close(): drain ${drain} ms is shorter than lockDrainTimeout ${options.lockDrainTimeout} ms, so the session may be revoked while a PATCH asked to release still writes; give drain more (it returns as soon as the holders have unlocked).`,
    { code: 'TUS_ETCD3_LOCKER_SHORT_DRAIN' },
  )
}

function drainOf(options: CloseOptions | undefined): number {
  const { drain } = checkOptionsObject(options, CLOSE)
  return drain === undefined ? 0 : millisecondsOrZero(CLOSE, 'drain', drain)
}

/**
 * A holder told its session is lost has `safetyMargin` ms before etcd can give its lock away, and
 * `@tus/server` lets its request run `lockDrainTimeout` ms: say once per process when the first
 * is the shorter.
 */
function warnIfMarginBelowDrain(options: ResolvedLockerOptions): void {
  if (warnedMarginBelowDrain || options.safetyMargin >= options.lockDrainTimeout) return
  warnedMarginBelowDrain = true
  process.emitWarning(
    `Etcd3Locker: safetyMargin ${options.safetyMargin} ms is shorter than lockDrainTimeout ${options.lockDrainTimeout} ms, so a request told its etcd session is lost may still write when another instance takes its upload. Give @tus/server's Server and the locker a lockDrainTimeout of at most ${options.safetyMargin} ms, or raise ttl (safetyMargin defaults to min(3 500, ttl x 250) ms).`,
    { code: 'TUS_ETCD3_LOCKER_DRAIN_MARGIN' },
  )
}

let warnedMarginBelowDrain = false
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
