/**
 * Scenario 8: one process holding N locks while another locker of the same process waits on all
 * of them: memory per lock and per waiter, watches, and the times to hold, to queue and until
 * every waiter holds once the holder closes, against a floor measured first in the same run: N
 * puts on a lease through the holder's client, 500 at a time.
 */
import { availableParallelism } from 'node:os'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Etcd3 } from 'etcd3'
import { etcdMetricSum } from '../test/harness/etcd-metrics.js'
import { type CpuSpent, cpuMeter } from './cpu-meter.js'
import { Etcd3Locker } from './package.js'
import { type BenchContext, client, type Result } from './scenarios.js'
import { round } from './stats.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const never = () => new AbortController().signal
const noop = () => {}

function heapAfterGc(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * The floor: `count` puts on one lease through `etcd`, 500 at a time (s). The lease is revoked
 * when the scenario ends, not before the holds: on etcd 3.4, a revision that writes thousands of
 * keys (a revoke deleting them) leaves etcd's read buffer that long, and every read after it
 * copies the whole buffer (about 0.45 ms of etcd CPU per read for 10 000 keys) until a batch
 * interval passes with no key written. Revoked first, it made the holds after it 2.2 to 2.5x
 * slower; see docs/benchmarks.md.
 */
async function putsOnALease(ctx: BenchContext, etcd: Etcd3, count: number): Promise<number> {
  const { ID } = await etcd.leaseClient.leaseGrant({ TTL: 600 })
  ctx.defer(() => etcd.leaseClient.leaseRevoke({ ID }))
  const started = performance.now()
  await inBatches(count, 500, (i) =>
    etcd.put(`${ctx.prefix}-floor/${i}`).value('').lease(ID).exec(),
  )
  return (performance.now() - started) / 1e3
}

async function inBatches(count: number, size: number, op: (i: number) => Promise<unknown>) {
  for (let start = 0; start < count; start += size) {
    await Promise.all(
      Array.from({ length: Math.min(size, count - start) }, (_, k) => op(start + k)),
    )
  }
}

export async function scale(ctx: BenchContext): Promise<Result[]> {
  const count = ctx.quick ? 50 : 10_000
  const holderClient = client(ctx)
  const waiterClient = client(ctx)
  // Ten minutes to acquire: this scenario measures capacity, not patience.
  const patient = { prefix: ctx.prefix, acquireLockTimeout: 600_000 }
  const holder = new Etcd3Locker(holderClient, patient)
  const waiter = new Etcd3Locker(waiterClient, patient)
  ctx.defer(() => waiter.close())
  ctx.defer(() => holder.close())
  await Promise.all([holder.ready(), waiter.ready()])
  let meter = await cpuMeter(ctx)
  const floorSeconds = await putsOnALease(ctx, holderClient, count)
  const floorCpu = await meter()
  // Before the heap is measured: the meter's read of etcd's metrics must not count as the holds'.
  meter = await cpuMeter(ctx)
  const before = heapAfterGc()

  const holdStart = performance.now()
  await inBatches(count, 500, (i) => holder.newLock(`scale-${i}`).lock(never(), noop))
  const holdSeconds = (performance.now() - holdStart) / 1e3
  const holdCpu = await meter()
  // What etcd counts once every hold's contention watch (50 ms into the hold) is in place, before
  // any waiter: a waiter ends the watch of the hold it queues behind (its holder was told).
  const etcdWatchers = () => etcdMetricSum(ctx.hosts, 'etcd_debugging_mvcc_watcher_total')
  const watchersUntil = performance.now() + 60_000
  let inEtcd = await etcdWatchers()
  const placed = () =>
    holder.watchCounters.watchesOpen >= count && holder.watchCounters.createsInFlight === 0
  while (!placed() && performance.now() < watchersUntil) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const holderWatchers = holder.watchCounters.watchesOpen
  while (inEtcd < holderWatchers && performance.now() < watchersUntil) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    inEtcd = await etcdWatchers()
  }
  const held = heapAfterGc()
  // Each waiter's AbortSignal is its caller's: @tus/server makes one per request and keeps it for
  // the request's life, whatever the locker. Made before the waiters' baseline, so that the
  // goal's figure is what the locker adds (its listener on the signal included); the row after
  // it counts the signals too.
  const callerSignals = Array.from({ length: count }, never)
  const callers = heapAfterGc()

  meter = await cpuMeter(ctx)
  const waitStart = performance.now()
  let failed: unknown
  const acquired: Array<Promise<{ unlock(): Promise<void> }>> = []
  // Waiters join 500 at a time, each batch queued in etcd before the next (a bench may poll): a
  // burst of 10 000 simultaneous lock() calls outruns the 2 s call deadline on a small machine.
  for (let start = 0; start < count; start += 500) {
    for (let i = start; i < Math.min(count, start + 500); i++) {
      const lock = waiter.newLock(`scale-${i}`)
      acquired.push(
        lock.lock(callerSignals[i] as AbortSignal, noop).then(
          () => lock,
          (error: unknown) => {
            failed = error
            return lock
          },
        ),
      )
    }
    const queued = count + Math.min(count, start + 500)
    while ((await holderClient.getAll().prefix(`${ctx.prefix}/`).count()) < queued) {
      if (failed) throw failed
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const waiting = () =>
    waiter.watchCounters.watchesOpen >= count && waiter.watchCounters.createsInFlight === 0
  while (!waiting() && performance.now() - waitStart < 600_000) {
    if (failed) throw failed
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const queueSeconds = (performance.now() - waitStart) / 1e3
  const queueCpu = await meter()
  const during = heapAfterGc()
  const waiterWatchers = waiter.watchCounters.watchesOpen

  const closeStart = performance.now()
  await holder.close()
  const locks = await Promise.all(acquired)
  if (failed) throw failed
  const releaseSeconds = (performance.now() - closeStart) / 1e3
  await inBatches(locks.length, 500, (i) => (locks[i] as { unlock(): Promise<void> }).unlock())

  const S = `scale (${count} held + ${count} waiting)`
  const ratio = (name: string, seconds: number, goal: number): Result => ({
    scenario: S,
    name,
    unit: 'ratio',
    value: round(seconds / floorSeconds),
    goal: { value: goal, higherIsBetter: false },
  })
  const cores = availableParallelism()
  // How long a phase must take on this machine: the CPU it spent, over the cores.
  const cpuBound = (cpu: CpuSpent) => (cpu.client + cpu.etcd) / cores
  const cpuRow = (phase: string, seconds: number, cpu: CpuSpent): Result => ({
    scenario: S,
    name: `${phase} took ${round(seconds * 1e3, 0)} ms: CPU of this process (${round(cpu.client * 1e3, 0)} ms) + etcd (${round(cpu.etcd * 1e3, 0)} ms) over ${cores} cores, the least time this machine allows`,
    unit: 'ms',
    value: round(cpuBound(cpu) * 1e3, 0),
  })
  const perLock = (name: string, bytes: number): Result => ({
    scenario: S,
    name,
    unit: 'bytes',
    value: round(bytes / count, 0),
    goal: { value: 2_048, higherIsBetter: false },
  })
  return [
    {
      scenario: S,
      name: `floor: ${count} puts on a lease, 500 at a time, same client`,
      unit: 'ms',
      value: round(floorSeconds * 1e3, 0),
    },
    {
      scenario: S,
      name: `time to hold ${count} locks`,
      unit: 'ms',
      value: round(holdSeconds * 1e3, 0),
    },
    {
      scenario: S,
      name: `time to queue ${count} waiters (every key written, every watch created)`,
      unit: 'ms',
      value: round(queueSeconds * 1e3, 0),
    },
    {
      scenario: S,
      name: 'close() -> every waiter holds',
      unit: 'ms',
      value: round(releaseSeconds * 1e3, 0),
    },
    cpuRow('floor', floorSeconds, floorCpu),
    cpuRow('hold', holdSeconds, holdCpu),
    cpuRow('queue', queueSeconds, queueCpu),
    ratio('hold / floor', holdSeconds, 0.5),
    ratio('queue / floor', queueSeconds, 1),
    ratio('close() -> every waiter holds / floor', releaseSeconds, 0.5),
    perLock('heap per held lock (its key, request, contention watch)', held - before),
    perLock(
      "heap per waiter (its key, request, watch; its caller's AbortSignal not counted)",
      during - callers,
    ),
    {
      scenario: S,
      name: "heap per waiter with its caller's AbortSignal (@tus/server keeps one per request)",
      unit: 'bytes',
      value: round((during - held) / count, 0),
    },
    {
      scenario: S,
      name: 'watches of the holding locker (one per held lock, one stream)',
      unit: 'count',
      value: holderWatchers,
    },
    {
      scenario: S,
      name: 'watches of the waiting locker (one per waiter, one stream)',
      unit: 'count',
      value: waiterWatchers,
    },
    {
      scenario: S,
      name: "watchers in etcd while the locks are held (etcd's gauge)",
      unit: 'count',
      value: inEtcd,
    },
  ]
}
