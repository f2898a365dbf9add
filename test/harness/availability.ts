/**
 * Measures how long locks fail while a three-member etcd cluster recovers from a fault: a load
 * of lock cycles on one locker, a member killed (the leader, a follower) or every member, and
 * the times etcd and the locker saw. Used by the availability test and the bench.
 */
import type { Etcd3 } from 'etcd3'
import { Etcd3Locker } from '../../src/index.js'
import type { EtcdCluster, EtcdMember } from './etcd.js'
import { etcdMetric } from './etcd-metrics.js'

export type Fault = 'leader' | 'follower' | 'all'

const LEADER_POLL_MS = 20

export interface FaultFigures {
  fault: Fault
  /** From the kill to etcd having a leader again (the follower fault: 0), ms. */
  electionMs: number
  /** From the kill to the first lock held once etcd had a leader again, ms. */
  killToLockMs: number
  /** From etcd having a leader again (the follower fault: from the kill) to the first lock held. */
  leaderToLockMs: number
  /** The longest stretch in which lock cycles failed (first failure to next success), ms. */
  longestFailureMs: number
  /** The longest time without any lock held, from the kill until the figures are taken, ms. */
  longestGapMs: number
  sessionsLost: number
}

/** Whether `member` says it is the leader (etcd's own gauge); `false` when it does not answer. */
async function isLeader(member: EtcdMember): Promise<boolean> {
  try {
    return (await etcdMetric(member.endpoint, 'etcd_server_is_leader')) === 1
  } catch {
    return false
  }
}

/** Resolves with the first member to be leader, asked every 20 ms; fails after `ms`. */
export async function untilLeader(members: EtcdMember[], ms = 20_000): Promise<EtcdMember> {
  const until = performance.now() + ms
  while (performance.now() < until) {
    for (const member of members) if (await isLeader(member)) return member
    await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS))
  }
  throw new Error(`no etcd leader within ${ms} ms`)
}

/** Runs `loops` lock cycles (lock, hold `holdMs`, unlock) until `stop` aborts; bounded. */
function load(locker: Etcd3Locker, loops: number, holdMs: number, stop: AbortSignal) {
  const held: number[] = []
  const failures: number[] = []
  const loop = async (i: number) => {
    for (let n = 0; n < 100_000 && !stop.aborted; n++) {
      const lock = locker.newLock(`load-${i}`)
      try {
        await lock.lock(AbortSignal.timeout(10_000), () => {})
        held.push(performance.now())
        await new Promise((resolve) => setTimeout(resolve, holdMs))
        await lock.unlock()
      } catch {
        failures.push(performance.now())
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  }
  const done = Promise.all(Array.from({ length: loops }, (_, i) => loop(i)))
  return { held, failures, done }
}

/** The longest time between two locks held (or the kill and the first) from `from` on. */
function longestGap(held: number[], from: number): number {
  let longest = 0
  let last = from
  for (const t of held) {
    if (t <= from) continue
    longest = Math.max(longest, t - last)
    last = t
  }
  return longest
}

/** The longest time from a failure to the next success in the two sorted lists. */
function longestFailure(held: number[], failures: number[]): number {
  let longest = 0
  for (const failedAt of failures) {
    const next = held.find((t) => t > failedAt)
    if (next !== undefined) longest = Math.max(longest, next - failedAt)
  }
  return longest
}

/**
 * One fault on `cluster` (healthy, with a leader) under a load of lock cycles by a locker on
 * `client` with `ttl`: kills the member(s), restarts them after `downMs` (the leader and
 * follower faults restart once a new leader is elected), and waits for the cluster to be whole.
 */
export async function measureFault(
  cluster: EtcdCluster,
  client: Etcd3,
  fault: Fault,
  options: { ttl: number; loops?: number; holdMs?: number; downMs?: number },
): Promise<FaultFigures> {
  const locker = new Etcd3Locker(client, {
    prefix: `/availability-${fault}-${Date.now()}`,
    ttl: options.ttl,
    // Every lock an enqueue and every unlock a delete: the figures are of locks that need etcd.
    // A kept key is taken with no etcd call while its watch is live, so with retention the
    // load's cycles (one upload per loop) can carry on through an election and time nothing.
    retainLocks: 0,
  })
  let sessionsLost = 0
  locker.on('sessionLost', () => sessionsLost++)
  await locker.ready()
  const stop = new AbortController()
  const running = load(locker, options.loops ?? 8, options.holdMs ?? 20, stop.signal)
  try {
    await new Promise((resolve) => setTimeout(resolve, 500)) // the load is under way
    const leader = await untilLeader(cluster.members)
    const victims =
      fault === 'all'
        ? cluster.members
        : fault === 'leader'
          ? [leader]
          : [cluster.members.find((m) => m !== leader) as EtcdMember]
    const killedAt = performance.now()
    await Promise.all(victims.map((m) => m.kill()))
    let leaderAt: number
    if (fault === 'all') {
      await new Promise((resolve) => setTimeout(resolve, options.downMs ?? 5_000))
      // The moment etcd has a leader again, asked while the members start (not after they all
      // passed their health check, which comes later).
      const restarted = Promise.all(victims.map((m) => m.restart()))
      await untilLeader(cluster.members)
      leaderAt = performance.now()
      await restarted
    } else {
      const survivors = cluster.members.filter((m) => !victims.includes(m))
      await untilLeader(survivors)
      leaderAt = fault === 'leader' ? performance.now() : killedAt
    }
    // The first lock held since: locks held between the kill and the election were committed
    // before the kill. The leader is asked every 20 ms, so allow that much earlier.
    const since = fault === 'follower' ? killedAt : leaderAt - LEADER_POLL_MS
    const giveUpAt = performance.now() + 20_000
    while (!running.held.some((t) => t > since)) {
      if (performance.now() > giveUpAt)
        throw new Error(`no lock held within 20 s of the ${fault} fault`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const firstHeld = running.held.find((t) => t > since) as number
    // Let the load run a moment more, so failures right after the first success count too.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    if (fault !== 'all') await Promise.all(victims.map((m) => m.restart()))
    await untilLeader(cluster.members)
    return {
      fault,
      electionMs: leaderAt - killedAt,
      killToLockMs: firstHeld - killedAt,
      leaderToLockMs: Math.max(0, firstHeld - leaderAt),
      longestFailureMs: longestFailure(running.held, running.failures),
      longestGapMs: longestGap(running.held, killedAt),
      sessionsLost,
    }
  } finally {
    stop.abort()
    await running.done
    await locker.close()
  }
}
