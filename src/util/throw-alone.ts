/**
 * Throws `error` on its own, out of the current call: one of several callbacks run in a row
 * (listeners, timers' items) failed, and the others must still run, while the error is seen as
 * an uncaught one, as an EventTarget's listener's or a timer callback's would be.
 */
export function throwAlone(error: unknown): void {
  queueMicrotask(() => {
    throw error
  })
}
