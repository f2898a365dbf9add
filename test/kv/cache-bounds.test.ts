/**
 * The leasing cache follows the keys in use now: at most `cacheSize` entries, none unread for
 * longer than `cacheIdle`, and a deleted key is evicted. Counted in etcd (leasing keys under
 * P/.kvlease/, and etcd's own watcher gauge, on a member of this file's own), not in our code.
 */
import { describe, expect, it } from 'vitest'
import {
  etcdMetric,
  keysUnder,
  newClient,
  newLocker,
  privateEtcd,
  uniquePrefix,
} from '../harness/index.js'
import { untilKeys } from '../harness/key-count.js'

describe('a bounded leasing cache', () => {
  const etcd = privateEtcd()

  const watchers = () => etcdMetric(etcd.endpoint, 'etcd_debugging_mvcc_watcher_total')

  /** Watchers on the member once the count has settled at `done` (bounded wait, no sleep). */
  const untilWatchers = async (done: (n: number) => boolean, what: string) => {
    const giveUpAt = performance.now() + 10_000
    for (;;) {
      const n = await watchers()
      if (done(n)) return n
      if (performance.now() > giveUpAt) throw new Error(`${what}: ${n} watchers after 10 s`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** A locker (its KV store only: no lock, so no watch of its own), and etcd's watcher count. */
  const lockerAndBaseline = async (prefix: string) => {
    const locker = newLocker({ prefix, ttl: 10 }, etcd.cluster.endpoints)
    await locker.ready()
    return { locker, baseline: await watchers() }
  }

  it('cacheSize: 1000 keys read through a cache of 100 leave at most 100 leasing keys and watches', async () => {
    const { locker, baseline } = await lockerAndBaseline(uniquePrefix('size'))
    const prefix = locker.options.prefix
    const store = locker.kvStore<{ n: number }>({ cacheSize: 100 })
    const writer = locker.kvStore<{ n: number }>({ leasing: false })
    for (let n = 0; n < 1_000; n++) await writer.set(`k${n}`, { n })
    for (let n = 0; n < 1_000; n++) expect(await store.get(`k${n}`)).toEqual({ n })
    const client = newClient(etcd.cluster.endpoints)
    await untilKeys(client, `${prefix}/.kvlease/`, (count) => count <= 100)
    const settled = await untilWatchers((n) => n - baseline <= 100, 'after 1000 reads')
    const leasing = (await keysUnder(client, `${prefix}/.kvlease/`)).length
    console.log(
      `[figure] cacheSize 100, 1000 keys read: ${store.cachedKeys} entries, ${leasing} leasing keys, ${settled - baseline} watchers, ${store.counters.evictions} evictions`,
    )
    expect(store.cachedKeys).toBe(100)
    expect(leasing).toBe(100)
    expect(store.counters.evictions).toBe(900)
    // The most recently read keys are the ones kept: served from memory.
    const hits = store.counters.hits
    expect(await store.get('k999')).toEqual({ n: 999 })
    expect(store.counters.hits).toBe(hits + 1)
  })

  it('cacheIdle: keys unread that long are given up, in etcd too', async () => {
    const { locker, baseline } = await lockerAndBaseline(uniquePrefix('idle'))
    const prefix = locker.options.prefix
    const store = locker.kvStore<{ n: number }>({ cacheIdle: 2_000 })
    for (let n = 0; n < 50; n++) await store.set(`k${n}`, { n })
    for (let n = 0; n < 50; n++) await store.get(`k${n}`)
    expect(store.cachedKeys).toBe(50)
    const client = newClient(etcd.cluster.endpoints)
    await untilKeys(client, `${prefix}/.kvlease/`, (count) => count === 0)
    await untilWatchers((n) => n <= baseline, 'after cacheIdle')
    expect(store.cachedKeys).toBe(0)
    expect(store.counters.evictions).toBe(50)
    // Read again: leased again, served from memory after that.
    expect(await store.get('k1')).toEqual({ n: 1 })
    expect(store.cachedKeys).toBe(1)
  })

  it('deleting a cached key evicts it, with its leasing key, in the same write', async () => {
    const { locker, baseline } = await lockerAndBaseline(uniquePrefix('delete'))
    const prefix = locker.options.prefix
    const store = locker.kvStore<{ n: number }>()
    await store.set('gone', { n: 1 })
    expect(await store.get('gone')).toEqual({ n: 1 })
    expect(store.cachedKeys).toBe(1)
    const proposals = await etcdMetric(etcd.endpoint, 'etcd_server_proposals_committed_total')
    await store.delete('gone')
    expect(
      (await etcdMetric(etcd.endpoint, 'etcd_server_proposals_committed_total')) - proposals,
    ).toBe(1)
    expect(store.cachedKeys).toBe(0)
    const client = newClient(etcd.cluster.endpoints)
    expect(await keysUnder(client, `${prefix}/.kvlease/`)).toEqual([])
    await untilWatchers((n) => n <= baseline, 'after the delete')
    expect(await store.get('gone')).toBeUndefined()
  })

  it.each([
    { options: { cacheSize: 0 }, error: RangeError, message: /"cacheSize" must be a whole number/ },
    { options: { cacheSize: 1.5 }, error: RangeError, message: /"cacheSize"/ },
    { options: { cacheSize: '10' }, error: TypeError, message: /"cacheSize" must be a number/ },
    { options: { cacheIdle: 0 }, error: RangeError, message: /"cacheIdle" must be a number/ },
    { options: { cacheIdle: Number.NaN }, error: RangeError, message: /"cacheIdle"/ },
    { options: { cacheIdle: 2 ** 31 }, error: RangeError, message: /"cacheIdle"/ },
  ])('refuses $options', ({ options, error, message }) => {
    const locker = newLocker({ prefix: uniquePrefix('bad'), ttl: 10 }, etcd.cluster.endpoints)
    expect(() => locker.kvStore(options as never)).toThrow(error)
    expect(() => locker.kvStore(options as never)).toThrow(message)
  })
})
