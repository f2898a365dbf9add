/**
 * The longest delay a Node timer keeps: `setTimeout`/`setInterval` fire after 1 ms for anything
 * longer (with a `TimeoutOverflowWarning`), so a long TTL would turn into a busy loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * `ms` as a timer can hold it: at most {@link MAX_TIMER_MS}, never negative. A timer clamped so
 * fires early, so its callback must check whether its moment has really come (and re-arm).
 */
export function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms))
}
