/** Small helpers to wait on promises and timers without ever outliving an AbortSignal. */

/** The listeners {@link onAbort} added to each signal, behind one listener of the signal's own. */
const fanOuts = new WeakMap<AbortSignal, Set<(signal: AbortSignal) => void>>()

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
  // The same listener added twice is called twice and removed one at a time: a second one goes in
  // as a function of its own, and so does one that takes arguments (the fan-out passes the
  // signal, which `resolve` or a bound `abort` would take). Most need none.
  const call = listener.length === 0 && !listeners.has(listener) ? listener : () => listener()
  listeners.add(call)
  let added = true
  // Once only: the listener itself may be added again later, and this must not remove that.
  return () => {
    if (added) listeners.delete(call)
    added = false
  }
}

/**
 * {@link onAbort} for a listener that is given to `signal` once, and that removes itself with
 * {@link stopListeningForAbort}: no function is made to remove it (a process may have
 * thousands of waits, each listening to several signals).
 */
export function listenForAbort(signal: AbortSignal, listener: (signal: AbortSignal) => void): void {
  if (!signal.aborted) fanOutOf(signal).add(listener)
}

/** Removes a listener {@link listenForAbort} added; does nothing when it is not there. */
export function stopListeningForAbort(
  signal: AbortSignal,
  listener: (signal: AbortSignal) => void,
): void {
  fanOuts.get(signal)?.delete(listener)
}

/** The set behind `signal`'s one listener of ours, made (and that listener added) on first use. */
function fanOutOf(signal: AbortSignal): Set<(signal: AbortSignal) => void> {
  const known = fanOuts.get(signal)
  if (known !== undefined) return known
  const listeners = new Set<(signal: AbortSignal) => void>()
  fanOuts.set(signal, listeners)
  signal.addEventListener('abort', () => runFanOut(signal, listeners), { once: true })
  return listeners
}

/**
 * Calls the listeners of `signal`'s fan-out (with the signal), once it has aborted. The set stays
 * known until they have run, so that one of them can still remove a later one.
 */
function runFanOut(signal: AbortSignal, listeners: Set<(signal: AbortSignal) => void>): void {
  for (const call of [...listeners]) {
    if (!listeners.delete(call)) continue // removed by a listener that ran before it
    try {
      call(signal)
    } catch (error) {
      queueMicrotask(() => {
        throw error
      })
    }
  }
  fanOuts.delete(signal)
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
 * One AbortController that aborts when any linked signal aborts (or {@link abort} is called),
 * with that cause's reason. `dispose()` detaches it from the sources (their listeners would pile
 * up on a long-lived signal such as a session's).
 */
export class LinkedAbort {
  private readonly controller = new AbortController()
  /** The signals linked, each with the reason to abort with (`undefined`: the signal's own). */
  private readonly sources: Array<{ signal: AbortSignal; reason: unknown }> = []
  // One listener for every source, not closures per link: a process may have thousands waiting.
  private readonly onSourceAbort = (source: AbortSignal) => {
    const linked = this.sources.find(({ signal }) => signal === source)
    if (linked !== undefined)
      this.abort(linked.reason === undefined ? source.reason : linked.reason)
  }

  constructor() {
    // Its fan-out is run by abort() below, not by a listener on the signal: an EventTarget with a
    // listener costs several hundred bytes more, for every request waiting.
    fanOuts.set(this.controller.signal, new Set())
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  /**
   * Also abort when `source` aborts, with `reason` (default: the source's own reason). A source
   * linked already keeps the reason it was linked with first.
   */
  link(source: AbortSignal, reason?: unknown): void {
    if (source.aborted) {
      this.abort(reason === undefined ? source.reason : reason)
      return
    }
    if (this.controller.signal.aborted) return
    if (this.sources.some((linked) => linked.signal === source)) return
    this.sources.push({ signal: source, reason })
    listenForAbort(source, this.onSourceAbort)
  }

  abort(reason: unknown): void {
    const signal = this.controller.signal
    if (!signal.aborted) {
      this.controller.abort(reason)
      const listeners = fanOuts.get(signal)
      if (listeners !== undefined) runFanOut(signal, listeners)
    }
    this.dispose()
  }

  dispose(): void {
    for (const { signal } of this.sources.splice(0))
      stopListeningForAbort(signal, this.onSourceAbort)
  }
}
