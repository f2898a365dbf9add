/**
 * A local S3-compatible server for tests: moto's server mode (`moto_server`, Python), in memory,
 * on a free loopback port, stopped by pid. It answers every call `@tus/s3-store` makes (the
 * multipart calls with ListParts, HeadObject, GetObject, PutObject, DeleteObject(s)); `s3rver`
 * (npm) answers ListParts with 405, so S3Store cannot resume on it.
 *
 * The command comes from MOTO_SERVER, else `moto_server` on PATH, else `python3 -m moto.server`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { freePort } from './etcd.js'

export const NO_MOTO_MESSAGE =
  "moto's S3 server not found: set MOTO_SERVER to its moto_server, or pip install 'moto[server]' (Debian 12 has no python3-moto package)"

/** How long moto may take to listen. */
const STARTUP_TIMEOUT_MS = 20_000

/** A running S3-compatible server. */
export interface S3Server {
  /** `http://127.0.0.1:<port>`: the S3 endpoint, path-style. */
  readonly endpoint: string
  pid(): number | undefined
  /** Creates a bucket (moto accepts any credentials, and unsigned requests). */
  createBucket(bucket: string): Promise<void>
  /** The bytes of an object, or `undefined` when there is none. */
  getObject(bucket: string, key: string): Promise<Buffer | undefined>
  /** SIGKILL by pid; resolves once the process has exited. */
  stop(): Promise<void>
}

/** The command that runs moto's server, or throws {@link NO_MOTO_MESSAGE}. */
export function findMoto(): { command: string; args: string[] } {
  const fromEnv = process.env.MOTO_SERVER
  if (fromEnv) return { command: fromEnv, args: [] }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'moto_server')
    try {
      if (dir) {
        accessSync(candidate, constants.X_OK)
        return { command: candidate, args: [] }
      }
    } catch {}
  }
  const probe = spawnSync('python3', ['-c', 'import moto.server'], { timeout: 10_000 })
  if (probe.status === 0) return { command: 'python3', args: ['-m', 'moto.server'] }
  throw new Error(NO_MOTO_MESSAGE)
}

/** Starts moto's S3 server on a free loopback port; resolves once it listens. */
export async function startS3Server(): Promise<S3Server> {
  const { command, args } = findMoto()
  const port = await freePort()
  const child: ChildProcess = spawn(command, [...args, '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const running = () => child.exitCode === null && child.signalCode === null
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // A crash of this process must not leave the server running.
  const killOnExit = () =>
    child.pid !== undefined && running() && process.kill(child.pid, 'SIGKILL')
  process.once('exit', killOnExit)
  exited.then(() => process.removeListener('exit', killOnExit))
  const stop = async () => {
    if (child.pid !== undefined && running()) process.kill(child.pid, 'SIGKILL')
    await exited
  }
  // Werkzeug prints "Running on http://127.0.0.1:<port>" once it listens, then a line per request.
  const output: string[] = []
  let timer: NodeJS.Timeout | undefined
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output.push(...chunk.toString().split('\n').filter(Boolean))
        output.splice(0, output.length - 50) // the recent lines, for an error message
        if (output.some((line) => line.includes(`Running on http://127.0.0.1:${port}`))) resolve()
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', onData)
      child.once('error', (error) => reject(new Error(`${command}: ${error.message}`)))
      child.once('exit', (code, signal) =>
        reject(new Error(`${command} exited (${code ?? signal}):\n${output.join('\n')}`)),
      )
      timer = setTimeout(
        () => reject(new Error(`${command} did not listen within ${STARTUP_TIMEOUT_MS} ms`)),
        STARTUP_TIMEOUT_MS,
      )
    })
  } catch (error) {
    await stop()
    throw error
  } finally {
    clearTimeout(timer)
  }
  const endpoint = `http://127.0.0.1:${port}`
  return {
    endpoint,
    pid: () => (running() ? child.pid : undefined),
    createBucket: async (bucket) => {
      const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' })
      if (!res.ok) throw new Error(`creating bucket ${bucket}: ${res.status} ${await res.text()}`)
    },
    getObject: async (bucket, key) => {
      const res = await fetch(`${endpoint}/${bucket}/${encodeURIComponent(key)}`)
      if (res.status === 404) return undefined
      if (!res.ok) throw new Error(`getting ${bucket}/${key}: ${res.status}`)
      return Buffer.from(await res.arrayBuffer())
    },
    stop,
  }
}
