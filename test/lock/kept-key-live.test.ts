/**
 * A kept key is handed out with no etcd call only while its watch is live: confirmed synced, and
 * the read at its start showed the key ours. A kept key's watch starts from etcd's revision, with
 * one read at it (which confirms it when nothing was written in between); after a broken stream
 * the hub resumes it from its next revision, behind etcd's, and then a take reads first until a
 * progress answer confirms it.
 * Counted in etcd's own /metrics, on a member of this file's own.
 */
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import { watchHubOf } from '../../src/watch/hub.js'
import { progressAnswersAreOrdered } from '../../src/watch/progress.js'
import {
  deferCleanup,
  etcdMetric,
  keysUnder,
  newClient,
  privateEtcd,
  startProxy,
  uniquePrefix,
  untilTrue,
  WITHOUT_BREAKER,
} from '../harness/index.js'

const never = () => new AbortController().signal

describe('a kept key and its watch', () => {
  const etcd = privateEtcd()
  const reads = () =>
    etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: 'Range' })

  /** A locker (through a proxy the test can cut) that keeps upload `u`'s key, watch checked. */
  async function kept() {
    const proxy = await startProxy(etcd.endpoint)
    deferCleanup(() => proxy.close())
    const client = newClient([proxy.endpoint], WITHOUT_BREAKER)
    const prefix = uniquePrefix('live')
    const locker = new Etcd3Locker(client, { prefix, ttl: 10, retainLocks: 60_000 })
    deferCleanup(() => locker.close())
    const other = newClient(etcd.cluster.endpoints)
    const retained: boolean[] = []
    locker.on('lockAcquired', (info) => retained.push(info.retained))
    const first = locker.newLock('u')
    await first.lock(never(), () => {})
    await first.unlock()
    expect(locker.retainedLocks).toBe(1)
    const hub = watchHubOf(client)
    await untilTrue(
      () => hub.counters.watchesOpen === 1 && hub.counters.createsInFlight === 0,
      5_000,
      'the kept key watched',
    )
    // A take once the watch is checked reads nothing (its own read at its start revision done).
    let settled = await reads()
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const now = await reads()
      if (now === settled) break
      settled = now
    }
    const ordered = progressAnswersAreOrdered((await other.maintenance.status()).version)
    return { proxy, other, prefix, locker, retained, ordered, hub }
  }

  it('a take reads nothing while its watch is live, and reads first after a broken stream until confirmed', async () => {
    const { proxy, other, prefix, locker, retained, ordered, hub } = await kept()
    const before = await reads()
    const second = locker.newLock('u')
    await second.lock(never(), () => {})
    await second.unlock()
    expect((await reads()) - before).toBe(0)

    // The stream breaks while etcd moves on: the hub resumes the watch from its next revision,
    // behind etcd's, which etcd has to catch up.
    const confirmedAtCut = hub.counters.progressConfirmations
    proxy.cut('reset')
    for (let i = 0; i < 3; i++) await other.put(`${prefix}-elsewhere-${i}`).value('x')
    proxy.restore()
    await untilTrue(
      () => hub.counters.streamResumes > 0 && hub.counters.createsInFlight === 0,
      10_000,
      'the watch resumed',
    )
    // Confirmations of the resumed watch (the kept key's watch may have been confirmed before).
    const confirmedBefore = hub.counters.progressConfirmations - confirmedAtCut
    const resumed = await reads()
    const third = locker.newLock('u')
    await third.lock(never(), () => {})
    const readsAfterResume = (await reads()) - resumed
    const confirmedMeanwhile = hub.counters.progressConfirmations - confirmedAtCut > confirmedBefore
    await third.unlock()
    expect(retained).toEqual([false, true, true])
    console.log(
      `[figure] take of a kept key right after its watch resumed behind etcd: ${readsAfterResume} read (${confirmedBefore > 0 ? 'confirmed before the take' : confirmedMeanwhile ? 'confirmed during it' : 'not confirmed'})`,
    )
    // Before the hub, a watch etcd had created counted as live here: 0 reads.
    if (confirmedBefore === 0 && !confirmedMeanwhile) expect(readsAfterResume).toBe(1)
    if (!ordered) return // etcd < 3.4.25 / 3.5.8: never confirmed; every take reads
    await untilTrue(
      () => hub.counters.progressConfirmations > confirmedAtCut,
      5_000,
      'the watch confirmed',
    )
    const confirmed = await reads()
    const fourth = locker.newLock('u')
    await fourth.lock(never(), () => {})
    await fourth.unlock()
    expect((await reads()) - confirmed).toBe(0)
  })

  it('a kept key deleted by hand reaches the keeper as an event, with no read', async () => {
    const { other, prefix, locker } = await kept()
    const [key] = await keysUnder(other, `${prefix}/u/`)
    expect(key).toBeDefined()
    const before = await reads()
    const started = performance.now()
    await other.delete().key(key as string)
    await untilTrue(() => locker.retainedLocks === 0, 5_000, 'the keeper drops the deleted key')
    console.log(
      `[figure] kept key deleted by hand: the keeper heard it ${(performance.now() - started).toFixed(1)} ms after the delete was sent`,
    )
    expect((await reads()) - before).toBe(0)
    // The next lock takes a new key: the deleted one is never handed out.
    const next = locker.newLock('u')
    await next.lock(never(), () => {})
    expect(await keysUnder(other, `${prefix}/u/`)).toHaveLength(1)
    await next.unlock()
  })
})
