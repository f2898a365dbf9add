/** What a command produces; `main` prints it as text or as one JSON document. */
import type { ExitCode } from './exit-codes.js'

export interface Output {
  /** The `--json` document. */
  json: unknown
  /** Lines for stdout in text mode. */
  text: string[]
  /** Exit code when not 0, with the one line explaining it on stderr. */
  failure?: { exitCode: ExitCode; message: string }
}
