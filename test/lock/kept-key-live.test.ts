/**
 * A kept key is handed out with no etcd call only while its watch is live (etcd confirmed it
 * caught up); before that, a take reads first. Counted in etcd's own /metrics, on a member of
 * this file's own.
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
  uniquePrefix,
  within,
} from '../harness/index.js'

const never = () => new AbortController().signal

/** Resolves once `check()` holds (re-checked every turn of the event loop). */
function until(check: () => boolean, ms: number, what: string): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const poll = () => (check() ? resolve() : setImmediate(poll))
      poll()
    }),
    ms,
    what,
  )
}

describe('a kept key and its watch', () => {
  const etcd = privateEtcd()
  const reads = () =>
    etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: 'Range' })

  const etcdWatchers = () => etcdMetric(etcd.endpoint, 'etcd_debugging_mvcc_watcher_total')
  /** Resolves once etcd counts `n` watchers or more (created in etcd). */
  const untilWatchers = async (n: number) => {
    while ((await etcdWatchers()) < n) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  /**
   * A locker that keeps `u`'s key with a contention watch created behind etcd's revision: three
   * writes by another client land between the hold and the unlock that starts the watch (well
   * within the 50 ms after which a holder would start it).
   */
  async function keptBehind() {
    const client = newClient(etcd.cluster.endpoints)
    const prefix = uniquePrefix('live')
    const locker = new Etcd3Locker(client, { prefix, ttl: 10, retainLocks: 60_000 })
    deferCleanup(() => locker.close())
    const other = newClient(etcd.cluster.endpoints)
    const retained: boolean[] = []
    locker.on('lockAcquired', (info) => retained.push(info.retained))
    await other.get(`${prefix}-elsewhere`) // connected
    const watchers = await etcdWatchers()
    const first = locker.newLock('u')
    await first.lock(never(), () => {})
    await Promise.all([1, 2, 3].map((i) => other.put(`${prefix}-elsewhere-${i}`).value('x')))
    await first.unlock()
    expect(locker.retainedLocks).toBe(1)
    const ordered = progressAnswersAreOrdered((await other.maintenance.status()).version)
    return { other, prefix, locker, retained, ordered, watchers, hub: watchHubOf(client) }
  }

  it('a local take before its watch is live reads first; once live, it reads nothing', async () => {
    const { locker, retained, ordered, watchers, hub } = await keptBehind()
    // etcd created the watch (it was "connected", which was enough before): still not live.
    await within(untilWatchers(watchers + 1), 5_000, 'the kept key watch created')
    const before = await reads()
    const confirmedBefore = hub.counters.progressConfirmations
    const second = locker.newLock('u')
    await second.lock(never(), () => {})
    const readsBeforeLive = (await reads()) - before
    const confirmedMeanwhile = hub.counters.progressConfirmations > confirmedBefore
    await second.unlock()
    expect(retained).toEqual([false, true])
    // Its watch was created behind etcd's revision: not live until a progress answer (which only
    // an ordered etcd sends, within about a catch-up pass), so the take read its key; a take
    // after the confirmation reads nothing. One that raced with it may do either.
    if (confirmedBefore > 0) expect(readsBeforeLive).toBe(0)
    else if (!confirmedMeanwhile) expect(readsBeforeLive).toBe(1)
    console.log(
      `[figure] take of a kept key whose watch was created behind: ${readsBeforeLive} read (${confirmedBefore > 0 ? 'confirmed live before the take' : confirmedMeanwhile ? 'confirmed during the take' : 'not live'})`,
    )
    if (!ordered) return // etcd < 3.4.25 / 3.5.8: nothing is ever confirmed; every take reads
    await until(() => hub.counters.progressConfirmations > 0, 5_000, 'the watch confirmed')
    const confirmed = await reads()
    const third = locker.newLock('u')
    await third.lock(never(), () => {})
    await third.unlock()
    expect(retained).toEqual([false, true, true])
    expect((await reads()) - confirmed).toBe(0)
  })

  it('a kept key deleted by hand reaches the keeper as an event, with no read', async () => {
    const { other, prefix, locker, ordered, hub } = await keptBehind()
    if (ordered) {
      await until(() => hub.counters.progressConfirmations > 0, 5_000, 'the watch confirmed')
    }
    const [key] = await keysUnder(other, `${prefix}/u/`)
    expect(key).toBeDefined()
    const before = await reads()
    const started = performance.now()
    await other.delete().key(key as string)
    await until(() => locker.retainedLocks === 0, 5_000, 'the keeper drops the deleted key')
    console.log(
      `[figure] kept key deleted by hand: the keeper heard it ${(performance.now() - started).toFixed(1)} ms after the delete was sent (watch ${ordered ? 'confirmed live' : 'created behind, etcd without ordered progress'})`,
    )
    expect((await reads()) - before).toBe(0)
    // The next lock takes a new key: the deleted one is never handed out.
    const next = locker.newLock('u')
    await next.lock(never(), () => {})
    expect(await keysUnder(other, `${prefix}/u/`)).toHaveLength(1)
    await next.unlock()
  })
})
