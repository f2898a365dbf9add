import { Etcd3 } from 'etcd3'
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../src/index.js'
import {
  deferCleanup,
  type EtcdCluster,
  type EtcdMember,
  keysUnder,
  newClient,
  newLocker,
  startEtcd,
  uniquePrefix,
  untilKeyCount,
  untilNoKeys,
  within,
} from './harness/index.js'

const never = () => new AbortController().signal
const IDS = Array.from({ length: 20 }, (_, i) => `upload-${i}`)

/** The member that leads the cluster now, or one that follows. */
async function pickMember(cluster: EtcdCluster, kind: 'leader' | 'follower'): Promise<EtcdMember> {
  for (const member of cluster.members) {
    const client = new Etcd3({ hosts: [member.endpoint] })
    try {
      const status = await client.maintenance.status()
      const leads = status.leader === status.header.member_id
      if (leads === (kind === 'leader')) return member
    } finally {
      client.close()
    }
  }
  throw new Error(`no ${kind} found`)
}

function locker(hosts: string[], prefix: string, patience?: number): Etcd3Locker {
  const l = newLocker(
    {
      prefix,
      ttl: 10,
      // Every unlock deletes at once: the test counts keys after unlocks.
      retainLocks: 0,
      ...(patience ? { acquireLockTimeout: patience, grantTimeout: patience } : {}),
    },
    hosts,
  )
  return l
}

describe('three-member cluster', () => {
  it.each(['leader', 'follower'] as const)(
    'killing the %s keeps every hold; every waiter acquires afterwards, never two at once',
    async (kind) => {
      const cluster = await startEtcd(3)
      deferCleanup(() => cluster.stop())
      const prefix = uniquePrefix(`cluster-${kind}`)
      const holders = locker(cluster.endpoints, prefix)
      const waiters = locker(cluster.endpoints, prefix)
      const sessionsLost: string[] = []
      holders.on('sessionLost', ({ reason }) => sessionsLost.push(`holders: ${reason}`))
      waiters.on('sessionLost', ({ reason }) => sessionsLost.push(`waiters: ${reason}`))

      const holding = new Set<string>()
      const overlaps: string[] = []
      const held = await Promise.all(
        IDS.map(async (id) => {
          const lock = holders.newLock(id)
          await lock.lock(never(), () => {})
          holding.add(id)
          return lock
        }),
      )
      const waited = IDS.map((id) => {
        const lock = waiters.newLock(id)
        return lock
          .lock(never(), () => {})
          .then(() => {
            if (holding.has(id)) overlaps.push(id)
            return lock
          })
      })
      const observer = newClient(cluster.endpoints)
      // A waiter that fails (instead of queueing) ends this wait with its own error.
      const waiterFailed = Promise.all(waited).then(() => {
        throw new Error('waiters acquired while the holders held')
      })
      await within(
        Promise.race([untilKeyCount(observer, prefix, 40), waiterFailed]),
        10_000,
        '20 holders and 20 waiters queued',
      )

      const victim = await pickMember(cluster, kind)
      const killedAt = Date.now()
      await victim.kill()
      const survivors = cluster.members.filter((m) => m !== victim).map((m) => m.endpoint)

      // Failover pause: how long until a new instance (new session: no grant without a leader)
      // can take and release a lock.
      const probe = locker(survivors, prefix, 20_000).newLock('probe')
      await probe.lock(never(), () => {})
      await probe.unlock()
      const pause = Date.now() - killedAt

      expect(sessionsLost).toEqual([])
      await untilNoKeys(newClient(survivors), `${prefix}/probe/`) // unlock() does not wait for it
      expect(await keysUnder(newClient(survivors), prefix)).toHaveLength(40)

      await Promise.all(
        held.map(async (lock, i) => {
          holding.delete(IDS[i] ?? '')
          await lock.unlock()
        }),
      )
      const acquired = await within(Promise.all(waited), 15_000, 'every waiter acquires')
      expect(overlaps).toEqual([])
      expect(sessionsLost).toEqual([])
      await Promise.all(acquired.map((lock) => lock.unlock()))
      await untilNoKeys(newClient(survivors), prefix)

      await victim.restart()
      // A new instance, with its own connections as a new process would have: grpc-js shares one
      // subchannel per address among the clients of a process, and the holders' and waiters'
      // clients have been backing off from the killed member (1 s, 1.6 s, 2.6 s, ...). Through
      // their subchannel, the first grant fails until that backoff ends, often after grantTimeout.
      const restarted = new Etcd3Locker(
        newClient([victim.endpoint], { grpcOptions: { 'grpc.use_local_subchannel_pool': 1 } }),
        { prefix, ttl: 10, retainLocks: 0 },
      )
      deferCleanup(() => restarted.close())
      const again = restarted.newLock('after-restart')
      await within(
        again.lock(never(), () => {}),
        10_000,
        'lock through the restarted member',
      )
      await again.unlock()
      console.log(`[figure] ${kind} killed -> next lock+unlock done: ${pause} ms`)
    },
    90_000,
  )
})
