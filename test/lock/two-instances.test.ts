import { describe, expect, it } from 'vitest'
import {
  keysUnder,
  newClient,
  newLocker,
  signal,
  uniquePrefix,
  untilKeyCount,
  within,
} from '../harness/index.js'

/** One simulated tus instance: its own etcd client and locker. */
function instance(prefix: string, options: { acquireLockTimeout?: number; ttl?: number } = {}) {
  const locker = newLocker({ prefix, ttl: 10, ...options })
  return locker
}

const never = () => new AbortController().signal

describe('two instances', () => {
  it('B waits while A holds, A is asked to release, B holds soon after A unlocks', async () => {
    const prefix = uniquePrefix('two')
    const a = instance(prefix)
    const b = instance(prefix)
    const released = signal()
    const lockA = a.newLock('upload-1')
    await lockA.lock(never(), () => released.fire())

    let bHolds = false
    const lockB = b.newLock('upload-1')
    const bAcquired = lockB
      .lock(never(), () => {})
      .then(() => {
        bHolds = true
        return Date.now()
      })
    await within(released.promise, 2_000, "A's requestRelease")
    expect(bHolds).toBe(false)

    const unlockedAt = Date.now()
    await lockA.unlock()
    const acquiredAt = await within(bAcquired, 1_000, 'B holds after A unlocked')
    expect(acquiredAt - unlockedAt).toBeLessThan(1_000)
    await lockB.unlock()
  })

  it('three waiters acquire in the order they enqueued', async () => {
    const prefix = uniquePrefix('fifo')
    const holder = instance(prefix)
    const first = holder.newLock('x')
    await first.lock(never(), () => {})

    const order: string[] = []
    const waiters = ['w1', 'w2', 'w3'].map((name) => ({ name, locker: instance(prefix) }))
    const acquired: Promise<void>[] = []
    for (const { name, locker } of waiters) {
      const lock = locker.newLock('x')
      // Each waiter's key must exist before the next one enqueues: wait for the queue to grow.
      const before = (await keysUnder(newClient(), `${prefix}/x/`)).length
      acquired.push(
        lock
          .lock(never(), () => {})
          .then(async () => {
            order.push(name)
            await lock.unlock()
          }),
      )
      await within(
        untilKeyCount(newClient(), `${prefix}/x/`, before + 1),
        2_000,
        `${name} enqueued`,
      )
    }
    await first.unlock()
    await within(Promise.all(acquired), 5_000, 'all waiters acquired')
    expect(order).toEqual(['w1', 'w2', 'w3'])
  })
})

describe('one process', () => {
  it('two newLock(sameId) never hold at once, and the first holder is asked to release', async () => {
    const locker = instance(uniquePrefix('local'))
    const released = signal()
    const first = locker.newLock('same')
    await first.lock(never(), () => released.fire())

    let secondHolds = false
    const second = locker.newLock('same')
    const secondAcquired = second
      .lock(never(), () => {})
      .then(() => {
        secondHolds = true
      })
    await within(released.promise, 1_000, "first holder's requestRelease")
    expect(secondHolds).toBe(false)
    await first.unlock()
    await within(secondAcquired, 1_000, 'second holds after first unlocked')
    await second.unlock()
  })

  it('many local requests for one id take turns, never two at once', async () => {
    const locker = instance(uniquePrefix('turns'))
    let inside = 0
    let maxInside = 0
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const lock = locker.newLock('busy')
        await lock.lock(never(), () => {})
        inside++
        maxInside = Math.max(maxInside, inside)
        await new Promise((resolve) => setImmediate(resolve))
        inside--
        await lock.unlock()
      }),
    )
    expect(maxInside).toBe(1)
  })
})
