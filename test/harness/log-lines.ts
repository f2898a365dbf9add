/** Waits on the package's own debug lines, to tell when a lock reached a given step. */
import { format } from 'node:util'
import { log } from '../../src/util/log.js'

type Part = keyof typeof log

/**
 * Turns on the `part` debug namespace for the current test, keeping its lines in memory instead
 * of printing them. `waitFor` resolves with the first line (formatted) that contains `text`;
 * `stop()` turns the namespace back as it was.
 */
export function captureLog(part: Part): {
  waitFor(text: string): Promise<string>
  stop(): void
} {
  const debug = log[part]
  const wasEnabled = debug.enabled
  const wasLog = debug.log
  const lines: string[] = []
  const waiters: Array<() => void> = []
  debug.enabled = true
  debug.log = (...args: unknown[]) => {
    lines.push(format(...args)) // debug leaves %s and %d to util.format, as its own log does
    for (const wake of waiters.splice(0)) wake()
  }
  return {
    waitFor: (text) =>
      new Promise((resolve) => {
        const check = () => {
          const found = lines.find((line) => line.includes(text))
          if (found !== undefined) resolve(found)
          else waiters.push(check)
        }
        check()
      }),
    stop: () => {
      debug.enabled = wasEnabled
      debug.log = wasLog
    },
  }
}
