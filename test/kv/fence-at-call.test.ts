/**
 * Issue 19, item 1: a KV write is fenced when it is called, not when it gets its turn. A write
 * queued behind a slow one of the same key, called while this process held the upload, must not
 * commit once the lock has passed to another instance.
 */
import { describe, expect, it } from 'vitest'
import { LockLostError } from '../../src/index.js'
import { lockerBehindProxy, newClient, newLocker, uniquePrefix, within } from '../harness/index.js'

const never = () => new AbortController().signal

describe('a KV write queued behind another', () => {
  // A store with leasing is fenced the same way; without, B's write need not first wait for
  // A's cache lease, which A cannot give up while its answers are held.
  it('called while holding, run after the lock passed to another instance: LockLostError, the new holder value survives', async () => {
    const prefix = uniquePrefix('fence-at-call')
    const { proxy, locker: a } = await lockerBehindProxy({ prefix, ttl: 10, retainLocks: 0 })
    const b = newLocker({ prefix, ttl: 10 })
    const aStore = a.kvStore<string>({ leasing: false })
    const bStore = b.kvStore<string>({ leasing: false })

    const aLock = a.newLock('u')
    await aLock.lock(never(), () => {})
    await aStore.set('u', 'A0')

    proxy.cut('hold-answers') // etcd applies A's requests; A hears nothing back
    let firstSettled = false
    const first = aStore.set('u', 'A1').finally(() => {
      firstSettled = true
    })
    first.catch(() => undefined)
    const second = aStore.set('u', 'A2') // queued behind the first, called while A holds
    second.catch(() => undefined)
    await aLock.unlock() // its key's delete reaches etcd

    const bLock = b.newLock('u')
    // Both well within A's first write's deadline (2 s): it must still be waiting.
    await within(
      bLock.lock(never(), () => {}),
      700,
      'B holds once A deleted its key',
    )
    await within(bStore.set('u', 'B'), 700, "the new holder's write")
    expect(firstSettled, "A's first write still waits for its answer").toBe(false)
    proxy.restore()

    await within(first, 3_000, "A's first write settles").catch(() => undefined)
    await expect(within(second, 3_000, "A's second write settles")).rejects.toBeInstanceOf(
      LockLostError,
    )
    const raw = await newClient().get(`${prefix}/.kv/u`).string()
    expect(JSON.parse(raw ?? 'null')).toBe('B')
    await bLock.unlock()
  }, 20_000)
})
