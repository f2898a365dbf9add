/**
 * Why a request waits, without DEBUG: a lock() still waiting after a second says which lease it
 * waits for (lockWaiting), and a holder asked to release hears whose lease asked.
 */
import { describe, expect, it } from 'vitest'
import { captureLog, freePort, newLocker, signal, uniquePrefix, within } from '../harness/index.js'

const never = new AbortController().signal

describe('a lock() that waits', () => {
  it('is reported once after 1 s, naming the holder lease; the holder hears the waiter lease', async () => {
    const prefix = uniquePrefix('wait-report')
    const holder = newLocker({ prefix })
    const waiter = newLocker({ prefix })
    const holderLease = signal<string>()
    holder.on('sessionGranted', ({ lease }) => holderLease.fire(lease))
    const waiterLease = signal<string>()
    waiter.on('sessionGranted', ({ lease }) => waiterLease.fire(lease))
    const asked = signal<{ cause: string; reason: string; waiter: string | undefined }>()
    holder.on('releaseRequested', (info) => asked.fire(info))
    // The waiter's session first: the report comes at 1 s with what the lock() waits on then, and
    // a lease grant slower than that on a busy machine (any etcd line) made it say 'etcd'.
    const warmUp = waiter.newLock('warm-up')
    await warmUp.lock(never, () => {})
    await warmUp.unlock()
    const reports: Array<{
      id: string
      waitedMs: number
      waitingOn: string
      holder: string | undefined
    }> = []
    const reported = signal()
    waiter.on('lockWaiting', (info) => {
      reports.push(info)
      reported.fire()
    })

    const held = holder.newLock('u1')
    await held.lock(never, () => {}) // lets go only when the test says
    const waiting = waiter.newLock('u1').lock(never, () => {})
    const request = await within(asked.promise, 3_000, 'requestRelease on the holder')
    expect(request.cause).toBe('remote-waiter')
    expect(request.waiter).toBe(await waiterLease.promise)
    expect(request.reason).toContain(`lease ${request.waiter}`)

    await within(reported.promise, 3_000, 'lockWaiting')
    expect(reports[0]?.id).toBe('u1')
    expect(reports[0]?.waitingOn).toBe('queue-entry')
    expect(reports[0]?.holder).toBe(await holderLease.promise)
    expect(reports[0]?.waitedMs).toBeGreaterThanOrEqual(1_000)
    await held.unlock()
    await within(waiting, 3_000, 'the waiter holds')
    expect(reports).toHaveLength(1)
  })
})

describe('lockWaiting, for many waits at once', () => {
  it('each of 100 lock() calls waiting between 1 s and their timeout is reported once, at about 1 s', async () => {
    const locker = newLocker({
      prefix: uniquePrefix('wait-report-many'),
      acquireLockTimeout: 5_000,
    })
    const ids = Array.from({ length: 100 }, (_, i) => `u${i}`)
    const held = await Promise.all(
      ids.map(async (id) => {
        const lock = locker.newLock(id)
        await lock.lock(never, () => {})
        return lock
      }),
    )
    const reported = new Map<string, number>()
    const waited: number[] = []
    const all = signal()
    locker.on('lockWaiting', ({ id, waitedMs }) => {
      waited.push(waitedMs)
      reported.set(id, (reported.get(id) ?? 0) + 1)
      if (reported.size === ids.length) all.fire()
    })
    // Behind a request of this process: they wait in the local queue until the test unlocks.
    // They come one by one, from timers, as requests do: the event loop's clock then lags the
    // wall clock a little when each starts (the report used to be skipped for some of them).
    const waiting = ids.map(async (id, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 3))
      const lock = locker.newLock(id)
      await lock.lock(never, () => {})
      return lock
    })
    for (const wait of waiting) wait.catch(() => {}) // a failed test closes the locker
    await within(all.promise, 3_500, 'lockWaiting for all 100').catch((error: Error) => {
      throw new Error(`${error.message}: ${reported.size} of them reported`)
    })
    await Promise.all(held.map((lock) => lock.unlock()))
    const locks = await within(Promise.all(waiting), 5_000, 'every waiter holds')
    await Promise.all(locks.map((lock) => lock.unlock()))
    expect([...reported.values()].every((count) => count === 1)).toBe(true)
    // At about a second (a timer may fire a little early by the wall clock), not at the timeout.
    expect(Math.min(...waited)).toBeGreaterThanOrEqual(900)
    expect(Math.max(...waited)).toBeLessThan(2_500)
  })
})

describe('the debug log', () => {
  it('prints revisions as numbers, not as BigInt literals (2n)', async () => {
    const lines = captureLog('lock')
    const locker = newLocker({ prefix: uniquePrefix('rev-format') })
    const lock = locker.newLock('u1')
    await lock.lock(never, () => {})
    const held = await within(lines.waitFor('held by'), 2_000, 'the held line')
    lines.stop()
    await lock.unlock()
    expect(held).toMatch(/\(rev \d+\)/)
    expect(held).not.toMatch(/\d+n\b/)
  })
})

describe('a lock() that waits on etcd itself', () => {
  it('is reported as waiting on etcd, naming no holder', async () => {
    const nobody = `127.0.0.1:${await freePort()}`
    const locker = newLocker({ prefix: uniquePrefix('wait-etcd'), grantTimeout: 5_000 }, [nobody])
    const reported = signal<{ waitingOn: string; holder: string | undefined }>()
    locker.on('lockWaiting', (info) => reported.fire(info))
    const attempt = locker.newLock('u1').lock(never, () => {})
    attempt.catch(() => {}) // rejects once grantTimeout passes; the report is what is tested
    const info = await within(reported.promise, 3_000, 'lockWaiting')
    expect(info).toEqual({
      id: 'u1',
      waitedMs: expect.any(Number),
      waitingOn: 'etcd',
      holder: undefined,
    })
  })
})
