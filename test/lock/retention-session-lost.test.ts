/**
 * Issue 19, item 5: a session lost while a kept key is checked (the read before it is handed
 * out) makes lock() reject with SessionLostError, like every lock() whose session is lost before
 * it holds; it must not resolve and then be told `session-lost` at once.
 */
import { describe, expect, it } from 'vitest'
import { type Etcd3Locker, SessionLostError } from '../../src/index.js'
import { lockerBehindProxy, uniquePrefix, within } from '../harness/index.js'

const never = () => new AbortController().signal

/** The local deadline of the locker's live session (performance.now() time). */
function sessionDeadline(locker: Etcd3Locker): number {
  const keeper = (locker as unknown as { keeper: { live?: { deadline: number } } }).keeper
  const deadline = keeper.live?.deadline
  if (deadline === undefined) throw new Error('the locker has no live session')
  return deadline
}

/**
 * One try: a kept key whose watch etcd has not confirmed, taken just before the session's
 * deadline, while etcd's answers are held (so the take reads, and the read is in flight when
 * the deadline passes). `undefined` when this try's timer fired too late to mean anything (a
 * loaded machine): the take then found the session untrusted before reading.
 */
async function takeAsTheSessionIsLost(): Promise<unknown> {
  const { proxy, locker } = await lockerBehindProxy({
    prefix: uniquePrefix('kept-lost'),
    ttl: 2,
    retainLocks: 60_000,
  })
  const first = locker.newLock('u')
  await first.lock(never(), () => {})
  await first.unlock() // kept, with a watch that etcd has not confirmed yet
  proxy.cut('hold-answers') // ...and will not be heard to: the take must read first
  expect(locker.retainedLocks).toBe(1)
  const lost = new Promise<void>((resolve) => locker.once('sessionLost', () => resolve()))

  // The read (500 ms deadline) is in flight when the session's deadline passes.
  const deadline = sessionDeadline(locker)
  await new Promise((resolve) => setTimeout(resolve, deadline - performance.now() - 250))
  if (performance.now() > deadline - 100) return undefined
  const told: string[] = []
  const second = locker.newLock('u')
  const taking = second
    .lock(never(), () => {
      told.push('requestRelease')
    })
    .then(
      () => 'resolved',
      (error: unknown) => error,
    )
  await within(lost, 3_000, 'the session is lost')
  proxy.restore() // the read's answer ("the key is ours") arrives after the loss
  const outcome = await within(taking, 3_000, 'lock()')
  await second.unlock()
  expect(told).toEqual([])
  return outcome
}

describe('a kept key whose session is lost while it is checked', () => {
  it('lock() rejects with SessionLostError', async () => {
    let outcome: unknown
    for (let attempt = 0; attempt < 3 && outcome === undefined; attempt++) {
      outcome = await takeAsTheSessionIsLost()
    }
    expect(outcome, 'a timer fired too late to take before the deadline, 3 times').toBeDefined()
    expect(outcome).toBeInstanceOf(SessionLostError)
  }, 40_000)
})
