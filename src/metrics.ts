/**
 * Optional Prometheus metrics for an {@link Etcd3Locker}, with `prom-client` (an optional peer
 * dependency: import this module, `tus-etcd3-locker/metrics`, only when you have it installed).
 */
import { ERRORS } from '@tus/utils'
import { Counter, Gauge, register as globalRegistry, Histogram, type Registry } from 'prom-client'
import { LockTimeoutError } from './errors.js'
import type { Etcd3KvStore } from './kv/kv-store.js'
import type { LeasingCounters } from './kv/leasing-cache.js'
import type { Etcd3Locker } from './locker.js'
import type { WatchCounters } from './watch/hub.js'

/** Options of {@link registerLockerMetrics}. */
export interface LockerMetricsOptions {
  /**
   * Where the metrics are registered; default: prom-client's global registry. One registry (or
   * `namePrefix`) per locker: prom-client refuses a metric name registered twice.
   */
  registry?: Registry
  /** Start of every metric name; default `tus_etcd3_locker_`. */
  namePrefix?: string
  /** KV stores whose leasing-cache counters (hits, misses, revokes) are exported too. */
  kvStores?: Etcd3KvStore<unknown>[]
}

/** What {@link registerLockerMetrics} returns: call `stop()` to detach from the locker. */
export interface LockerMetrics {
  /** The registry the metrics are in. */
  readonly registry: Registry
  /** Stops listening to the locker and removes the metrics from the registry. */
  stop(): void
}

// Lock waits range from a local hand-over (~1 ms) to a whole acquireLockTimeout (30 s).
const WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Exports what the locker does as Prometheus metrics: lock wait time (histogram), acquisitions,
 * timeouts and other failures, locks held and retained, retention hits, release requests by
 * cause, sessions granted and lost, the watch layer's watches open, creates in flight, progress
 * confirmations, stream resumes and unknown ids, and the leasing cache's hits, misses, revokes,
 * evictions and entries of `kvStores`.
 *
 * @example
 * ```ts
 * import { registerLockerMetrics } from 'tus-etcd3-locker/metrics'
 * const metrics = registerLockerMetrics(locker, { kvStores: [locker.kvStore()] })
 * // GET /metrics: res.end(await metrics.registry.metrics())
 * ```
 */
