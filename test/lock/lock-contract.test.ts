/**
 * The `Lock` contract `@tus/server` relies on, run against its own `MemoryLocker` and against
 * `Etcd3Locker` (one instance, and two on one prefix), so the two stay interchangeable.
 */
import { MemoryLocker } from '@tus/server'
import { ERRORS, type Locker } from '@tus/utils'
import { describe, expect, it } from 'vitest'
import { newLocker, signal, uniquePrefix, within } from '../harness/index.js'

const TIMEOUT_MS = 500

/** Two lockers standing for two instances (the same one where there is only one). */
type Deployment = (acquireLockTimeout: number) => [Locker, Locker]

const deployments: Array<[string, Deployment]> = [
  [
    'MemoryLocker',
    (acquireLockTimeout) => {
      const locker = new MemoryLocker({ acquireLockTimeout })
      return [locker, locker]
    },
  ],
  [
    'Etcd3Locker, one instance',
    (acquireLockTimeout) => {
      const locker = newLocker({ prefix: uniquePrefix('contract'), ttl: 10, acquireLockTimeout })
      return [locker, locker]
    },
  ],
  [
    'Etcd3Locker, two instances',
    (acquireLockTimeout) => {
      const prefix = uniquePrefix('contract2')
      return [
        newLocker({ prefix, ttl: 10, acquireLockTimeout }),
        newLocker({ prefix, ttl: 10, acquireLockTimeout }),
      ]
    },
  ],
]

const never = () => new AbortController().signal

describe.each(deployments)('the Lock contract: %s', (_name, deploy) => {
  it('lock() and unlock() in turn on one Lock, again and again', async () => {
    const [a, b] = deploy(TIMEOUT_MS)
    const lock = a.newLock('upload')
    for (let i = 0; i < 3; i++) {
      await within(
        lock.lock(never(), () => {}),
        2_000,
        `lock() #${i + 1}`,
      )
      await lock.unlock()
    }
    // Nothing left held: another Lock of the upload takes it at once.
    const other = b.newLock('upload')
    await within(
      other.lock(never(), () => {}),
      2_000,
      'another Lock after the last unlock()',
    )
    await other.unlock()
  })

  // tus-node-server's own locker test "will return a lock timeout error".
  it('a second lock() on a Lock that holds asks the holder, then times out with ERR_LOCK_TIMEOUT', async () => {
    const [a] = deploy(TIMEOUT_MS)
    const lock = a.newLock('upload')
    const asked = signal()
    await lock.lock(never(), () => asked.fire())
    const started = performance.now()
    const second = lock.lock(never(), () => {
      throw new Error('the waiting request is not the holder')
    })
    await expect(within(second, TIMEOUT_MS + 2_000, 'second lock()')).rejects.toBe(
      ERRORS.ERR_LOCK_TIMEOUT,
    )
    expect(performance.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 10)
    expect(asked.fired()).toBe(true)
    await lock.unlock()
  })

  // tus-node-server's "will acquire a lock by notifying another to release it".
  it('a holder asked to release that unlocks hands the upload to the waiter', async () => {
    const [a, b] = deploy(5_000)
    const holder = a.newLock('upload')
    await holder.lock(never(), async () => {
      await holder.unlock()
    })
    const waiter = b.newLock('upload')
    await within(
      waiter.lock(never(), () => {}),
      3_000,
      'the waiter holds',
    )
    await waiter.unlock()
  })

  it('a holder asked to release as its lock() resolves, that unlocks at once, hands the upload to the waiter', async () => {
    const [a, b] = deploy(5_000)
    const holder = a.newLock('upload')
    // The waiter comes while the holder's lock() is still on its way: the holder is asked as
    // soon as it holds, before its lock() has resolved, and unlocks from requestRelease itself.
    const released = new Set<string>()
    const holding = holder.lock(never(), () => {
      released.add('holder')
      void holder.unlock()
    })
    const waiter = b.newLock('upload')
    // Two instances may enqueue in either order: the first to hold is asked, and lets go.
    const waiting = waiter.lock(never(), () => {
      released.add('waiter')
      void waiter.unlock()
    })
    await within(Promise.all([holding, waiting]), 3_000, 'each holds in turn')
    expect(released.size).toBe(1)
    // The other one holds still (MemoryLocker refuses to release an upload nobody holds).
    await (released.has('holder') ? waiter : holder).unlock()
  })

  it('a second lock() while the first waits: each holds in turn, one unlock() each', async () => {
    const [a, b] = deploy(5_000)
    const holder = b.newLock('upload')
    await holder.lock(never(), () => {})
    const lock = a.newLock('upload')
    const order: string[] = []
    const first = lock.lock(never(), () => {}).then(() => order.push('first'))
    const second = lock.lock(never(), () => {}).then(() => order.push('second'))
    await holder.unlock()
    await within(Promise.race([first, second]), 3_000, 'one of them holds')
    expect(order).toHaveLength(1)
    await lock.unlock()
    await within(Promise.all([first, second]), 3_000, 'the other holds')
    expect(order).toHaveLength(2)
    await lock.unlock()
    const after = b.newLock('upload')
    await within(
      after.lock(never(), () => {}),
      3_000,
      'free after two unlock() calls',
    )
    await after.unlock()
  })

  it('an abort while waiting rejects with ERR_LOCK_TIMEOUT and leaves the holder holding', async () => {
    const [a, b] = deploy(5_000)
    const holder = a.newLock('upload')
    await holder.lock(never(), () => {})
    const controller = new AbortController()
    const waiting = b.newLock('upload').lock(controller.signal, () => {})
    setTimeout(() => controller.abort(), 100)
    await expect(within(waiting, 2_000, 'aborted lock()')).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT)
    const late = b.newLock('upload')
    await expect(
      within(
        late.lock(AbortSignal.timeout(200), () => {}),
        2_000,
        'lock() while held',
      ),
    ).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT)
    await holder.unlock()
  })
})
