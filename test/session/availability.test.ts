/**
 * How long locks stop while a three-member etcd recovers (issue 13), with the client the README
 * recommends (`createEtcdClient`): a load of lock cycles, then a fault. Figures are printed; the
 * bounds are the ones the README's Guarantees table states.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { percentile } from '../../bench/stats.js'
import { createEtcdClient } from '../../src/index.js'
import { CALL_TIMEOUT_MS } from '../../src/session/etcd-calls.js'
import { type FaultFigures, measureFault } from '../harness/availability.js'
import { type EtcdCluster, startEtcd } from '../harness/index.js'

const TTL = 5

const median = (values: number[]) => percentile(values, 50)

describe('locks while etcd recovers (three members, createEtcdClient, ttl 5)', () => {
  let cluster: EtcdCluster
  beforeAll(async () => {
    cluster = await startEtcd(3)
  })
  afterAll(() => cluster?.stop())

  const measure = async (fault: FaultFigures['fault']) => {
    const client = createEtcdClient({ hosts: cluster.endpoints })
    try {
      const figures = await measureFault(cluster, client, fault, { ttl: TTL })
      console.log(`[figure] availability ${JSON.stringify(figures)}`)
      return figures
    } finally {
      client.close()
    }
  }

  it('leader killed, 5 times: a lock is held again within 1 s of the new leader (median), no session lost', async () => {
    const runs: FaultFigures[] = []
    for (let i = 0; i < 5; i++) runs.push(await measure('leader'))
    const leaderToLock = runs.map((r) => Math.round(r.leaderToLockMs))
    console.log(
      `[figure] leader kill: new leader -> lock held ${leaderToLock.join(', ')} ms (median ${median(leaderToLock)}); kill -> lock ${runs.map((r) => Math.round(r.killToLockMs)).join(', ')} ms`,
    )
    expect(median(leaderToLock)).toBeLessThanOrEqual(1_000)
    const elections = runs.map((r) => Math.round(r.electionMs)).join(', ')
    expect(
      runs.map((r) => r.sessionsLost),
      `elections took ${elections} ms`,
    ).toEqual([0, 0, 0, 0, 0])
  }, 120_000)

  it('a follower killed: locks never stop for longer than one call deadline', async () => {
    const figures = await measure('follower')
    expect(figures.longestGapMs).toBeLessThanOrEqual(CALL_TIMEOUT_MS)
    expect(figures.longestFailureMs).toBeLessThanOrEqual(CALL_TIMEOUT_MS)
    expect(figures.sessionsLost).toBe(0)
  }, 60_000)

  it('every member down for 5 s, then up: locks within 1 s of etcd having a leader, same process', async () => {
    const figures = await measure('all')
    expect(figures.leaderToLockMs).toBeLessThanOrEqual(1_000)
  }, 60_000)
})
