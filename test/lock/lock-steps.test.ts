/**
 * lock() runs as steps called back one after the other (no async function kept per waiter). A
 * step must never leave the request half-done: what one throws rejects lock() after the usual
 * give-up (lockFailed), never becomes an unhandled rejection, and a hold's end inside its own
 * lockAcquired listener leaves no local queue behind. Found by review of that change.
 */
import type { Namespace } from 'etcd3'
import { describe, expect, it } from 'vitest'
import { LocalQueue } from '../../src/lock/local-queue.js'
import { LONG_WAIT_MS, type LockContext, LockRequest } from '../../src/lock/lock-request.js'
import { DeadlineQueue } from '../../src/util/deadline-queue.js'
import { newLocker, uniquePrefix } from '../harness/index.js'

const never = () => new AbortController().signal

/** A context whose session() throws instead of rejecting: a bug in a step, injected. */
function throwingContext(events: string[]): LockContext {
  const queue = new LocalQueue<LockRequest>()
  return {
    client: {} as Namespace,
    acquireLockTimeout: 5_000,
    waitReports: new DeadlineQueue(LONG_WAIT_MS, (request) => request.waitReportDue()),
    waitTimeouts: new DeadlineQueue(5_000, (request) => request.waitTimedOut()),
    closing: new AbortController().signal,
    session: () => {
      throw new Error('boom: session() threw')
    },
    localQueue: () => queue,
    retention: { take: async () => undefined } as unknown as LockContext['retention'],
    watches: { touch() {} } as unknown as LockContext['watches'],
    limit: {} as LockContext['limit'],
    forgetQueue() {},
    emit: ((event: string) => {
      events.push(event)
    }) as LockContext['emit'],
  }
}

/** `'resolved'`, `'rejected'`, or `'never settled'` after `ms`. */
async function outcome(settling: Promise<void>, ms = 1_500): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('never settled'), ms)
  })
  const result = await Promise.race([
    settling.then(
      () => 'resolved',
      () => 'rejected',
    ),
    timeout,
  ])
  clearTimeout(timer)
  return result
}

/** The unhandled rejections while `run` runs (and a turn after it). */
async function collectUnhandled(run: () => Promise<void>): Promise<unknown[]> {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  try {
    await run()
    await new Promise((resolve) => setTimeout(resolve, 50))
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
  return unhandled
}

describe('lock() as steps', () => {
  it('a step that throws rejects lock() after lockFailed, with nothing unhandled', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const events: string[] = []
      const request = new LockRequest(throwingContext(events), {
        id: 'u',
        queuePrefix: 'P/u/',
        holding: undefined,
      })
      const settled = request
        .lock(never(), () => {})
        .then(
          () => 'resolved',
          (error: Error) => error.message,
        )
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve('never settled'), 1_500)
      })
      expect(await Promise.race([settled, timeout])).toBe('boom: session() threw')
      clearTimeout(timer)
      expect(events).toEqual(['lockFailed'])
      // An unhandled rejection is reported after the microtasks of its turn.
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  for (const [name, over] of [
    ['session() rejects', { session: () => Promise.reject(Object.create(null)) }],
    [
      'retention.take() rejects',
      {
        retention: {
          take: () => Promise.reject(Object.create(null)),
        } as unknown as LockContext['retention'],
      },
    ],
  ] as const) {
    it(`${name} with a value String() cannot convert: lock() rejects after lockFailed, nothing unhandled`, async () => {
      const events: string[] = []
      let result = ''
      const unhandled = await collectUnhandled(async () => {
        const context = { ...throwingContext(events), ...over }
        const request = new LockRequest(context, {
          id: 'u',
          queuePrefix: 'P/u/',
          holding: undefined,
        })
        result = await outcome(request.lock(never(), () => {}))
      })
      expect({ result, events, unhandled: unhandled.map(String) }).toEqual({
        result: 'rejected',
        events: ['lockFailed'],
        unhandled: [],
      })
    })
  }

  it('a step that throws once held, before lock() resolved, rejects after lockFailed and holds nothing', async () => {
    const events: string[] = []
    const queue = new LocalQueue<LockRequest>()
    const session = {
      signal: new AbortController().signal,
      isTrusted: true,
      isLost: false,
      get leaseHex(): string {
        throw new Error('boom: a bug once held')
      },
    }
    const kept = {
      entry: { session, revision: 1n, key: 'P/u/1', release: async () => {} },
      watch: { stop: async () => {} },
    }
    const context = {
      ...throwingContext(events),
      localQueue: () => queue,
      retention: { take: async () => kept } as unknown as LockContext['retention'],
    }
    const slot = { id: 'u', queuePrefix: 'P/u/', holding: undefined as LockRequest | undefined }
    const request = new LockRequest(context, slot)
    const result = await outcome(request.lock(never(), () => {}))
    expect({
      result,
      events,
      holds: request.holds,
      queued: queue.size,
      slot: slot.holding,
    }).toEqual({
      result: 'rejected',
      events: ['lockFailed'],
      holds: false,
      queued: 0,
      slot: undefined,
    })
  })

  it('a hold ended inside its own lockAcquired listener leaves no local queue behind', async () => {
    const locker = newLocker({ prefix: uniquePrefix('steps'), ttl: 10 }) // retainLocks: default
    const queues = (locker as unknown as { queues: Map<string, unknown> }).queues
    const locks = new Map<string, ReturnType<typeof locker.newLock>>()
    locker.on('lockAcquired', ({ id }) => {
      void locks.get(id)?.unlock() // done with it at once: the key is kept, nobody waits
    })
    for (let i = 0; i < 20; i++) {
      const lock = locker.newLock(`u${i}`)
      locks.set(`u${i}`, lock)
      await lock.lock(never(), () => {})
      expect(lock.heldEntry()).toBeUndefined()
    }
    expect(locker.retainedLocks).toBe(20)
    // Each upload's local queue is dropped once empty.
    expect(queues.size).toBe(0)
  })
})
