import { ERRORS } from '@tus/utils'
import { describe, expect, it } from 'vitest'
import { newClient, newLocker, uniquePrefix, untilKeyCount, within } from '../harness/index.js'

describe('mutual exclusion under contention', () => {
  it.each([1, 2, 3, 4, 5])(
    'run %i: 4 instances x 5 requests on one id, some giving up midway: never two holders at once',
    async () => {
      const prefix = uniquePrefix('mutex')
      const instances = [0, 1, 2, 3].map(() => newLocker({ prefix, ttl: 10 }))
      let inside = 0
      let overlaps = 0
      let held = 0
      let gaveUp = 0
      await Promise.all(
        instances.flatMap((locker, i) =>
          [0, 1, 2, 3, 4].map(async (j) => {
            const controller = new AbortController()
            // One request in three gives up after a while, often while queued behind others.
            if ((i + j) % 3 === 0) setTimeout(() => controller.abort(), 10 + j * 10)
            const lock = locker.newLock('contended')
            try {
              await lock.lock(controller.signal, () => {})
            } catch (error) {
              expect(error).toBe(ERRORS.ERR_LOCK_TIMEOUT)
              gaveUp++
              return
            }
            inside++
            if (inside > 1) overlaps++
            held++
            await new Promise((resolve) => setTimeout(resolve, 15))
            inside--
            await lock.unlock()
          }),
        ),
      )
      expect(overlaps).toBe(0)
      expect(held + gaveUp).toBe(20)
      expect(held).toBeGreaterThan(5)
      expect(gaveUp).toBeGreaterThan(0)
    },
  )
})

describe('a waiter whose predecessor gives up', () => {
  it('keeps waiting for the holder ahead of them, then acquires when it unlocks', async () => {
    const prefix = uniquePrefix('gave-up-between')
    const [holder, first, second] = [0, 1, 2].map(() => newLocker({ prefix, ttl: 10 }))
    const held = holder?.newLock('u')
    await held?.lock(new AbortController().signal, () => {})
    const giveUp = new AbortController()
    const firstWaiting = first
      ?.newLock('u')
      .lock(giveUp.signal, () => {})
      .catch((error: unknown) => error)
    await untilKeyCount(newClient(), `${prefix}/u/`, 2)
    let secondHolds = false
    const secondAcquired = second
      ?.newLock('u')
      .lock(new AbortController().signal, () => {})
      .then(() => {
        secondHolds = true
      })
    await untilKeyCount(newClient(), `${prefix}/u/`, 3)

    giveUp.abort()
    expect(await firstWaiting).toBe(ERRORS.ERR_LOCK_TIMEOUT)
    await new Promise((resolve) => setTimeout(resolve, 300)) // the second must not jump ahead
    expect(secondHolds).toBe(false)
    await held?.unlock()
    await within(
      secondAcquired ?? Promise.resolve(),
      1_000,
      'second holds after the holder unlocked',
    )
  })
})
