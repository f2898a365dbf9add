/**
 * unlock() resolves before etcd has the delete (the delete goes on in the background). What must
 * still hold: the next request of the same process for the same upload never adopts the key that
 * is being deleted, and other instances get the lock as soon as the delete lands. With
 * `retainLocks: 0`: a kept key is not deleted at unlock (test/lock/retention.test.ts).
 */
import { describe, expect, it } from 'vitest'
import { newClient, newLocker, uniquePrefix, untilNoKeys, within } from '../harness/index.js'

const never = () => new AbortController().signal

describe('unlock() does not wait for etcd', () => {
  it('lock, unlock, lock again at once, 30 times: each hold has its own, newer key', async () => {
    const prefix = uniquePrefix('relock')
    const locker = newLocker({ prefix, ttl: 10, retainLocks: 0 })
    const client = newClient()
    let previous = 0n
    for (let i = 0; i < 30; i++) {
      const lock = locker.newLock('u')
      await lock.lock(never(), () => {})
      const res = await client.getAll().prefix(`${prefix}/u/`).exec()
      // Exactly one key, created after the previous hold's key: had this hold adopted the key
      // still being deleted, the pending delete would remove it while we hold.
      expect(res.kvs).toHaveLength(1)
      const created = BigInt(res.kvs[0]?.create_revision ?? 0)
      expect(created).toBeGreaterThan(previous)
      previous = created
      await lock.unlock()
    }
    await untilNoKeys(client, prefix)
  })

  it('another instance waiting gets the lock once the background delete lands', async () => {
    const prefix = uniquePrefix('handover')
    const holder = newLocker({ prefix, ttl: 10, retainLocks: 0 }).newLock('u')
    await holder.lock(never(), () => {})
    const waiter = newLocker({ prefix, ttl: 10, retainLocks: 0 }).newLock('u')
    const waiting = waiter.lock(never(), () => {})
    await holder.unlock()
    await within(waiting, 5_000, 'the waiter after unlock')
    await waiter.unlock()
    await untilNoKeys(newClient(), prefix)
  })
})
