/**
 * How long locks stop while a three-member etcd recovers (issue 13), with the client the README
 * recommends (`createEtcdClient`): a load of lock cycles, then a fault. Figures are printed; the
 * bounds are the ones the README's Guarantees table states.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { percentile } from '../../bench/stats.js'
import { createEtcdClient } from '../../src/index.js'
import { defaultSafetyMargin } from '../../src/options.js'
import { CALL_TIMEOUT_MS } from '../../src/session/etcd-calls.js'
import { type FaultFigures, measureFault } from '../harness/availability.js'
import { type EtcdCluster, startEtcd } from '../harness/index.js'

const TTL = 5
// The README's bound: a leader election (kill to new leader) shorter than ttl - safetyMargin -
// 2 keepalive intervals - 0.25 s costs no session; 1.5 s at ttl 5. etcd's own elections
// sometimes take much longer (3.1 s once in CI, split votes): a session may then be lost, as the
// README says.
const KEEPALIVE_MS = Math.min((TTL * 1_000) / 3, 1_000)
const SAFE_ELECTION_MS = TTL * 1_000 - defaultSafetyMargin(TTL) - 2 * KEEPALIVE_MS - 250
const KILLS = 5

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
    // Five kills. Only a kill whose election took longer than the bound may cost a session: such
    // a kill is reported and tried again (at most ten kills in all); any other loss fails.
    const runs: FaultFigures[] = []
    const excused: FaultFigures[] = []
    while (runs.length < KILLS && runs.length + excused.length < 2 * KILLS) {
      const run = await measure('leader')
      const beyondBound = run.electionMs > SAFE_ELECTION_MS
      ;(run.sessionsLost > 0 && beyondBound ? excused : runs).push(run)
    }
    if (excused.length > 0) {
      console.log(
        `[figure] leader kill: ${excused.length} session(s) lost in elections beyond the ${SAFE_ELECTION_MS} ms bound (${excused.map((r) => Math.round(r.electionMs)).join(', ')} ms)`,
      )
    }
    expect(runs, `kills without an excused loss, in ${2 * KILLS}`).toHaveLength(KILLS)
    // Each of the load's locks needs etcd, so they stop while it has no leader: a figure from
    // locks that carry on without etcd (a kept key taken locally) would say nothing of recovery.
    for (const run of runs) {
      expect(run.longestGapMs, 'locks stopped during the election').toBeGreaterThanOrEqual(
        run.electionMs / 2,
      )
    }
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
  }, 240_000)

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
