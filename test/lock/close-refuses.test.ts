/**
 * Issue 19, item 3: from the moment close() is called, with or without drain, health() rejects
 * and every lock() rejects with LockerClosedError (503): nothing waits for the kept keys' watches.
 */
import { describe, expect, it } from 'vitest'
import { LockerClosedError } from '../../src/index.js'
import { newLocker, uniquePrefix, within } from '../harness/index.js'

const never = () => new AbortController().signal

describe('close() refuses at once', () => {
  it.each([undefined, { drain: 2_000 }])(
    'close(%o); health() rejects with LockerClosedError, with no kept key',
    async (options) => {
      const locker = newLocker({ prefix: uniquePrefix('close-health'), ttl: 10 })
      await locker.health()
      const closed = locker.close(options)
      await expect(within(locker.health(), 2_000, 'health()')).rejects.toBeInstanceOf(
        LockerClosedError,
      )
      await closed
    },
  )

  it.each([undefined, { drain: 2_000 }])(
    'close(%o); lock() of a kept upload rejects with LockerClosedError (100 kept keys)',
    async (options) => {
      const locker = newLocker({ prefix: uniquePrefix('close-lock'), ttl: 10, retainLocks: 60_000 })
      for (let i = 0; i < 100; i++) {
        const lock = locker.newLock(`u${i}`)
        await lock.lock(never(), () => {})
        await lock.unlock()
      }
      expect(locker.retainedLocks).toBe(100)
      const closed = locker.close(options)
      const late = locker.newLock('u0')
      const error = await within(
        late
          .lock(never(), () => {})
          .then(
            () => new Error('lock() resolved'),
            (e: unknown) => e,
          ),
        2_000,
        'lock() after close()',
      )
      await late.unlock()
      expect(error).toBeInstanceOf(LockerClosedError)
      expect((error as LockerClosedError).status_code).toBe(503)
      await closed
    },
    30_000,
  )
})
