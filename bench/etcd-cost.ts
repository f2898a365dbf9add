/**
 * Scenario 9: what lock cycles cost etcd, counted by etcd itself (its /metrics on every member):
 * raft proposals per same-id lock cycle on one instance, and watch events per lock cycle with 1
 * and 8 lockers cycling uploads of their own, so that nothing one instance does reaches another.
 */

import { etcdMetricSum } from '../test/harness/etcd-metrics.js'
import { Etcd3Locker } from './package.js'
import { type BenchContext, client, type Result } from './scenarios.js'
import { round } from './stats.js'

const never = () => new AbortController().signal
const noop = () => {}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The growth of metric `name` while `work` runs (and the lockers it closes are closed). */
async function counted(ctx: BenchContext, name: string, work: () => Promise<void>) {
  const before = await etcdMetricSum(ctx.hosts, name)
  await work()
  return (await etcdMetricSum(ctx.hosts, name)) - before
}

export async function etcdCost(ctx: BenchContext): Promise<Result[]> {
  const S = 'etcd cost'
  const results: Result[] = []

  // Same id, same instance, back to back (a client's PATCHes), until the locker closes.
  const cycles = ctx.quick ? 20 : 1_000
  for (const retainLocks of [5_000, 0]) {
    const locker = new Etcd3Locker(client(ctx), { prefix: `${ctx.prefix}/same`, retainLocks })
    ctx.defer(() => locker.close())
    await locker.ready()
    const proposals = await counted(ctx, 'etcd_server_proposals_committed_total', async () => {
      for (let i = 0; i < cycles; i++) {
        const lock = locker.newLock('upload')
        await lock.lock(never(), noop)
        await lock.unlock()
      }
      await locker.close() // the kept key goes with the revoke: counted too
    })
    results.push({
      scenario: S,
      name: `raft proposals per same-id lock cycle, retainLocks ${retainLocks}`,
      unit: 'ratio',
      value: round(proposals / cycles, 3),
      ...(retainLocks > 0 ? { goal: { value: 0.1, higherIsBetter: false } } : {}),
    })
  }

  // Each locker cycles fresh uploads of its own, holding each 80 ms: with a watch per held
  // upload, the events one cycle causes reach its own instance only, however many there are.
  const perLocker = ctx.quick ? 2 : 25
  for (const count of [1, 8]) {
    const lockers = Array.from({ length: count }, () => {
      const l = new Etcd3Locker(client(ctx), { prefix: `${ctx.prefix}/events-${count}` })
      ctx.defer(() => l.close())
      return l
    })
    await Promise.all(lockers.map((l) => l.ready()))
    const events = await counted(ctx, 'etcd_debugging_mvcc_events_total', async () => {
      await Promise.all(
        lockers.map(async (locker, k) => {
          for (let i = 0; i < perLocker; i++) {
            const lock = locker.newLock(`l${k}-u${i}`)
            await lock.lock(never(), noop)
            await sleep(80)
            await lock.unlock()
          }
        }),
      )
      await Promise.all(lockers.map((l) => l.close())) // kept keys go: their deletes count
    })
    results.push({
      scenario: S,
      name: `watch events per lock cycle, ${count} locker${count > 1 ? 's' : ''}, 80 ms holds`,
      unit: 'ratio',
      value: round(events / (count * perLocker), 3),
      goal: { value: 2, higherIsBetter: false },
    })
  }
  return results
}
