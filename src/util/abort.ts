/** Small helpers to wait on promises and timers without ever outliving an abort signal. */

import { throwAlone } from './throw-alone.js'

/**
 * What a wait listens to: an `AbortSignal`, or a {@link LinkedAbort} (which is its own, lighter
 * signal). Listen to it with {@link onAbort} or {@link listenForAbort}, never `addEventListener`.
 */
export interface StopSignal {
  readonly aborted: boolean
  readonly reason: unknown
}

/**
 * Who hears an abort without a closure of its own: an object whose `handleAbort` is called. A
 * process may have thousands of waits, and a closure with its context is about 100 bytes each.
 */
export interface AbortHandler {
  handleAbort(signal: StopSignal): void
}

/** A function called with the signal, or an {@link AbortHandler}. */
export type AbortListener = ((signal: StopSignal) => void) | AbortHandler

/**
 * The listeners {@link onAbort} added to an AbortSignal, behind one listener of the signal's own
 * ({@link runFanOut}, one function for every signal). Most signals are a request's, with one
 * listener: it is kept as it is, and a set is made only for a second.
 */
class FanOut {
  private one: AbortListener | undefined
  private many: Set<AbortListener> | undefined

  add(listener: AbortListener): void {
    if (this.many !== undefined) this.many.add(listener)
    else if (this.one === undefined) this.one = listener
    else if (this.one !== listener) {
      this.many = new Set([this.one, listener])
      this.one = undefined
    }
  }

  delete(listener: AbortListener): boolean {
    if (this.many !== undefined) return this.many.delete(listener)
    if (this.one !== listener) return false
    this.one = undefined
    return true
  }

  has(listener: AbortListener): boolean {
    return this.one === listener || (this.many?.has(listener) ?? false)
  }

  /** Its listeners now, in the order added. */
  list(): AbortListener[] {
    if (this.many !== undefined) return [...this.many]
    return this.one === undefined ? [] : [this.one]
  }
}

/**
 * The one listener of ours on every AbortSignal listened to: it finds the signal's fan-out, so
 * no function or bound object is made per signal (an EventTarget wraps an object listener in a
 * closure of its own). The fan-out stays known until its listeners have run, so that one of them
 * can still remove a later one.
 */
function runFanOut(this: AbortSignal, event: Event): void {
  // The event's target, or the signal it was called on: a polyfilled signal may dispatch an
  // event with no target (called on the signal, as an EventTarget calls its listeners).
  const signal = (event?.target ?? this) as AbortSignal
  const fanOut = fanOuts.get(signal)
  if (fanOut === undefined) return
  for (const listener of fanOut.list()) {
    if (!fanOut.delete(listener)) continue // removed by a listener that ran before it
    callListener(listener, signal)
  }
  fanOuts.delete(signal)
}

const fanOuts = new WeakMap<AbortSignal, FanOut>()

/**
 * Calls `listener` once when `signal` aborts (not if it has already); returns what removes it.
 * Adding and removing cost the same however many listeners the signal has: an EventTarget's own
 * `removeEventListener` walks all of them, and a session's signal has one per lock held, kept
 * or waited for (with 10 000 locks, a lock cycle spent most of its time there). Listeners run
 * in the order they were added; one removed while others run is not called, one added then is
 * not either, and one that throws does not stop the rest (its error is thrown on its own, as
 * an EventTarget's listener's would be).
 */
export function onAbort(signal: StopSignal, listener: () => void): () => void {
  if (signal.aborted) return noop
  // The same listener added twice is called twice and removed one at a time: a second one goes in
  // as a function of its own, and so does one that takes arguments (the fan-out passes the
  // signal, which `resolve` or a bound `abort` would take). Most need none.
  const call = listener.length === 0 && !isListening(signal, listener) ? listener : () => listener()
  listenForAbort(signal, call)
  let added = true
  // Once only: the listener itself may be added again later, and this must not remove that.
  return () => {
    if (added) stopListeningForAbort(signal, call)
    added = false
  }
}

/**
 * {@link onAbort} for a listener that is given to `signal` once, and that removes itself with
 * {@link stopListeningForAbort}: no function is made to remove it (a process may have
 * thousands of waits, each listening to several signals). An {@link AbortHandler} needs no
 * function at all.
 */
export function listenForAbort(signal: StopSignal, listener: AbortListener): void {
  if (signal.aborted) return
  if (signal instanceof LinkedAbort) signal.addListener(listener)
  else fanOutOf(signal as AbortSignal).add(listener)
}

/** Removes a listener {@link listenForAbort} added; does nothing when it is not there. */
export function stopListeningForAbort(signal: StopSignal, listener: AbortListener): void {
  if (signal instanceof LinkedAbort) signal.removeListener(listener)
  else fanOuts.get(signal as AbortSignal)?.delete(listener)
}

function isListening(signal: StopSignal, listener: AbortListener): boolean {
  if (signal instanceof LinkedAbort) return signal.hasListener(listener)
  return fanOuts.get(signal as AbortSignal)?.has(listener) ?? false
}

/** The fan-out behind `signal`'s one listener of ours, made (and that listener added) on first use. */
function fanOutOf(signal: AbortSignal): FanOut {
  const known = fanOuts.get(signal)
  if (known !== undefined) return known
  const fanOut = new FanOut()
  fanOuts.set(signal, fanOut)
  signal.addEventListener('abort', runFanOut, { once: true })
  return fanOut
}

