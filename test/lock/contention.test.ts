import { describe, it } from 'vitest'
import {
  deferCleanup,
  endpoints,
  newClient,
  newLocker,
  signal,
  startProxy,
  uniquePrefix,
  untilKeyCount,
  within,
} from '../harness/index.js'

const never = () => new AbortController().signal

describe("a locker's one contention watch", () => {
  it('tells a holder that waited (older than the watch) about a waiter that queued meanwhile', async () => {
    const prefix = uniquePrefix('contention-old')
    const local = newLocker({ prefix })
    const remote = newLocker({ prefix })
    const late = newLocker({ prefix })
    const remoteHold = remote.newLock('x')
    await remoteHold.lock(never(), () => {})
    const released = signal()
    const waited = local.newLock('x')
    const waitedHolds = waited.lock(never(), () => released.fire())
    await untilKeyCount(newClient(), `${prefix}/x/`, 2)
    // Another hold of the same locker starts the shared watch, newer than the waiter's entry.
    const other = local.newLock('y')
    const otherReleased = signal()
    await other.lock(never(), () => otherReleased.fire())
    void late
      .newLock('y')
      .lock(never(), () => {})
      .catch(() => {}) // proves the watch runs
    await within(otherReleased.promise, 2_000, 'the watch is running')
    void late
      .newLock('x')
      .lock(never(), () => {})
      .catch(() => {}) // queues behind the waiter
    await untilKeyCount(newClient(), `${prefix}/x/`, 3)
    await remoteHold.unlock()
    await within(waitedHolds, 2_000, 'the waiter holds')
    await within(released.promise, 2_000, 'the waiter, now holder, hears the later waiter')
    await Promise.all([waited.unlock(), other.unlock()])
  })

  it('after its connection broke, holders still hear new waiters', async () => {
    const prefix = uniquePrefix('contention-cut')
    const proxy = await startProxy(endpoints()[0] ?? '')
    deferCleanup(() => proxy.close())
    const holder = newLocker({ prefix, ttl: 10 }, [proxy.endpoint])
    const released = signal()
    const held = holder.newLock('u')
    await held.lock(never(), () => released.fire())
    // Let the shared watch start, then break it.
    const warm = signal()
    const other = holder.newLock('v')
    await other.lock(never(), () => warm.fire())
    void newLocker({ prefix })
      .newLock('v')
      .lock(never(), () => {})
      .catch(() => {})
    await within(warm.promise, 2_000, 'watch running')
    proxy.cut('reset')
    proxy.restore()
    void newLocker({ prefix })
      .newLock('u')
      .lock(never(), () => {})
      .catch(() => {})
    await within(released.promise, 10_000, 'the holder hears the waiter after the break')
  })
})
