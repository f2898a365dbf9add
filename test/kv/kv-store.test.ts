import { describe, expect, it } from 'vitest'
import { Etcd3KvStore } from '../../src/index.js'
import {
  deferCleanup,
  keysUnder,
  newClient,
  newLocker,
  uniquePrefix,
  within,
} from '../harness/index.js'

function lockerAt(prefix: string, ttl = 10) {
  const locker = newLocker({ prefix, ttl })
  return locker
}

describe.each([true, false])('Etcd3KvStore (leasing: %s)', (leasing) => {
  it('stores, reads, lists and deletes keys with /, %, unicode intact', async () => {
    const prefix = uniquePrefix('kv')
    const store = new Etcd3KvStore<{ n: number }>(newClient(), { prefix, leasing })
    deferCleanup(() => store.close())
    const keys = ['plain', 'a/b/c', '50%off', 'ünïcödé-😀', '.dot', 'a%2Fb']
    for (const [i, key] of keys.entries()) await store.set(key, { n: i })
    for (const [i, key] of keys.entries()) expect(await store.get(key)).toEqual({ n: i })
    expect((await store.list()).sort()).toEqual([...keys].sort())
    expect(await store.get('missing')).toBeUndefined()
    await store.delete('a/b/c')
    expect(await store.get('a/b/c')).toBeUndefined()
    await expect(store.delete('never-there')).resolves.toBeUndefined()
    expect(await store.list()).not.toContain('a/b/c')
  })

  it('refuses bad values and keys with a clear error, writing nothing', async () => {
    const prefix = uniquePrefix('kv-bad')
    const store = new Etcd3KvStore<unknown>(newClient(), { prefix, leasing })
    deferCleanup(() => store.close())
    const circular: Record<string, unknown> = {}
    circular.self = circular
    for (const value of [undefined, () => 1, 10n, circular, Symbol('s')]) {
      await expect(store.set('k', value)).rejects.toThrow(/cannot store the value of "k"/)
    }
    await expect(store.set('', {})).rejects.toThrow(/key must not be empty/)
    await expect(store.get(42 as never)).rejects.toThrow(/key must be a string/)
    expect(await keysUnder(newClient(), prefix)).toEqual([])
  })
})

describe('leasing cache', () => {
  it('a cached get makes no etcd request; a foreign write revokes it within 1 s', async () => {
    const prefix = uniquePrefix('kv-lease')
    const owner = lockerAt(prefix).kvStore<{ v: number }>()
    const writer = lockerAt(prefix).kvStore<{ v: number }>()
    await writer.set('u', { v: 1 })

    expect(await owner.get('u')).toEqual({ v: 1 })
    const afterMiss = owner.counters
    for (let i = 0; i < 10; i++) expect(await owner.get('u')).toEqual({ v: 1 })
    expect(owner.counters.hits - afterMiss.hits).toBe(10)
    expect(owner.counters.misses).toBe(afterMiss.misses)

    const started = Date.now()
    await within(writer.set('u', { v: 2 }), 1_000, 'foreign write with a live owner')
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(owner.counters.revokes).toBe(1)
    expect(await owner.get('u')).toEqual({ v: 2 })
  })

  it("the owner's own writes update its cache; its reads see them at once", async () => {
    const prefix = uniquePrefix('kv-own')
    const store = lockerAt(prefix).kvStore<{ v: number }>()
    await store.set('k', { v: 1 })
    await store.get('k') // leases it
    const writing = store.set('k', { v: 2 })
    const read = store.get('k') // issued while the write is in flight
    await writing
    expect(await read).toEqual({ v: 2 })
    expect(await store.get('k')).toEqual({ v: 2 })
    expect(await lockerAt(prefix).kvStore<{ v: number }>({ leasing: false }).get('k')).toEqual({
      v: 2,
    })
  })
})

describe('locker.kvStore()', () => {
  it('returns one store (one cache) per set of options, defaults included', () => {
    const locker = newLocker({ prefix: uniquePrefix('kv-same'), ttl: 10 })
    // Two caches on one session would each take the other's leasing key for a leftover of its own.
    expect(locker.kvStore()).toBe(locker.kvStore({ leasing: true, revokeBackoff: 1_000 }))
    expect(locker.kvStore({ leasing: false })).not.toBe(locker.kvStore())
  })
})

describe('leasing cache and a lease etcd no longer knows', () => {
  it('a read whose session was revoked behind its back returns the value, then works on a new session', async () => {
    const prefix = uniquePrefix('kv-revoked')
    const locker = lockerAt(prefix)
    const leases: string[] = []
    locker.on('sessionGranted', ({ lease }) => leases.push(lease))
    const store = locker.kvStore<{ v: number }>()
    await store.set('a', { v: 1 })
    // Written by a store that does not cache: 'b' is not leased, so its next read goes to etcd.
    await locker.kvStore<{ v: number }>({ leasing: false }).set('b', { v: 2 })
    expect(await store.get('a')).toEqual({ v: 1 })
    // Someone (an operator, a buggy tool) revokes the lease while the session still trusts it.
    await newClient().leaseClient.leaseRevoke({ ID: BigInt(`0x${leases[0]}`).toString() })
    expect(await store.get('b')).toEqual({ v: 2 })
    expect(await store.get('a')).toEqual({ v: 1 })
    expect(leases).toHaveLength(2)
  })
})
