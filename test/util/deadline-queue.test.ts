/**
 * The deadline queue behind every waiting lock()'s report and acquireLockTimeout: one timer for
 * all of a locker's waits. A wait told early would report or time out before its time; one told
 * twice, or after it ended, would time out a request that holds; a timer left behind would keep
 * the process from exiting.
 */
import { describe, expect, it } from 'vitest'
import { type DeadlineItem, DeadlineQueue } from '../../src/util/deadline-queue.js'
import { hearingUncaught } from '../harness/uncaught.js'

class Item implements DeadlineItem {
  deadlineQueue: object | undefined
  deadlinePrev: DeadlineItem | undefined
  deadlineNext: DeadlineItem | undefined
  toldAt: number | undefined
  constructor(
    readonly name: string,
    readonly startedAt = performance.now(),
  ) {}
}

const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

/** A queue that records who it told, and a promise of the first `count` told. */
function recording(delayMs: number, count: number) {
  const told: Item[] = []
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  const queue = new DeadlineQueue<Item>(delayMs, (item) => {
    item.toldAt = performance.now()
    told.push(item)
    if (told.length === count) done()
  })
  const within = (ms: number) =>
    Promise.race([
      all,
      new Promise<void>((_, reject) =>
        setTimeout(() => reject(new Error(`only ${told.length} told`)), ms),
      ),
    ])
  return { queue, told, within }
}

describe('DeadlineQueue', () => {
  it('tells each item once, in the order of their starts, never before its start + delay by the clock', async () => {
    const { queue, told, within } = recording(40, 4)
    const now = performance.now()
    const items = [
      new Item('b', now - 10),
      new Item('d', now + 5),
      new Item('a', now - 20), // older than those in the queue: goes first
      new Item('c', now),
    ]
    for (const item of items) queue.add(item)
    await within(2_000)
    expect(told.map((item) => item.name)).toEqual(['a', 'b', 'c', 'd'])
    for (const item of told) {
      expect(item.toldAt).toBeGreaterThanOrEqual(item.startedAt + 40)
      expect(queue.has(item)).toBe(false)
    }
  })

  it('a removed item is not told; the others still are, and an item can join again', async () => {
    const { queue, told, within } = recording(30, 2)
    const [a, b, c] = [new Item('a'), new Item('b'), new Item('c')]
    queue.add(a)
    queue.add(b)
    queue.add(c)
    queue.remove(a) // the head, whose time the timer is set for
    queue.remove(b)
    queue.remove(b) // again: nothing
    expect(queue.has(b)).toBe(false)
    queue.add(b) // the same item, removed, joins again: in its place by its start, before c
    await within(2_000)
    expect(told.map((item) => item.name)).toEqual(['b', 'c'])
  })

  it('an item older than the head is told at its own time, not at the head’s', async () => {
    const { queue, told, within } = recording(1_000, 2)
    const now = performance.now()
    const head = new Item('head', now) // due in 1 s: the timer is set for it
    const older = new Item('older', now - 990) // due in 10 ms
    queue.add(head)
    queue.add(older)
    await within(3_000)
    expect(told.map((item) => item.name)).toEqual(['older', 'head'])
    // Told before the head's time: a timer left for the head would have told both at once.
    expect(older.toldAt).toBeLessThan(head.startedAt + 1_000)
    expect(head.toldAt).toBeGreaterThanOrEqual(head.startedAt + 1_000)
  })

  it('an item in a queue cannot join another (its links are the queue’s)', () => {
    const first = new DeadlineQueue<Item>(10_000, () => {})
    const second = new DeadlineQueue<Item>(10_000, () => {})
    const item = new Item('a')
    first.add(item)
    expect(() => second.add(item)).toThrow(/in a deadline queue already/)
    second.remove(item) // not in it: nothing
    expect(first.has(item)).toBe(true)
    first.remove(item)
  })

  it('one timer for a thousand items, and none once the queue is empty', async () => {
    const before = timers()
    const queue = new DeadlineQueue<Item>(60_000, () => {})
    const items = Array.from({ length: 1_000 }, (_, i) => new Item(String(i)))
    for (const item of items) queue.add(item)
    expect(timers()).toBe(before + 1)
    for (const item of items) queue.remove(item)
    expect(timers()).toBe(before)
  })

  it('a listener that throws does not keep the other items from being told; its error is thrown alone', async () => {
    // Heard by the test alone: the test runner would report the error as a failure.
    await hearingUncaught(async (uncaught) => {
      const told: string[] = []
      let done: () => void = () => {}
      const all = new Promise<void>((resolve) => {
        done = resolve
      })
      const queue = new DeadlineQueue<Item>(10, (item) => {
        told.push(item.name)
        if (item.name === 'a') throw new Error('listener bug')
        done()
      })
      const now = performance.now()
      queue.add(new Item('a', now))
      queue.add(new Item('b', now))
      await all
      expect(await uncaught.next()).toEqual(new Error('listener bug'))
      await new Promise((resolve) => setImmediate(resolve))
      expect(told).toEqual(['a', 'b'])
      expect(uncaught.all).toEqual([new Error('listener bug')])
    })
  })
})
