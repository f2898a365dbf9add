/** Small helpers to wait on promises and timers without ever outliving an AbortSignal. */

/** The listeners {@link onAbort} added to each signal, behind one listener of the signal's own. */
const fanOuts = new WeakMap<AbortSignal, Set<() => void>>()

/**
 * Calls `listener` once when `signal` aborts (not if it has already); returns what removes it.
 * Adding and removing cost the same however many listeners the signal has: an EventTarget's own
 * `removeEventListener` walks all of them, and a session's signal has one per lock held, kept
 * or waited for (with 10 000 locks, a lock cycle spent most of its time there). Listeners run
 * in the order they were added; one removed while others run is not called, one added then is
 * not either, and one that throws does not stop the rest (its error is thrown on its own, as
 * an EventTarget's listener's would be).
 */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) return noop
  const listeners = fanOutOf(signal)
  // A function of its own: the same listener added twice is called twice, removed one at a time.
  const call = () => listener()
  listeners.add(call)
  return () => {
    listeners.delete(call)
  }
}

/** The set behind `signal`'s one listener of ours, made (and that listener added) on first use. */
function fanOutOf(signal: AbortSignal): Set<() => void> {
  const known = fanOuts.get(signal)
  if (known !== undefined) return known
  const listeners = new Set<() => void>()
  fanOuts.set(signal, listeners)
  signal.addEventListener(
    'abort',
    () => {
      fanOuts.delete(signal)
      for (const call of [...listeners]) {
        if (!listeners.delete(call)) continue // removed by a listener that ran before it
        try {
          call()
        } catch (error) {
          queueMicrotask(() => {
            throw error
          })
        }
      }
    },
    { once: true },
  )
  return listeners
}

const noop = () => {}

/** Resolves with `promise`, or rejects with `signal.reason` as soon as the signal aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const remove = onAbort(signal, () => reject(signal.reason))
    promise.then(
      (value) => {
        remove()
        resolve(value)
      },
      (error: unknown) => {
        remove()
        reject(error)
      },
    )
  })
}

/** Waits `ms`, or rejects with `signal.reason` when it aborts first. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      remove()
      resolve()
    }, ms)
    const remove = onAbort(signal, () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })
}

/** Resolves with `promise`, or with `undefined` once `ms` have passed; never rejects. */
export function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      () => {
        clearTimeout(timer)
        resolve(undefined)
      },
    )
  })
}

/**
 * One AbortController that aborts after `timeoutMs` or when any linked signal aborts, with that
 * cause's reason. `dispose()` detaches it from the sources (their listeners would pile up on a
 * long-lived signal such as a session's).
 */
export class LinkedAbort {
  private readonly controller = new AbortController()
  private readonly timer: NodeJS.Timeout | undefined
  private readonly detach: Array<() => void> = []

  constructor(timeoutMs?: number, timeoutReason?: unknown) {
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => this.abort(timeoutReason), timeoutMs)
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Also abort when `source` aborts, with `reason` (default: the source's own reason). */
  link(source: AbortSignal, reason?: unknown): void {
    const why = () => (reason === undefined ? source.reason : reason)
    if (source.aborted) {
      this.abort(why())
      return
    }
    this.detach.push(onAbort(source, () => this.abort(why())))
  }

  abort(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason)
    this.dispose()
  }

  dispose(): void {
    clearTimeout(this.timer)
    for (const undo of this.detach.splice(0)) undo()
  }
}
