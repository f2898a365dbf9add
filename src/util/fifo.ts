/**
 * A first-in first-out list with O(1) takes from the front: taken items are dropped in bulk
 * (when the list empties, or once they are more than half of it and over 1 024), not one
 * `Array.shift()` at a time, which copies the rest.
 */
export class Fifo<T> {
  private items: T[] = []
  private head = 0

  /** Items not taken yet. */
  get length(): number {
    return this.items.length - this.head
  }

  push(item: T): void {
    this.items.push(item)
  }

  /** The oldest item not taken yet, left in place. */
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined
  }

  /** Takes the oldest item off. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.head += 1
    if (this.head === this.items.length) {
      this.clear()
    } else if (this.head > 1_024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head)
      this.head = 0
    }
    return item
  }

  clear(): void {
    this.items.length = 0
    this.head = 0
  }
}
