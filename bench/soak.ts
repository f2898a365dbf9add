/**
 * Scenario 10: a long run on one instance, 100 000 lock cycles by 32 concurrent requests over
 * 1 000 uploads, each reading the upload's record from the leasing cache and every 20th writing
 * it: the heap stays flat, kept locks and cached keys stay within their bounds, and nothing is
 * left in etcd after close().
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { MAX_RETAINED_LOCKS } from '../src/lock/retention.js'
import { etcdMetricSum } from '../test/harness/etcd-metrics.js'
import { cpuMeter } from './cpu-meter.js'
import { Etcd3Locker } from './package.js'
import { type BenchContext, client, type Result } from './scenarios.js'
import { round } from './stats.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const never = () => new AbortController().signal
const noop = () => {}

const CONCURRENT = 32
const IDS = 1_000
// The cache keeps its default size (10 000, above the ids in use).
const CACHE_IDLE_MS = 2_000

/** A KV call retried a few times: an etcd still busy with the previous scenario may refuse one. */
async function retried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call()
    } catch (error) {
      if (attempt >= 5) throw error
      await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)))
    }
  }
}

function heapAfterGc(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/** Lock cycles per second of the last soak alone (the baseline of {@link soakAfterScale}). */
let aloneRate: number | undefined

export async function soak(ctx: BenchContext): Promise<Result[]> {
  const { results, rate } = await runSoak(ctx, 'soak')
  aloneRate = rate
  return results
}

/**
 * The soak again, right after the scale scenario in the same process (and etcd): at the same
 * speed as alone, with no watcher of etcd's left behind.
 */
export async function soakAfterScale(ctx: BenchContext): Promise<Result[]> {
  const { results, rate } = await runSoak(ctx, 'after-scale soak')
  const S = results[0]?.scenario ?? 'after-scale soak'
  results.push({
    scenario: S,
    name: "slow watchers in etcd after it (etcd's gauge): no backlog left",
    unit: 'count',
    value: await etcdMetricSum(ctx.hosts, 'etcd_debugging_mvcc_slow_watcher_total'),
    goal: { value: 0, higherIsBetter: false },
  })
  if (aloneRate !== undefined) {
    results.push({
      scenario: S,
      name: 'lock cycles per second / a soak alone (same run)',
      unit: 'ratio',
      value: round(rate / aloneRate),
      goal: { value: 0.9, higherIsBetter: true },
    })
  }
  return results
}

/**
 * Runs `soak` while sampling etcd's slow-watcher gauge every 500 ms; returns what `soak` gave
 * and the most slow watchers seen at once. Both soaks sample, so that the scrapes (etcd renders
 * its whole /metrics each time) cost the one what they cost the other. The sampler's last wait
 * is cut short when `soak` ends: the caller times `soak` itself.
 */
async function sampleSlowWatchers<T>(ctx: BenchContext, soak: Promise<T>): Promise<[T, number]> {
  let slowest = 0
  let sampling = true
  let wake = () => {}
  const sampler = (async () => {
    while (sampling) {
      const slow = await etcdMetricSum(ctx.hosts, 'etcd_debugging_mvcc_slow_watcher_total')
      slowest = Math.max(slowest, slow)
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, 500)
      })
    }
  })()
  const done = await soak.finally(() => {
    sampling = false
    wake()
  })
  await sampler
  return [done, slowest]
}

