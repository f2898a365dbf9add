/**
 * Scenario 9: how long locks stop while a three-member etcd recovers, with the client this
 * package recommends (`createEtcdClient`) and with the etcd3 client's defaults, in one run:
 * the leader killed (new leader -> first lock held), a follower killed (the longest time without
 * a lock), every member down for 5 s (etcd has a leader again -> first lock held). Starts its
 * own cluster on loopback; ttl 5 s.
 */
import { Etcd3 } from 'etcd3'
import { type Fault, type FaultFigures, measureFault } from '../test/harness/availability.js'
import { startEtcd } from '../test/harness/etcd.js'
import { createEtcdClient } from './package.js'
import type { BenchContext, Result } from './scenarios.js'
import { percentile, round } from './stats.js'

const CLIENTS = {
  createEtcdClient: (hosts: string[]) => createEtcdClient({ hosts }),
  'etcd3 defaults': (hosts: string[]) => new Etcd3({ hosts }),
}

const median = (values: number[]) => percentile(values, 50)

export async function availability(ctx: BenchContext): Promise<Result[]> {
  const cluster = await startEtcd(3)
  ctx.defer(() => cluster.stop())
  const results: Result[] = []
  const run = async (make: (hosts: string[]) => Etcd3, fault: Fault): Promise<FaultFigures> => {
    const client = make(cluster.endpoints)
    try {
      return await measureFault(cluster, client, fault, { ttl: 5 })
    } finally {
      client.close()
    }
  }
  for (const [name, make] of Object.entries(CLIENTS)) {
    const scenario = `availability (${name})`
    const leader: FaultFigures[] = []
    for (let i = 0; i < (ctx.quick ? 1 : 5); i++) leader.push(await run(make, 'leader'))
    results.push({
      scenario,
      name: 'leader killed: new leader -> lock held, median',
      unit: 'ms',
      value: round(median(leader.map((f) => f.leaderToLockMs))),
      samples: leader.length,
      goal: { value: 1_000, higherIsBetter: false },
    })
    results.push({
      scenario,
      name: 'leader killed: sessions lost',
      unit: 'count',
      value: leader.reduce((n, f) => n + f.sessionsLost, 0),
      samples: leader.length,
    })
    const follower = await run(make, 'follower')
    results.push({
      scenario,
      name: 'follower killed: longest time without a lock',
      unit: 'ms',
      value: round(follower.longestGapMs),
    })
    if (!ctx.quick) {
      const all = await run(make, 'all')
      results.push({
        scenario,
        name: 'all down 5 s: leader again -> lock held',
        unit: 'ms',
        value: round(all.leaderToLockMs),
        goal: { value: 1_000, higherIsBetter: false },
      })
    }
  }
  return results
}
