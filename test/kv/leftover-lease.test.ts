/**
 * Issue 19, item 2: a lease-and-read that etcd applied but whose answer was lost leaves a leasing
 * key that no cache serves. The owner must check for it until etcd answers (or its session is
 * lost), so that a writer elsewhere does not wait for the owner's whole TTL, round after round.
 */
import { describe, expect, it } from 'vitest'
import { lockerBehindProxy, newClient, newLocker, uniquePrefix, within } from '../harness/index.js'

const TTL = 30
// Longer than a call's deadline (2 s) plus the first leftover check's (3 s later, 2 s deadline).
const SILENCE_MS = 7_500

describe('a cache miss whose answer is lost', () => {
  it(`leaves no leasing key behind: a writer elsewhere completes within a few seconds of etcd answering again (owner ttl ${TTL} s)`, async () => {
    const prefix = uniquePrefix('kv-leftover')
    const { proxy, locker: owner } = await lockerBehindProxy({ prefix, ttl: TTL })
    await owner.ready()
    const writer = newLocker({ prefix, ttl: 10 }).kvStore<{ v: number }>({ leasing: false })
    await writer.set('k', { v: 1 })

    proxy.cut('hold-answers') // etcd applies the owner's requests; the owner hears nothing
    const silenced = Date.now()
    const miss = owner.kvStore<{ v: number }>().get('k')
    await expect(within(miss, 5_000, "the owner's cache miss")).rejects.toThrow()
    // The owner's leasing key is there, though its cache has nothing.
    const leaseKey = `${prefix}/.kvlease/k`
    expect((await newClient().get(leaseKey).exec()).kvs).toHaveLength(1)
    await new Promise((resolve) => setTimeout(resolve, SILENCE_MS - (Date.now() - silenced)))
    proxy.restore()
    const answering = Date.now()

    // The owner never touches k again (the tus client went on through another instance).
    await within(writer.set('k', { v: 2 }), 10_000, 'the write elsewhere')
    const waited = Date.now() - answering
    console.log(
      `[figure] a write elsewhere after the owner's lost lease-and-read: ${waited} ms after etcd answered the owner again (owner ttl ${TTL} s)`,
    )
    expect(waited).toBeLessThan(5_000)
    expect(await writer.get('k')).toEqual({ v: 2 })
    expect((await newClient().get(leaseKey).exec()).kvs).toHaveLength(0)
  }, 40_000)
})
