import { describe, expect, it } from 'vitest'
import { SessionLostError } from '../../src/index.js'
import {
  deferCleanup,
  endpoints,
  keysUnder,
  newClient,
  newLocker,
  signal,
  startProxy,
  uniquePrefix,
  within,
} from '../harness/index.js'

async function behindProxy(prefix: string, ttl: number, acquireLockTimeout = 30_000) {
  const proxy = await startProxy(endpoints()[0] ?? '')
  deferCleanup(() => proxy.close())
  const locker = newLocker({ prefix, ttl, acquireLockTimeout }, [proxy.endpoint])
  return { proxy, locker }
}

function direct(prefix: string, ttl: number) {
  const locker = newLocker({ prefix, ttl })
  return locker
}

const never = () => new AbortController().signal
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

describe('a holder cut off from etcd', () => {
  it('hears requestRelease before anyone else can acquire (5 times); after restore it works on a new session', async () => {
    const TTL = 3
    const prefix = uniquePrefix('cut')
    const { proxy, locker: cutOff } = await behindProxy(prefix, TTL)
    const other = direct(prefix, TTL)
    const leases: string[] = []
    cutOff.on('sessionGranted', ({ lease }) => leases.push(lease))
    const lost: string[] = []
    cutOff.on('sessionLost', ({ reason }) => lost.push(reason))
    const delays: number[] = []
    const margins: number[] = []

    for (let rep = 0; rep < 5; rep++) {
      const id = `upload-${rep}`
      const released = signal<number>()
      const lock = cutOff.newLock(id)
      await lock.lock(never(), () => released.fire(Date.now()))

      const cutAt = Date.now()
      proxy.cut()
      // The other instance queues only after the cut, so the cut-off holder cannot hear it:
      // its requestRelease can only come from noticing the lost session.
      const acquired = other
        .newLock(id)
        .lock(never(), () => {})
        .then(() => Date.now())
      const releasedAt = await within(released.promise, TTL * 1_000 + 500, 'requestRelease')
      const acquiredAt = await within(acquired, (TTL + 2) * 1_000, 'other instance acquires')
      expect(releasedAt).toBeLessThan(acquiredAt)
      delays.push(releasedAt - cutAt)
      margins.push(acquiredAt - releasedAt)

      await within(lock.unlock(), 100, 'unlock() after the loss')
      await other.newLock(id).unlock()
      proxy.restore()
    }
    expect(lost).toHaveLength(5)

    // Restored: the next lock runs on a new session, and no key of the old sessions is left.
    const after = cutOff.newLock('after-restore')
    await within(
      after.lock(never(), () => {}),
      10_000,
      'lock after restore',
    )
    expect(new Set(leases).size).toBe(6)
    const keys = await keysUnder(newClient(), `${prefix}/`)
    const mine = keys.filter((k) => leases.some((lease) => k.endsWith(`/${lease}`)))
    expect(mine).toEqual([`${prefix}/after-restore/${leases.at(-1)}`])
    await after.unlock()
    console.log(
      `[figure] cut -> requestRelease (ttl ${TTL}s): median ${median(delays)} ms of ${delays.join(', ')}; requestRelease -> other acquires: median ${median(margins)} ms`,
    )
  }, 60_000)

  it('lock() while cut off rejects within acquireLockTimeout + 1 s instead of hanging', async () => {
    const prefix = uniquePrefix('cut-lock')
    const { proxy, locker } = await behindProxy(prefix, 10, 1_000)
    await locker.ready()
    proxy.cut()
    const started = Date.now()
    await expect(locker.newLock('u').lock(never(), () => {})).rejects.toBeDefined()
    expect(Date.now() - started).toBeLessThan(1_000 + 1_000)
  })

  it('waiters reject with SessionLostError when the session is lost while they wait', async () => {
    const TTL = 2
    const prefix = uniquePrefix('cut-waiter')
    const holder = direct(prefix, 10)
    const held = holder.newLock('u')
    await held.lock(never(), () => {})
    const { proxy, locker } = await behindProxy(prefix, TTL)
    const waiting = locker
      .newLock('u')
      .lock(never(), () => {})
      .catch((error: unknown) => error)
    await locker.ready()
    proxy.cut()
    expect(await within(waiting, (TTL + 1) * 1_000, 'waiter rejects')).toBeInstanceOf(
      SessionLostError,
    )
    await held.unlock()
  })
})