/** Calls `listener`; what it throws is thrown on its own, and the other listeners still run. */
function callListener(listener: AbortListener, signal: StopSignal): void {
  try {
    if (typeof listener === 'function') listener(signal)
    else listener.handleAbort(signal)
  } catch (error) {
    throwAlone(error)
  }
}

const noop = () => {}

/** No sources yet: shared, never written to (a LinkedAbort replaces it when it links one). */
const EMPTY: unknown[] = []

/**
 * `list` with `items` after it, in a new array of exactly that size: push() and spreading grow
 * an array's store to 16 places or more at once, about 130 bytes for the two or three it holds.
 */
function appended<T>(list: readonly T[], ...items: T[]): T[] {
  const next = new Array<T>(list.length + items.length)
  for (let i = 0; i < list.length; i++) next[i] = list[i] as T
  for (let i = 0; i < items.length; i++) next[list.length + i] = items[i] as T
  return next
}

/** Resolves with `promise`, or rejects with `signal.reason` as soon as the signal aborts. */
export function abortable<T>(promise: Promise<T>, signal: StopSignal): Promise<T> {
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
export function delay(ms: number, signal: StopSignal): Promise<void> {
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
 * Aborts when any linked signal aborts (or {@link abort} is called), with that cause's reason.
 * `dispose()` detaches it from the sources (their listeners would pile up on a long-lived signal
 * such as a session's).
 *
 * It is its own signal ({@link StopSignal}), not an AbortController's: a process may have
 * thousands of requests waiting, and an AbortSignal is an EventTarget with two Maps of its own
 * and a listener set of ours beside it, about 800 bytes a request. Its few listeners (the wait
 * of the moment) are an array, called as an EventTarget's would be (see {@link onAbort}).
 */
export class LinkedAbort implements StopSignal, AbortHandler {
  aborted = false
  reason: unknown = undefined
  /** Who hears the abort, in the order added; made on first use. */
  private listeners: AbortListener[] | undefined
  /** The listeners being called now: one of them may still remove a later one. */
  private running: AbortListener[] | undefined
  /** The signals linked, each followed by the reason to abort with (`undefined`: its own). */
  // Grown by copying to the exact size: an array grown by push() holds 16 places at once (about
  // 130 bytes), and a request links three or four sources at most.
  private sources: unknown[] = EMPTY

  /** The signal the waits listen to: this object itself. */
  get signal(): StopSignal {
    return this
  }

  /**
   * Also abort when `source` aborts, with `reason` (default: the source's own reason). A source
   * linked already keeps the reason it was linked with first.
   */
  link(source: StopSignal, reason?: unknown): void {
    if (source.aborted) {
      this.abort(reason === undefined ? source.reason : reason)
      return
    }
    if (this.aborted) return
    if (this.indexOfSource(source) >= 0) return
    this.sources = appended(this.sources, source, reason)
    listenForAbort(source, this)
  }

  /**
   * {@link AbortHandler.handleAbort}: a linked source aborted. This object is every source's
   * listener itself, not a closure per link.
   */
  handleAbort(source: StopSignal): void {
    const at = this.indexOfSource(source)
    if (at < 0) return
    const reason = this.sources[at + 1]
    this.abort(reason === undefined ? source.reason : reason)
  }

  abort(reason: unknown): void {
    if (!this.aborted) {
      this.aborted = true
      // As AbortController.abort() does: no reason is an AbortError.
      this.reason =
        reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason
      const listeners = this.listeners
      this.listeners = undefined
      if (listeners !== undefined) this.callListeners(listeners)
    }
    this.dispose()
  }

  dispose(): void {
    const { sources } = this
    this.sources = EMPTY
    for (let i = 0; i < sources.length; i += 2) {
      stopListeningForAbort(sources[i] as StopSignal, this)
    }
  }

  /** @internal For {@link listenForAbort}: a listener (function or handler) listens once, as in an AbortSignal's fan-out. */
  addListener(listener: AbortListener): void {
    if (this.aborted) return
    // In an array of its own size (see sources).
    if (this.listeners === undefined) this.listeners = [listener]
    else if (!this.listeners.includes(listener)) this.listeners = appended(this.listeners, listener)
  }

  /** @internal For {@link stopListeningForAbort}; also during the abort, as for a signal. */
  removeListener(listener: AbortListener): void {
    const list = this.running ?? this.listeners
    const at = list?.indexOf(listener) ?? -1
    if (at >= 0) list?.splice(at, 1)
  }

  /** @internal Whether `listener` is listening (onAbort tells a second add of one apart). */
  hasListener(listener: AbortListener): boolean {
    return this.listeners?.includes(listener) ?? false
  }

  /** Where `source` is in {@link sources} (signals at even places, reasons after them), or -1. */
  private indexOfSource(source: StopSignal): number {
    for (let i = 0; i < this.sources.length; i += 2) if (this.sources[i] === source) return i
    return -1
  }

  private callListeners(listeners: AbortListener[]): void {
    this.running = listeners
    for (const call of listeners.slice()) {
      const at = listeners.indexOf(call)
      if (at < 0) continue // removed by a listener that ran before it
      listeners.splice(at, 1)
      callListener(call, this)
    }
    this.running = undefined
  }
}
