import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** A child process whose stdout lines a test can wait for; stopped by pid. */
export interface Child {
  readonly process: ChildProcess
  /** Resolves with the first stdout line that equals `line` (or satisfies it, for a function). */
  waitForLine(line: string | ((line: string) => boolean)): Promise<string>
  /** Every stdout line so far. */
  lines(): string[]
  /** Writes `line` and a newline to the child's stdin. */
  send(line: string): void
  /** Sends `signal` to the child's pid and resolves once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** Resolves once the child has exited (sends it nothing), with its exit code or signal. */
  exited(): Promise<number | string>
}

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children)
    if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL')
})

/** A TypeScript file (relative to this folder) run in its own node process through tsx. */
export function runTs(file: string, args: string[]): Child {
  const path = fileURLToPath(new URL(file, import.meta.url))
  return runProcess(process.execPath, ['--import', 'tsx', path, ...args])
}

/**
 * `command` in a process of its own. `detached`: also in a process group of its own (its pid is
 * the group's), as a terminal's foreground job is, for tests that signal the whole group.
 */
export function runProcess(
  command: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
  options: { detached?: boolean } = {},
): Child {
  const child = spawn(command, args, {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
    detached: options.detached ?? false,
  })
  children.add(child)
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? String(signal))),
  )
  exited.then(() => children.delete(child))
  const lines: string[] = []
  const waiters: Array<() => void> = []
  let buffered = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    lines.push(...parts)
    for (const wake of waiters.splice(0)) wake()
  })
  return {
    process: child,
    lines: () => [...lines],
    send: (line) => {
      child.stdin?.write(`${line}\n`)
    },
    waitForLine: (line) =>
      new Promise<string>((resolve, reject) => {
        const matches = typeof line === 'string' ? (l: string) => l === line : line
        const check = () => {
          const found = lines.find(matches)
          if (found !== undefined) resolve(found)
          else if (child.exitCode !== null || child.signalCode !== null) {
            reject(
              new Error(
                `${command} exited (${child.exitCode ?? child.signalCode}) before the line`,
              ),
            )
          } else waiters.push(check)
        }
        child.once('exit', () => check())
        check()
      }),
    kill: async (signal = 'SIGKILL') => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, signal)
      }
      await exited
    },
    exited: () => exited,
  }
}
