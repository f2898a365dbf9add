import { describe, expect, it } from 'vitest'
import { LockLostError } from '../../src/index.js'
import { lockQueuePrefix } from '../../src/keys.js'
import {
  captureLog,
  deferCleanup,
  etcdctl,
  keysUnder,
  newClient,
  newLocker,
  uniquePrefix,
  within,
} from '../harness/index.js'

const never = () => new AbortController().signal

// Defect: a waiter whose only older entry was deleted held the lock without checking that its
// own key still existed; with that key deleted by hand, the next instance held too.
describe('a waiter whose own key is deleted out of band', () => {
  it.each([
    'with the holder key, in one delete of the queue',
    'before the holder unlocks',
  ] as const)('%s never holds, and the next instance holds alone', async (how) => {
    const prefix = uniquePrefix('oob-delete')
    const queue = lockQueuePrefix(prefix, 'u')
    const [a, b, c] = [0, 1, 2].map(() => newLocker({ prefix, ttl: 10 }))
    if (!a || !b || !c) throw new Error('no lockers')
    const holder = a.newLock('u')
    await holder.lock(never(), () => {})
    const [holderKey] = await keysUnder(newClient(), queue)
    const log = captureLog('lock')
    deferCleanup(() => log.stop())
    let bHolds = false
    const waiting = b
      .newLock('u')
      .lock(never(), () => {})
      .then(
        () => {
          bHolds = true
          return 'held'
        },
        (error: unknown) => error,
      )
    // B has read its queue and watches its predecessor, the holder.
    await within(log.waitFor(` waits for ${holderKey}`), 2_000, 'B watches the holder key')
    const bKey = (await keysUnder(newClient(), queue)).find((k) => k !== holderKey)
    if (!bKey || !holderKey) throw new Error('B has no key in the queue')

    if (how === 'before the holder unlocks') {
      await etcdctl(['del', bKey])
      await holder.unlock()
    } else {
      await etcdctl(['del', '--prefix', queue])
    }
    const outcome = await within(waiting, 5_000, "B's lock() settles")
    expect(outcome).toBeInstanceOf(LockLostError)
    const next = c.newLock('u')
    await within(
      next.lock(never(), () => {}),
      5_000,
      'C holds',
    )
    expect(bHolds).toBe(false)
    await next.unlock()
    await holder.unlock()
  })
})
