import { throwAlone } from './throw-alone.js'

/**
 * What a {@link DeadlineQueue} keeps of each item: its start and its links, as fields of the item
 * itself (no node object, no timer per item).
 */
export interface DeadlineItem {
  /** When its wait began, on the monotonic clock (`performance.now()`): it is due `delayMs` later. */
  readonly startedAt: number
  /** The queue it is in, and its neighbours there: set by the queue only. */
  deadlineQueue: object | undefined
  deadlinePrev: DeadlineItem | undefined
  deadlineNext: DeadlineItem | undefined
}

/**
 * Items each due a fixed `delayMs` after its `startedAt`, behind one timer. A process may have
 * thousands of lock requests waiting, and a timer each (a `Timeout` with its arguments) is about
 * 200 bytes; with one delay for all, the items come due in the order they started, so the queue
 * is a list in that order and its one timer is for its head.
 *
 * Due is by the clock, not by the timer: a timer may fire a little before `performance.now()`
 * says its time has come, and then it is set again for the rest.
 */
export class DeadlineQueue<T extends DeadlineItem> {
  private head: T | undefined
  private tail: T | undefined
  private timer: NodeJS.Timeout | undefined
  /** When the timer set now fires (`performance.now()` ms). */
  private timerAt = 0

  constructor(
    /** How long after its start an item is due (ms). */
    readonly delayMs: number,
    /** Told of each item as it comes due, once; it has left the queue by then. */
    private readonly due: (item: T) => void,
  ) {}

  /** Whether `item` is in this queue. */
  has(item: T): boolean {
    return item.deadlineQueue === this
  }

  /** Adds `item` (not in any queue), due `delayMs` after its `startedAt`. */
  add(item: T): void {
    if (item.deadlineQueue !== undefined) throw new Error('the item is in a deadline queue already')
    // After the last item that started no later: at the tail, unless the item's start is older.
    let before = this.tail as DeadlineItem | undefined
    while (before !== undefined && before.startedAt > item.startedAt) before = before.deadlinePrev
    const after = before === undefined ? this.head : before.deadlineNext
    item.deadlineQueue = this
    item.deadlinePrev = before
    item.deadlineNext = after
    if (after === undefined) this.tail = item
    else after.deadlinePrev = item
    if (before !== undefined) before.deadlineNext = item
    else {
      this.head = item
      this.setTimer()
    }
  }

  /** Removes `item` if it is in this queue; it will not be told. */
  remove(item: T): void {
    if (!this.has(item)) return
    const { deadlinePrev: before, deadlineNext: after } = item
    if (before === undefined) this.head = after as T | undefined
    else before.deadlineNext = after
    if (after === undefined) this.tail = before as T | undefined
    else after.deadlinePrev = before
    item.deadlineQueue = undefined
    item.deadlinePrev = undefined
    item.deadlineNext = undefined
    // The timer of an old head stays: it finds the next head not due yet and is set for it.
    if (this.head === undefined) this.clearTimer()
  }

  /** The timer's: tells every item due now, in order, then sets it for the next one. */
  fire(): void {
    this.timer = undefined
    const now = performance.now()
    for (let item = this.head; item !== undefined; item = this.head) {
      if (item.startedAt + this.delayMs > now) break
      this.remove(item)
      try {
        this.due(item)
      } catch (error) {
        throwAlone(error) // the other items are still told
      }
    }
    this.setTimer()
  }

  /** Sets the timer for the head's time, unless one is set for that time or earlier. */
  private setTimer(): void {
    const head = this.head
    if (head === undefined) return
    const at = head.startedAt + this.delayMs
    if (this.timer !== undefined && this.timerAt <= at) return
    clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(fireQueue, Math.max(0, at - performance.now()), this)
  }

  private clearTimer(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}

function fireQueue(queue: { fire(): void }): void {
  queue.fire()
}
