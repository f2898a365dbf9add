import { describe, expect, it } from 'vitest'
import { Etcd3KvStore } from '../../src/index.js'
import { deferCleanup, newClient, newLocker, uniquePrefix } from '../harness/index.js'

// Defect: a store with `leasing: false` wrote the value key directly, skipping the leasing
// protocol, and the process that had leased the key served the old value until its session ended.
describe('a writer without the cache (leasing: false)', () => {
  it.each(['another instance', 'the same locker', 'a standalone store'] as const)(
    'on %s revokes the cache lease before it writes: the caching reader never sees the old value',
    async (where) => {
      const prefix = uniquePrefix('kv-uncached-writer')
      const owner = newLocker({ prefix, ttl: 10 })
      // revokeBackoff 0: the reader leases the key again on its next read.
      const cached = owner.kvStore<{ v: number }>({ revokeBackoff: 0 })
      await cached.set('upload', { v: 1 })
      expect(await cached.get('upload')).toEqual({ v: 1 })
      expect(await cached.get('upload')).toEqual({ v: 1 })
      expect(cached.counters.hits).toBe(1) // leased and served from memory

      let plain: Etcd3KvStore<{ v: number }>
      if (where === 'a standalone store') {
        plain = new Etcd3KvStore(newClient(), { prefix, leasing: false })
        deferCleanup(() => plain.close())
      } else {
        const locker = where === 'the same locker' ? owner : newLocker({ prefix, ttl: 10 })
        plain = locker.kvStore<{ v: number }>({ leasing: false })
      }
      await plain.set('upload', { v: 2 })
      expect(await cached.get('upload')).toEqual({ v: 2 })

      // Leased again by that read; a delete must revoke it the same way.
      expect(await cached.get('upload')).toEqual({ v: 2 })
      await plain.delete('upload')
      expect(await cached.get('upload')).toBeUndefined()
      expect(await plain.get('upload')).toBeUndefined()
    },
  )
})
