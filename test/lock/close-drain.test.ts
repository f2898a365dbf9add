/**
 * close({ drain }): a graceful shutdown asks holders to release first, keeps their session (and
 * fenced KV writes) until they unlock, refuses new and waiting requests at once, then revokes.
 */
import { describe, expect, it } from 'vitest'
import { LockerClosedError } from '../../src/index.js'
import {
  keysUnder,
  newClient,
  newLocker,
  rejectionOf,
  signal,
  uniquePrefix,
  within,
} from '../harness/index.js'

const never = new AbortController().signal

describe('close({ drain })', () => {
  it('asks the holder to release, lets it write and unlock, then revokes: nothing left', async () => {
    const prefix = uniquePrefix('drain')
    const locker = newLocker({ prefix, retainLocks: 5_000 })
    const store = locker.kvStore<{ offset: number }>()
    const asked = signal<string>()
    locker.on('releaseRequested', ({ cause }) => asked.fire(cause))
    const lock = locker.newLock('u1')
    await lock.lock(never, () => {
      // What @tus/server does: stop the PATCH, save what it received, answer, unlock.
      void store
        .set('u1', { offset: 7 })
        .then(() => lock.unlock())
        .catch((error: unknown) => asked.fire(`write failed: ${String(error)}`))
    })
    const closed = locker.close({ drain: 10_000 })
    expect(await within(asked.promise, 2_000, 'requestRelease')).toBe('shutdown')
    // New requests are refused at once, not after the drain.
    expect(
      (
        await rejectionOf(
          locker.newLock('u2').lock(never, () => {}),
          1_000,
          'a new lock()',
        )
      ).error,
    ).toBeInstanceOf(LockerClosedError)
    await within(closed, 3_000, 'close() once the holder unlocked')
    const client = newClient()
    expect(JSON.parse((await client.get(`${prefix}/.kv/u1`).string()) ?? 'null')).toEqual({
      offset: 7,
    })
    // The unlock during the drain kept no key, and the revoke took the rest.
    expect(await keysUnder(client, `${prefix}/u1/`)).toEqual([])
    expect(await keysUnder(client, `${prefix}/.kvlease/`)).toEqual([])
    await expect(locker.health()).rejects.toBeInstanceOf(LockerClosedError)
  })

  it('refuses a waiting lock() at once, not after the drain', async () => {
    const locker = newLocker({ prefix: uniquePrefix('drain-waiter') })
    await locker.newLock('u1').lock(never, () => {}) // never unlocks
    const waiter = rejectionOf(
      locker.newLock('u1').lock(never, () => {}),
      2_000,
      'the waiter',
    )
    const closed = locker.close({ drain: 1_500 })
    const { error, ms } = await waiter
    expect(error).toBeInstanceOf(LockerClosedError)
    expect(ms).toBeLessThan(1_000)
    await closed
  })

  it('revokes after drain ms when a holder does not let go', async () => {
    const prefix = uniquePrefix('drain-stuck')
    const locker = newLocker({ prefix })
    await locker.newLock('u1').lock(never, () => {}) // never unlocks
    const started = performance.now()
    await within(locker.close({ drain: 400 }), 3_000, 'close()')
    expect(performance.now() - started).toBeGreaterThanOrEqual(390)
    expect(await keysUnder(newClient(), `${prefix}/`)).toEqual([])
  })

  it('with no holder returns as soon as the session is revoked', async () => {
    const locker = newLocker({ prefix: uniquePrefix('drain-idle') })
    await locker.ready()
    await within(locker.close({ drain: 60_000 }), 2_000, 'close() with nothing held')
  })

  it.each([
    [{ drain: -1 }, RangeError, /"drain" must be 0 \(off\) or a number of milliseconds/],
    [{ drain: '5s' }, TypeError, /"drain" must be a number/],
    [{ drian: 5 }, TypeError, /Etcd3Locker.close\(\) has no option "drian"/],
  ])('refuses %j with a clear error', (options, type, message) => {
    const locker = newLocker({ prefix: uniquePrefix('drain-bad') })
    expect(() => locker.close(options as never)).toThrow(type)
    expect(() => locker.close(options as never)).toThrow(message)
  })
})
