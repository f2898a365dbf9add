/**
 * Exit codes of the `tus-etcd3-locker` command, and the error that carries one. Scripts branch
 * on these, so they are part of the CLI's contract (documented in docs/operations.md).
 */

/** What the process exits with. */
export const ExitCode = {
  /** The command did what it was asked. */
  ok: 0,
  /** etcd could not be reached in time, or answered with an error. */
  etcd: 1,
  /** Bad command line: unknown command or option, missing or malformed value. */
  usage: 2,
  /** `release`: the holder did not let go within `--timeout`. */
  notReleased: 3,
  /** `release`: nobody holds or waits for that upload id. */
  noLock: 4,
} as const

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** An error the CLI reports as one line on stderr before exiting with {@link CliError.exitCode}. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message)
    this.name = 'CliError'
  }
}

/** A command line the CLI cannot run: exits with {@link ExitCode.usage}. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, ExitCode.usage)
    this.name = 'UsageError'
  }
}
