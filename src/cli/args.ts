/**
 * The command line: `tus-etcd3-locker <command> [options]`, parsed with `node:util` `parseArgs`.
 * Options may come before or after the command. Anything the CLI cannot run is a
 * {@link UsageError}, found before any etcd call.
 */
import { parseArgs } from 'node:util'
import { escapeId, normalizePrefix } from '../keys.js'
import { UsageError } from './exit-codes.js'
import { PROGRAM } from './usage.js'

export const COMMANDS = ['locks', 'sessions', 'release'] as const
export type Command = (typeof COMMANDS)[number]

/** Options every command takes. */
export interface GlobalOptions {
  endpoints: string[]
  /** Normalized like the locker's: leading `/`, no trailing `/`. */
  prefix: string
  json: boolean
}

/** What to do: print a help text, or run a command. */
export type Invocation =
  | { kind: 'help'; command?: Command }
  | { kind: 'version' }
  | { kind: 'locks' | 'sessions'; options: GlobalOptions }
  | { kind: 'release'; options: GlobalOptions; id: string; timeoutMs: number }

export const DEFAULT_ENDPOINTS = '127.0.0.1:2379'
export const DEFAULT_PREFIX = '/tusd'
export const DEFAULT_RELEASE_TIMEOUT_MS = 10_000

const OPTIONS = {
  endpoints: { type: 'string' },
  prefix: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  timeout: { type: 'string' },
} as const

/**
 * Parses `argv` (without node and the script), with `env` for the `ETCD_ENDPOINTS` default.
 * @throws UsageError naming what is wrong.
 */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): Invocation {
  const { values, positionals } = parse(argv)
  const [name, ...rest] = positionals
  if (values.version) {
    if (positionals.length > 0) throw new UsageError('--version takes no command')
    return { kind: 'version' }
  }
  if (name === undefined) {
    if (values.help) return { kind: 'help' }
    throw new UsageError('missing command (locks, sessions or release)')
  }
  if (!isCommand(name)) {
    throw new UsageError(`unknown command ${JSON.stringify(name)} (locks, sessions or release)`)
  }
  if (values.help) return { kind: 'help', command: name }
  if (values.timeout !== undefined && name !== 'release') {
    throw new UsageError(`option --timeout applies to release only, not to ${name}`)
  }
  const options: GlobalOptions = {
    endpoints: parseEndpoints(values.endpoints ?? (env.ETCD_ENDPOINTS || DEFAULT_ENDPOINTS)),
    prefix: parsePrefix(values.prefix ?? DEFAULT_PREFIX),
    json: values.json ?? false,
  }
  if (name !== 'release') {
    if (rest.length > 0) throw new UsageError(`${name} takes no arguments, got ${rest.join(' ')}`)
    return { kind: name, options }
  }
  const [id, ...extra] = rest
  if (id === undefined) throw new UsageError('release needs the upload id: release <id>')
  try {
    escapeId(id) // the locker's own rules for ids: a bad one is a usage error, not etcd's
  } catch (error) {
    throw new UsageError(`release: ${(error as Error).message}`)
  }
  if (extra.length > 0) {
    throw new UsageError(`release takes one upload id, got also ${extra.join(' ')}`)
  }
  const timeoutMs = parseTimeout(values.timeout ?? String(DEFAULT_RELEASE_TIMEOUT_MS))
  return { kind: 'release', options, id, timeoutMs }
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError(describeParseError(error))
  }
}

/** parseArgs messages run to several sentences of advice; keep the one that names the problem. */
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { code?: unknown }).code
  const quoted = /'([^']+)'/.exec(message)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && quoted) return `unknown option ${quoted}`
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && quoted) {
    return `option ${quoted.split(' ')[0]} needs a value`
  }
  return message.split('. ')[0] ?? message
}

function isCommand(name: string): name is Command {
  return (COMMANDS as readonly string[]).includes(name)
}

function parseEndpoints(list: string): string[] {
  const endpoints = list.split(',').map((e) => e.trim())
  if (endpoints.some((e) => e === '')) {
    throw new UsageError(
      `--endpoints must be comma-separated host:port, got ${JSON.stringify(list)}`,
    )
  }
  return endpoints
}

function parsePrefix(prefix: string): string {
  try {
    return normalizePrefix(prefix)
  } catch (error) {
    // The locker's message names its option; say which flag of ours it was.
    throw new UsageError(
      (error as Error).message.replace(/^Etcd3Locker option "prefix"/, '--prefix'),
    )
  }
}

function parseTimeout(value: string): number {
  const ms = Number(value)
  // Timers take at most 2^31 - 1 ms; a longer AbortSignal.timeout() fires at once.
  if (!/^\d+$/.test(value) || ms < 1 || ms > 2_147_483_647) {
    throw new UsageError(
      `--timeout must be a whole number of ms from 1 to 2147483647, got ${JSON.stringify(value)}`,
    )
  }
  return ms
}

/** The hint appended to every usage error. */
export const USAGE_HINT = `see ${PROGRAM} --help`
