#!/usr/bin/env node
/**
 * `tus-etcd3-locker`: inspect the upload locks in etcd and ask a holder to release.
 * Every etcd call has a deadline and the client is closed at the end, so the process always
 * exits by itself; see `usage.ts` for the commands and exit codes.
 */
import { readFileSync } from 'node:fs'
import type { Etcd3 } from 'etcd3'
import { type Invocation, parseCommandLine, USAGE_HINT } from './args.js'
import { CliError, ExitCode, UsageError } from './exit-codes.js'
import type { Output } from './output.js'
import { PROGRAM, usage } from './usage.js'

/** How long the process may linger after its command finished before it is ended anyway. */
const EXIT_GRACE_MS = 2_000

/** Runs the command line `argv` and resolves with the exit code; output goes to stdout/stderr. */
async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let invocation: Invocation
  try {
    invocation = parseCommandLine(argv, env)
  } catch (error) {
    return fail(error)
  }
  if (invocation.kind === 'help') {
    process.stdout.write(`${usage(invocation.command)}\n`)
    return ExitCode.ok
  }
  if (invocation.kind === 'version') {
    process.stdout.write(`${PROGRAM} ${packageVersion()}\n`)
    return ExitCode.ok
  }
  const { endpoints, prefix, json } = invocation.options
  // Loaded only to run a command: the gRPC client takes most of the start-up time, and --help
  // or a usage error should not pay for it.
  const { connect, etcdFailure } = await import('./etcd.js')
  const client = connect(endpoints)
  try {
    let output: Output
    try {
      output = await runCommand(invocation, client, prefix)
    } catch (error) {
      throw error instanceof CliError ? error : etcdFailure(error, endpoints)
    }
    if (json) process.stdout.write(`${JSON.stringify(output.json, null, 2)}\n`)
    else if (output.text.length > 0) process.stdout.write(`${output.text.join('\n')}\n`)
    if (!output.failure) return ExitCode.ok
    process.stderr.write(`${PROGRAM}: ${output.failure.message}\n`)
    return output.failure.exitCode
  } catch (error) {
    return fail(error)
  } finally {
    client.close()
  }
}

async function runCommand(
  invocation: Exclude<Invocation, { kind: 'help' | 'version' }>,
  client: Etcd3,
  prefix: string,
): Promise<Output> {
  switch (invocation.kind) {
    case 'locks':
      return (await import('./locks.js')).locks(client, prefix)
    case 'sessions':
      return (await import('./sessions.js')).sessions(client, prefix)
    case 'release':
      return (await import('./release.js')).release(
        client,
        prefix,
        invocation.id,
        invocation.timeoutMs,
      )
  }
}

/** The package's version: package.json is two folders up from both src/cli/ and dist/cli/. */
function packageVersion(): string {
  const manifest = readFileSync(new URL('../../package.json', import.meta.url), 'utf8')
  return (JSON.parse(manifest) as { version: string }).version
}

function fail(error: unknown): number {
  const message = error instanceof Error ? error.message : String(error)
  const hint = error instanceof UsageError ? ` (${USAGE_HINT})` : ''
  process.stderr.write(`${PROGRAM}: ${message}${hint}\n`)
  return error instanceof CliError ? error.exitCode : ExitCode.etcd
}

// A failure outside any command (a broken install, say) is still one line and exit code 1.
main(process.argv.slice(2), process.env)
  .catch(fail)
  .then((code) => {
    process.exitCode = code
    // Everything is closed; should a library still hold the event loop, do not hang on it.
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref()
  })
