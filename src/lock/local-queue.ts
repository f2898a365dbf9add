import { onAbort, type StopSignal } from '../util/abort.js'

/**
 * Protocol step 1: the requests of this process for one upload, first come first served. Only
 * the head talks to etcd; two requests of one process would otherwise share one session key.
 */
export class LocalQueue<T> {
  /** `takeTurn` is dropped once called: a held lock need not keep its wait's signal alive. */
  private entries: Array<{ item: T; takeTurn: (() => void) | undefined }> = []

  get size(): number {
    return this.entries.length
  }

  get head(): T | undefined {
    return this.entries[0]?.item
  }

  /**
   * Joins the queue and resolves once `item` is at its head. When `signal` aborts first, `item`
   * leaves the queue and the promise rejects with `signal.reason`.
   */
  waitTurn(item: T, signal: StopSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason)
    return new Promise<void>((resolve, reject) => {
      let stopListening: (() => void) | undefined
      const entry = {
        item,
        takeTurn: () => {
          stopListening?.()
          resolve()
        },
      }
      if (this.entries.length === 0) {
        // Most uploads have one request of this process at a time: an array of one, not one
        // grown by push() to 16 places (about 130 bytes a held lock or waiter).
        this.entries = [entry]
        this.giveTurn()
        return
      }
      this.entries.push(entry)
      stopListening = onAbort(signal, () => {
        if (this.head === item) return // its turn came first; the caller handles the abort
        this.remove(item)
        reject(signal.reason)
      })
    })
  }

  /** Removes `item`; when it was the head, the next item's turn comes. */
  leave(item: T): void {
    this.remove(item)
  }

  private remove(item: T): void {
    const index = this.entries.findIndex((entry) => entry.item === item)
    if (index < 0) return
    this.entries.splice(index, 1)
    if (index === 0) this.giveTurn()
  }

  private giveTurn(): void {
    const head = this.entries[0]
    const takeTurn = head?.takeTurn
    if (head === undefined || takeTurn === undefined) return
    head.takeTurn = undefined
    takeTurn()
  }
}
