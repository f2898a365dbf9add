/**
 * Issue 19, item 4: event listeners are user code. One that throws is reported (a process
 * warning naming the event) and changes nothing in the lock, the queue or the process.
 */
import { describe, expect, it } from 'vitest'
import type { LockerEvents } from '../../src/index.js'
import { deferCleanup, newLocker, signal, uniquePrefix, within } from '../harness/index.js'

const never = () => new AbortController().signal
const CODE = 'TUS_ETCD3_LOCKER_LISTENER_THREW'

/** Process warnings with our code, from now until the end of the test. */
function listenerWarnings(): string[] {
  const seen: string[] = []
  const onWarning = (warning: Error & { code?: string }) => {
    if (warning.code === CODE) seen.push(warning.message)
  }
  process.on('warning', onWarning)
  deferCleanup(() => process.off('warning', onWarning))
  return seen
}

/** Waits for the next warning with our code (warnings are emitted on the next tick). */
function nextWarning(): Promise<string> {
  return new Promise((resolve) => {
    const onWarning = (warning: Error & { code?: string }) => {
      if (warning.code !== CODE) return
      process.off('warning', onWarning)
      resolve(warning.message)
    }
    process.on('warning', onWarning)
  })
}

/**
 * Uncaught exceptions and unhandled rejections from now until the end of the test: either
 * would end a real process (the runner counts them as failures too).
 */
function processCrashes(): unknown[] {
  const crashes: unknown[] = []
  const onCrash = (error: unknown) => crashes.push(error)
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
  deferCleanup(() => {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
  })
  return crashes
}

describe('a listener that throws', () => {
  it.each([0, 60_000])(
    'on lockReleased: the upload is free for another instance at once (retainLocks %d)',
    async (retainLocks) => {
      const prefix = uniquePrefix('throw-released')
      const a = newLocker({ prefix, ttl: 10, retainLocks })
      const b = newLocker({ prefix, ttl: 10 })
      a.on('lockReleased', () => {
        throw new Error('a bug in a metrics listener')
      })
      listenerWarnings()
      const warned = nextWarning()
      const lock = a.newLock('u')
      await lock.lock(never(), () => {})
      await lock.unlock()
      expect(await within(warned, 2_000, 'the warning')).toMatch(/lockReleased/)
      const other = b.newLock('u')
      await within(
        other.lock(never(), () => {}),
        3_000,
        'another instance holds',
      )
      await other.unlock()
    },
  )

  it('on lockAcquired: lock() resolves, and unlock() frees the upload', async () => {
    const prefix = uniquePrefix('throw-acquired')
    const a = newLocker({ prefix, ttl: 10, retainLocks: 0 })
    const b = newLocker({ prefix, ttl: 10 })
    a.on('lockAcquired', () => {
      throw new Error('a bug in a logging listener')
    })
    listenerWarnings()
    const warned = nextWarning()
    const lock = a.newLock('u')
    await within(
      lock.lock(never(), () => {}),
      3_000,
      'lock()',
    )
    expect(await within(warned, 2_000, 'the warning')).toMatch(/lockAcquired/)
    await lock.unlock()
    const other = b.newLock('u')
    await within(
      other.lock(never(), () => {}),
      3_000,
      'another instance holds',
    )
    await other.unlock()
  })

  it('on releaseRequested: the holder is still asked to release, and the process goes on', async () => {
    const prefix = uniquePrefix('throw-release-requested')
    const a = newLocker({ prefix, ttl: 10 })
    const b = newLocker({ prefix, ttl: 10 })
    const events: Array<keyof LockerEvents> = ['releaseRequested', 'lockWaiting', 'lockFailed']
    for (const event of events) {
      a.on(event, () => {
        throw new Error(`a bug in a ${event} listener`)
      })
    }
    const seen = listenerWarnings()
    const crashes = processCrashes()

    const asked = signal()
    const lock = a.newLock('u')
    await lock.lock(never(), () => asked.fire())
    const other = b.newLock('u')
    const taking = other.lock(never(), () => {})
    await within(asked.promise, 5_000, "the holder's requestRelease")
    await lock.unlock()
    await within(taking, 3_000, 'the waiter holds')
    await other.unlock()
    await new Promise((resolve) => setImmediate(resolve))
    expect(crashes).toEqual([])
    expect(seen.some((message) => /releaseRequested/.test(message))).toBe(true)
  })

  it('on the session and wait events, async or throwing odd values: grants, waits and closes go on, nothing is unhandled', async () => {
    const prefix = uniquePrefix('throw-session')
    const a = newLocker({ prefix, ttl: 10, retainLocks: 0 })
    const b = newLocker({ prefix, ttl: 10 })
    const seen = listenerWarnings()
    const crashes = processCrashes()
    // A null-prototype object cannot even be turned into a string.
    b.on('sessionGranted', () => {
      throw Object.create(null)
    })
    b.on('lockWaiting', async () => {
      throw new Error('an async bug')
    })
    b.on('sessionLost', () => {
      throw new Error('a bug on shutdown')
    })
    await within(b.ready(), 5_000, "B's session is granted")
    const held = a.newLock('u')
    await held.lock(never(), () => {})
    const waiting = b.newLock('u')
    const waited = waiting.lock(never(), () => {})
    // lockWaiting comes after a second of waiting; then the holder lets go.
    await within(
      new Promise<void>((resolve) => b.once('lockWaiting', () => resolve())),
      5_000,
      'B reports its wait',
    )
    await held.unlock()
    await within(waited, 3_000, 'B holds')
    await waiting.unlock()
    await within(b.close(), 5_000, "B's close()")
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(crashes).toEqual([])
    for (const event of ['sessionGranted', 'lockWaiting', 'sessionLost']) {
      expect(seen.some((message) => message.includes(`"${event}"`))).toBe(true)
    }
  })
})