async function runSoak(
  ctx: BenchContext,
  title: string,
): Promise<{ results: Result[]; rate: number }> {
  const cycles = ctx.quick ? 2_000 : 100_000
  const etcd = client(ctx)
  const locker = new Etcd3Locker(etcd, { prefix: ctx.prefix })
  ctx.defer(() => locker.close())
  const store = locker.kvStore<{ n: number }>({ cacheIdle: CACHE_IDLE_MS })
  await locker.ready()
  for (let i = 0; i < IDS; i++) await retried(() => store.set(`u${i}`, { n: 0 }))

  const heaps: number[] = []
  let worstRetained = 0
  let worstCached = 0
  let next = 0
  const checkpoint = Math.max(1, Math.floor(cycles / 10))
  const etcdCounts = () =>
    Promise.all([
      etcdMetricSum(ctx.hosts, 'grpc_server_handled_total'),
      etcdMetricSum(ctx.hosts, 'etcd_server_proposals_committed_total'),
    ])
  const [callsBefore, proposalsBefore] = await etcdCounts()
  const meter = await cpuMeter(ctx)
  const started = performance.now()
  const worker = async (w: number) => {
    while (next < cycles) {
      const n = next++
      const id = `u${(n * 7919 + w) % IDS}` // spread over the ids, revisiting each often
      const lock = locker.newLock(id)
      await lock.lock(never(), noop)
      const record = await retried(() => store.get(id))
      if (n % 20 === 0) await retried(() => store.set(id, { n: (record?.n ?? 0) + 1 }))
      await lock.unlock()
      worstRetained = Math.max(worstRetained, locker.retainedLocks)
      worstCached = Math.max(worstCached, store.cachedKeys)
      // From the second tenth on: the first one fills the cache and the kept locks.
      if (n % checkpoint === 0 && n >= checkpoint) heaps.push(heapAfterGc())
    }
  }
  // Timed, and its CPU read, as the last worker ends (the sampler's last scrape not counted).
  const cycled = Promise.all(Array.from({ length: CONCURRENT }, (_, w) => worker(w))).then(() => {
    const seconds = (performance.now() - started) / 1e3
    return meter().then((cpu) => ({ seconds, cpu }))
  })
  const [{ seconds, cpu }, slowest] = await sampleSlowWatchers(ctx, cycled)
  const [callsAfter, proposalsAfter] = await etcdCounts()
  heaps.push(heapAfterGc())

  // Idle: kept locks and cached keys go by themselves.
  const idleUntil = performance.now() + 30_000
  while ((locker.retainedLocks > 0 || store.cachedKeys > 0) && performance.now() < idleUntil) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const leftIdle = locker.retainedLocks + store.cachedKeys
  await locker.close()
  const lockKeys = await etcd.getAll().prefix(`${ctx.prefix}/`).keys()
  const left = lockKeys.filter((k) => !k.startsWith(`${ctx.prefix}/.kv/`)).length
  const mib = (bytes: number) => round(bytes / 2 ** 20, 1)
  const S = `${title} (${cycles} cycles, ${CONCURRENT} concurrent, ${IDS} ids)`
  const rate = cycles / seconds
  const results: Result[] = [
    {
      scenario: S,
      name: 'lock cycles (with a cached get) per second',
      unit: 'ops/s',
      value: round(cycles / seconds, 0),
    },
    // Where a slower soak's time went: what a cycle asked of etcd, as etcd counts it, and the
    // CPU it cost this process (the bench's forced GCs at each tenth included, whose cost
    // follows the heap) and etcd.
    {
      scenario: S,
      name: "etcd calls per cycle (etcd's grpc_server_handled_total)",
      unit: 'ratio',
      value: round((callsAfter - callsBefore) / cycles, 3),
    },
    {
      scenario: S,
      name: 'raft proposals per cycle',
      unit: 'ratio',
      value: round((proposalsAfter - proposalsBefore) / cycles, 3),
    },
    {
      scenario: S,
      name: 'CPU of this process per cycle',
      unit: 'µs',
      value: round((cpu.client / cycles) * 1e6, 1),
    },
    {
      scenario: S,
      name: 'CPU of etcd per cycle',
      unit: 'µs',
      value: round((cpu.etcd / cycles) * 1e6, 1),
    },
    {
      scenario: S,
      name: 'heap after GC, after 10% of the cycles',
      unit: 'bytes',
      value: heaps[0] ?? 0,
    },
    { scenario: S, name: 'heap after GC, at the end', unit: 'bytes', value: heaps.at(-1) ?? 0 },
    {
      scenario: S,
      name: `heap growth from 10% to the end (MiB: ${mib(heaps[0] ?? 0)} -> ${mib(heaps.at(-1) ?? 0)})`,
      unit: 'ratio',
      value: round((heaps.at(-1) ?? 0) / (heaps[0] ?? 1)),
      goal: { value: 1.2, higherIsBetter: false },
    },
    {
      scenario: S,
      name: `most kept locks at once (bound ${MAX_RETAINED_LOCKS})`,
      unit: 'count',
      value: worstRetained,
    },
    {
      scenario: S,
      name: `most cached keys at once (cacheSize 10000)`,
      unit: 'count',
      value: worstCached,
    },
    {
      scenario: S,
      name: 'kept locks + cached keys left after the idle bounds',
      unit: 'count',
      value: leftIdle,
    },
    { scenario: S, name: 'lock and leasing keys left after close()', unit: 'count', value: left },
    {
      scenario: S,
      // A watch created behind etcd's revision is "slow" until etcd's next catch-up pass.
      name: "most slow watchers in etcd at once during it (etcd's gauge, sampled)",
      unit: 'count',
      value: slowest,
    },
  ]
  return { results, rate }
}
