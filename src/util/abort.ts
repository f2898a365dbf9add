/** Small helpers to wait on promises and timers without ever outliving an AbortSignal. */

/** Resolves with `promise`, or rejects with `signal.reason` as soon as the signal aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
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
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
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
    const onAbort = () => this.abort(why())
    source.addEventListener('abort', onAbort, { once: true })
    this.detach.push(() => source.removeEventListener('abort', onAbort))
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