export function registerLockerMetrics(
  locker: Etcd3Locker,
  options: LockerMetricsOptions = {},
): LockerMetrics {
  const registry = options.registry ?? globalRegistry
  const p = options.namePrefix ?? 'tus_etcd3_locker_'
  const registers = [registry]
  const names: string[] = []
  const name = (suffix: string) => {
    names.push(`${p}${suffix}`)
    return `${p}${suffix}`
  }
  const waitSeconds = new Histogram({
    name: name('lock_wait_seconds'),
    help: 'Time from lock() to holding the lock, for locks that were acquired.',
    buckets: WAIT_BUCKETS,
    registers,
  })
  const acquisitions = new Counter({
    name: name('lock_acquisitions_total'),
    help: 'Locks acquired.',
    registers,
  })
  const timeouts = new Counter({
    name: name('lock_timeouts_total'),
    help: 'lock() calls that gave up: acquireLockTimeout passed or the request was aborted.',
    registers,
  })
  const failures = new Counter({
    name: name('lock_failures_total'),
    help: 'lock() calls that failed for another reason, by error name.',
    labelNames: ['error'],
    registers,
  })
  const held = new Gauge({ name: name('locks_held'), help: 'Locks held now.', registers })
  new Gauge({
    name: name('locks_retained'),
    help: 'Lock keys kept after their last unlock now (retainLocks).',
    registers,
    collect() {
      this.set(locker.retainedLocks)
    },
  })
  const retentionHits = new Counter({
    name: name('lock_retention_hits_total'),
    help: 'Locks taken from a key kept since the last unlock, with no etcd call.',
    registers,
  })
  const releaseRequests = new Counter({
    name: name('release_requests_total'),
    help: 'Times a holder was asked to release, by cause.',
    labelNames: ['cause'],
    registers,
  })
  const sessionsGranted = new Counter({
    name: name('sessions_granted_total'),
    help: 'etcd sessions (leases) granted.',
    registers,
  })
  const sessionsLost = new Counter({
    name: name('sessions_lost_total'),
    help: 'etcd sessions ended: expired, forgotten by etcd, or revoked by close().',
    registers,
  })
  const kvStores = options.kvStores ?? []
  const kvCounter = (field: keyof LeasingCounters, help: string) => {
    let reported = 0
    return new Counter({
      name: name(`kv_cache_${field}_total`),
      help,
      registers,
      // Read at scrape time: the stores keep the counts, we report what grew since last time.
      collect() {
        const now = kvStores.reduce((sum, store) => sum + store.counters[field], 0)
        if (now > reported) this.inc(now - reported)
        reported = now
      },
    })
  }
  kvCounter('hits', 'KV gets served from the leasing cache.')
  kvCounter('misses', 'KV gets that read etcd.')
  kvCounter('revokes', 'Cache leases given up because a writer elsewhere asked.')
  kvCounter('evictions', 'Cache leases given up by cacheSize or cacheIdle.')
  new Gauge({
    name: name('kv_cache_entries'),
    help: 'Keys the leasing caches hold now.',
    registers,
    collect() {
      this.set(kvStores.reduce((sum, store) => sum + store.cachedKeys, 0))
    },
  })

  // The watch layer of the locker's client, read at scrape time.
  const watchGauge = (
    suffix: string,
    field: 'watchesOpen' | 'createsInFlight' | 'requestsQueued',
    help: string,
  ) =>
    new Gauge({
      name: name(suffix),
      help,
      registers,
      collect() {
        this.set(locker.watchCounters[field])
      },
    })
  watchGauge(
    'watches_open',
    'watchesOpen',
    'etcd watches open on the client (created or being created).',
  )
  watchGauge(
    'watch_creates_in_flight',
    'createsInFlight',
    'Watch creates sent or queued, not answered yet.',
  )
  watchGauge(
    'watch_requests_queued',
    'requestsQueued',
    'Watch creates and cancels waiting for room in the window of unanswered requests.',
  )
  const watchCounter = (field: keyof WatchCounters, suffix: string, help: string) => {
    let reported = 0
    return new Counter({
      name: name(suffix),
      help,
      registers,
      collect() {
        const now = locker.watchCounters[field]
        if (now > reported) this.inc(now - reported)
        reported = now
      },
    })
  }
  watchCounter(
    'progressConfirmations',
    'watch_progress_confirmations_total',
    'Watches confirmed caught up by a progress answer.',
  )
  watchCounter(
    'readConfirmations',
    'watch_read_confirmations_total',
    'Watches confirmed synced by a read made right after their create (nothing written between).',
  )
  watchCounter('progressRequests', 'watch_progress_requests_total', 'Progress requests sent.')
  watchCounter(
    'streamResumes',
    'watch_stream_resumes_total',
    'Watch streams opened again after one broke (every watch re-created).',
  )
  watchCounter(
    'unknownIds',
    'watch_unknown_ids_total',
    'Watch answers for an id the client does not know (ignored).',
  )
  watchCounter('createsRefused', 'watch_creates_refused_total', 'Watch creates etcd refused.')

  const listeners = {
    lockAcquired: ({ waitedMs, retained }: { waitedMs: number; retained: boolean }) => {
      acquisitions.inc()
      if (retained) retentionHits.inc()
      waitSeconds.observe(waitedMs / 1_000)
      held.inc()
    },
    lockReleased: () => held.dec(),
    lockFailed: ({ error }: { error: unknown }) => {
      if (error === ERRORS.ERR_LOCK_TIMEOUT || error instanceof LockTimeoutError) timeouts.inc()
      else failures.inc({ error: error instanceof Error ? error.name : 'unknown' })
    },
    releaseRequested: ({ cause }: { cause: string }) => releaseRequests.inc({ cause }),
    sessionGranted: () => sessionsGranted.inc(),
    sessionLost: () => {
      sessionsLost.inc()
    },
  }
  locker.on('lockAcquired', listeners.lockAcquired)
  locker.on('lockReleased', listeners.lockReleased)
  locker.on('lockFailed', listeners.lockFailed)
  locker.on('releaseRequested', listeners.releaseRequested)
  locker.on('sessionGranted', listeners.sessionGranted)
  locker.on('sessionLost', listeners.sessionLost)
  return {
    registry,
    stop: () => {
      locker.off('lockAcquired', listeners.lockAcquired)
      locker.off('lockReleased', listeners.lockReleased)
      locker.off('lockFailed', listeners.lockFailed)
      locker.off('releaseRequested', listeners.releaseRequested)
      locker.off('sessionGranted', listeners.sessionGranted)
      locker.off('sessionLost', listeners.sessionLost)
      for (const name of names) registry.removeSingleMetric(name)
    },
  }
}
