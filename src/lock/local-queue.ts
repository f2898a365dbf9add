import { onAbort, type StopSignal } from '../util/abort.js'

/**
 * Protocol step 1: the requests of this process for one upload, first come first served. Only
 * the head talks to etcd; two requests of one process would otherwise share one session key.
 */
export class LocalQueue<T> {
  /** The head: the item whose turn it is. Most uploads have one request of this process at a time. */
  private first: T | undefined
  /**
   * The items behind the head, in order, each with what gives it its turn: made for a second
   * item only (an array and an entry for every held lock or waiter would be about 130 bytes).
   */
  private behind: Array<{ item: T; takeTurn: () => void }> | undefined

  get size(): number {
    return (this.first === undefined ? 0 : 1) + (this.behind?.length ?? 0)
  }

  get head(): T | undefined {
    return this.first
  }

  /**
   * Joins the queue and resolves once `item` is at its head. When `signal` aborts first, `item`
   * leaves the queue and the promise rejects with `signal.reason`.
   */
  waitTurn(item: T, signal: StopSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason)
    if (this.first === undefined) {
      this.first = item
      return Promise.resolve()
    }
    return new Promise<void>((resolve, reject) => {
      const stopListening = onAbort(signal, () => {
        if (this.first === item) return // its turn came first; the caller handles the abort
        this.remove(item)
        reject(signal.reason)
      })
      const entry = {
        item,
        takeTurn: () => {
          stopListening()
          resolve()
        },
      }
      if (this.behind === undefined) this.behind = [entry]
      else this.behind.push(entry)
    })
  }

  /** Removes `item`; when it was the head, the next item's turn comes. */
  leave(item: T): void {
    this.remove(item)
  }

  private remove(item: T): void {
    if (this.first === item) {
      this.first = undefined
      this.giveTurn()
      return
    }
    const behind = this.behind
    const index = behind?.findIndex((entry) => entry.item === item) ?? -1
    if (behind === undefined || index < 0) return
    behind.splice(index, 1)
    if (behind.length === 0) this.behind = undefined
  }

  /** The head left: the first item behind it becomes the head, and its turn comes. */
  private giveTurn(): void {
    const next = this.behind?.shift()
    if (next === undefined) return
    if (this.behind?.length === 0) this.behind = undefined
    this.first = next.item
    next.takeTurn()
  }
}
