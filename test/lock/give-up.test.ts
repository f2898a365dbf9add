import { ERRORS } from '@tus/utils'
import { describe, expect, it } from 'vitest'
import { Etcd3Locker, LockerClosedError, LockTimeoutError } from '../../src/index.js'
import {
  keysUnder,
  newClient,
  newLocker,
  signal,
  uniquePrefix,
  untilKeyCount,
  untilNoKeys,
  within,
} from '../harness/index.js'

function instance(prefix: string, acquireLockTimeout = 30_000) {
  const locker = newLocker({ prefix, ttl: 10, acquireLockTimeout })
  return locker
}

const never = () => new AbortController().signal

/** A locker of another instance holding `id` under `prefix`. */
async function heldElsewhere(prefix: string, id: string) {
  const lock = instance(prefix).newLock(id)
  await lock.lock(never(), () => {})
  return lock
}

describe('giving up', () => {
  it('acquireLockTimeout rejects with a LockTimeoutError naming the entry ahead and leaves no key', async () => {
    const prefix = uniquePrefix('timeout')
    const holder = await heldElsewhere(prefix, 'u')
    const waiter = instance(prefix, 300).newLock('u')
    const started = Date.now()
    await expect(waiter.lock(never(), () => {})).rejects.toBeInstanceOf(LockTimeoutError)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(await keysUnder(newClient(), prefix)).toHaveLength(1)
    await holder.unlock()
    await untilNoKeys(newClient(), prefix)
  })

  it('an aborted signal rejects the same way, at once, and leaves no key', async () => {
    const prefix = uniquePrefix('abort')
    await heldElsewhere(prefix, 'u')
    const waiter = instance(prefix).newLock('u')
    const controller = new AbortController()
    const acquiring = waiter.lock(controller.signal, () => {})
    await within(untilKeyCount(newClient(), prefix, 2), 2_000, 'waiter enqueued')
    const abortedAt = Date.now()
    controller.abort()
    await expect(acquiring).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT)
    expect(Date.now() - abortedAt).toBeLessThan(500)
    expect(await keysUnder(newClient(), prefix)).toHaveLength(1)
  })

  // Defect: lock() asked the local holder to release even when its signal had already aborted.
  it('a signal aborted before lock() does not ask the local holder to release', async () => {
    const locker = instance(uniquePrefix('pre-aborted-holder'))
    let asked = 0
    const holder = locker.newLock('u')
    await holder.lock(never(), () => {
      asked++
    })
    await expect(locker.newLock('u').lock(AbortSignal.abort(), () => {})).rejects.toBe(
      ERRORS.ERR_LOCK_TIMEOUT,
    )
    expect(asked).toBe(0)
    // One that really queues does ask.
    const queued = locker.newLock('u').lock(never(), () => {})
    expect(asked).toBe(1)
    await holder.unlock()
    await within(queued, 2_000, 'the queued request holds')
  })

  it('a signal aborted before lock() rejects without touching etcd', async () => {
    const prefix = uniquePrefix('pre-aborted')
    const lock = instance(prefix).newLock('u')
    await expect(lock.lock(AbortSignal.abort(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT)
    expect(await keysUnder(newClient(), prefix)).toEqual([])
  })

  it('a hundred aborted waiters, some mid-enqueue, leave no key', async () => {
    const prefix = uniquePrefix('hundred')
    const holder = await heldElsewhere(prefix, 'u')
    const waiterLockers = Array.from({ length: 10 }, () => instance(prefix))
    await Promise.all(waiterLockers.map((l) => l.ready()))
    const attempts = Array.from({ length: 100 }, (_, i) => {
      const controller = new AbortController()
      const locker = waiterLockers[i % waiterLockers.length] as Etcd3Locker
      const result = locker.newLock('u').lock(controller.signal, () => {})
      // A third abort at once (the enqueue txn still in flight), the rest a little later.
      if (i % 3 === 0) controller.abort()
      else setTimeout(() => controller.abort(), 5 + (i % 50))
      return result.then(
        () => 'acquired',
        (error: unknown) => error,
      )
    })
    const outcomes = await within(Promise.all(attempts), 10_000, 'all waiters settled')
    expect(outcomes.every((o) => o === ERRORS.ERR_LOCK_TIMEOUT)).toBe(true)
    const left = await keysUnder(newClient(), prefix)
    expect(left).toHaveLength(1)
    await holder.unlock()
    await untilNoKeys(newClient(), prefix)
  })
})

describe('unlock', () => {
  it('twice resolves, and so does unlock() of a lock never locked', async () => {
    const locker = instance(uniquePrefix('unlock'))
    const lock = locker.newLock('u')
    await lock.lock(never(), () => {})
    await expect(lock.unlock()).resolves.toBeUndefined()
    await expect(lock.unlock()).resolves.toBeUndefined()
    await expect(locker.newLock('other').unlock()).resolves.toBeUndefined()
  })

  it('after a timed-out lock() resolves and frees nothing of the holder', async () => {
    const prefix = uniquePrefix('unlock-timeout')
    const holder = await heldElsewhere(prefix, 'u')
    const waiter = instance(prefix, 100).newLock('u')
    await expect(waiter.lock(never(), () => {})).rejects.toBeInstanceOf(LockTimeoutError)
    await expect(waiter.unlock()).resolves.toBeUndefined()
    expect(await keysUnder(newClient(), prefix)).toHaveLength(1)
    await holder.unlock()
  })

  it('unlock() while a second lock() of the same Lock waits hands the upload to it', async () => {
    const lock = instance(uniquePrefix('twice')).newLock('u')
    const asked = signal()
    await lock.lock(never(), () => asked.fire())
    const second = lock.lock(never(), () => {})
    await within(asked.promise, 1_000, 'the first holder is asked to release')
    await lock.unlock()
    await within(second, 2_000, 'the second lock() holds')
    await lock.unlock()
    await within(
      lock.lock(never(), () => {}),
      2_000,
      'and a third after it',
    )
    await lock.unlock()
  })
})

describe('close()', () => {
  it('another instance waiting gets the lock within 1 s, not after the TTL', async () => {
    const prefix = uniquePrefix('close')
    const a = new Etcd3Locker(newClient(), { prefix, ttl: 30 })
    const released = signal()
    await a.newLock('u').lock(never(), () => released.fire())
    const waiting = instance(prefix)
      .newLock('u')
      .lock(never(), () => {})
    await within(untilKeyCount(newClient(), prefix, 2), 2_000, 'waiter enqueued')
    await a.close()
    await within(waiting, 1_000, 'waiter holds after close()')
    await within(released.promise, 100, "holder's requestRelease on close()")
  })

  it('rejects waiting and later lock() calls with LockerClosedError', async () => {
    const prefix = uniquePrefix('closed')
    await heldElsewhere(prefix, 'u')
    const locker = instance(prefix)
    const waiting = locker
      .newLock('u')
      .lock(never(), () => {})
      .catch((error: unknown) => error)
    await within(untilKeyCount(newClient(), prefix, 2), 2_000, 'waiter enqueued')
    await locker.close()
    expect(await waiting).toBeInstanceOf(LockerClosedError)
    await expect(locker.newLock('v').lock(never(), () => {})).rejects.toBeInstanceOf(
      LockerClosedError,
    )
    await expect(locker.ready()).rejects.toBeInstanceOf(LockerClosedError)
    await expect(locker.close()).resolves.toBeUndefined()
    expect(await keysUnder(newClient(), prefix)).toHaveLength(1)
  })
})
