/**
 * Several tus instances (each its own process, as behind a real load balancer) sharing one files
 * directory and one etcd, with a round-robin proxy in front that also serves the upload page.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 node --import tsx examples/multi-instance.ts
 *
 * `npm start` runs this with a local etcd when ETCD_ENDPOINTS is not set.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { type RoundRobin, startRoundRobin } from './round-robin-proxy.js'
import { shutDownOnSignals } from './shutdown.js'

export interface DeploymentOptions {
  endpoints: string[]
  directory: string
  /** Port of the proxy (0: any free port). */
  port: number
  /** Number of tus instances (default 2). */
  instances?: number
  prefix?: string
  /** Lock session TTL in seconds (default 10). */
  ttl?: number
  /** The instances' `retainLocks` (ms; default the locker's). */
  retainLocks?: number
  /** Throttle upload bodies at the proxy (demos and tests), bytes per second. */
  uploadBytesPerSecond?: number
  /**
   * Start an instance that died (`kill -9 <pid>`) again after this many ms, on its port
   * (default: never). Either way the death is logged.
   */
  restartAfterMs?: number
  /** Where the instances' and the proxy's lines go (default: console.log). */
  log?: (line: string) => void
}

/** A tus instance of the deployment: a {@link ServerProcess} that can tell its etcd session. */
export interface InstanceProcess extends ServerProcess {
  /** The instance's current etcd session (from its /health), or undefined if it does not answer. */
  session(): Promise<string | undefined>
}

export interface Deployment {
  /** The proxy: upload page at `/`, tus endpoint at `/files`. */
  readonly url: string
  readonly instances: InstanceProcess[]
  /** SIGTERM to every instance (each revokes its session), then stops the proxy. */
  close(): Promise<void>
}

const instanceScript = fileURLToPath(new URL('./node-http.ts', import.meta.url))
/** How long a server may take to connect to etcd and listen. */
const STARTUP_TIMEOUT_MS = 30_000

/** Starts the instances and the proxy; rejects (and stops what started) if one fails. */
export async function startDeployment(options: DeploymentOptions): Promise<Deployment> {
  const log = options.log ?? ((line: string) => console.log(line))
  const count = options.instances ?? 2
  const starting = Array.from({ length: count }, (_, i) =>
    startInstance(`tus${i + 1}`, options, log),
  )
  const results = await Promise.allSettled(starting)
  const instances = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) {
    await Promise.all(instances.map((i) => i.kill('SIGTERM')))
    throw failed.reason
  }
  let proxy: RoundRobin
  try {
    proxy = await startRoundRobin(
      instances.map((i) => i.origin),
      {
        port: options.port,
        uploadBytesPerSecond: options.uploadBytesPerSecond,
        names: instances.map((i) => i.name),
        log,
      },
    )
  } catch (error) {
    await Promise.all(instances.map((i) => i.kill('SIGTERM')))
    throw error
  }
  log(`[proxy] round-robin over ${instances.map((i) => `${i.name} ${i.origin}`).join(', ')}`)
  let closing = false
  const restartTimers = new Set<NodeJS.Timeout>()
  // An instance that dies is said so; with restartAfterMs it comes back on its port.
  const watch = (index: number) => {
    const instance = instances[index] as InstanceProcess
    void instance.exited.then((how) => {
      if (closing) return
      const ttl = options.ttl ?? 10
      const again = options.restartAfterMs
      log(
        `[deployment] ${instance.name} (pid ${instance.pid}) died (${how}): the proxy leaves it out, and the uploads it held resume on another instance once its etcd session expires (within ${ttl} s)${again ? `; starting it again in ${again / 1_000} s` : ''}`,
      )
      if (!again) return
      const timer = setTimeout(() => {
        restartTimers.delete(timer)
        if (closing) return
        const port = Number(new URL(instance.origin).port)
        startInstance(instance.name, options, log, port).then(
          (started) => {
            if (closing) return void started.kill('SIGTERM')
            instances[index] = started
            log(`[deployment] ${started.name} is back (pid ${started.pid})`)
            watch(index)
          },
          (error: unknown) =>
            log(`[deployment] ${instance.name} did not come back: ${(error as Error).message}`),
        )
      }, again)
      restartTimers.add(timer)
    })
  }
  for (let index = 0; index < instances.length; index++) watch(index)
  return {
    url: proxy.url,
    instances,
    close: async () => {
      closing = true
      for (const timer of restartTimers) clearTimeout(timer)
      await Promise.all(instances.map((i) => i.kill('SIGTERM')))
      await proxy.close()
    },
  }
}

async function startInstance(
  name: string,
  options: DeploymentOptions,
  log: (line: string) => void,
  port = 0,
): Promise<InstanceProcess> {
  const server = await startServerProcess(name, instanceScript, [], log, {
    ETCD_ENDPOINTS: options.endpoints.join(','),
    FILES_DIR: options.directory,
    PORT: String(port),
    HOST: '127.0.0.1',
    PREFIX: options.prefix ?? '/tusd',
    LOCK_TTL: String(options.ttl ?? 10),
    ...(options.retainLocks === undefined ? {} : { RETAIN_LOCKS: String(options.retainLocks) }),
    INSTANCE_NAME: name,
  })
  return {
    ...server,
    session: async () => {
      try {
        const res = await fetch(`${server.origin}/health`, { signal: AbortSignal.timeout(2_000) })
        return ((await res.json()) as { session?: string }).session
      } catch {
        return undefined
      }
    },
  }
}

/** A server in its own process, once it printed "ready at http://<host:port>/files". */
export interface ServerProcess {
  readonly name: string
  readonly pid: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Sends `signal` to the pid (SIGKILL 10 s later if still running); resolves once it exited. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** Resolves once the process has exited, with its exit code or signal. */
  readonly exited: Promise<string>
}

// Server processes started here and still running: SIGKILLed if this process exits first. One
// exit listener for all of them (the bench starts more than Node's 10 before it warns).
const serversRunning = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of serversRunning)
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null)
      process.kill(child.pid, 'SIGKILL')
})

/**
 * Runs the TypeScript file `script` in its own node process (through tsx) with `env` added to
 * ours, passes its output lines to `log`, and resolves once it printed its "ready at" line.
 * Rejects, and stops it, when it exits, cannot start, or is not ready within 30 s.
 */
export async function startServerProcess(
  name: string,
  script: string,
  args: string[],
  log: (line: string) => void,
  env: NodeJS.ProcessEnv = {},
): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  })
  const running = () => child.exitCode === null && child.signalCode === null
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? `exit code ${code}`)),
  )
  // A crash of this process must not leave servers running.
  serversRunning.add(child)
  exited.then(() => serversRunning.delete(child))
  let startup: NodeJS.Timeout | undefined
  const origin = await new Promise<string>((resolve, reject) => {
    child.once('error', reject) // could not be started at all
    // A server that neither gets ready nor exits (an etcd that never answers) must not hang us.
    startup = setTimeout(() => {
      if (child.pid !== undefined && running()) process.kill(child.pid, 'SIGKILL')
      reject(new Error(`${name} was not ready within ${STARTUP_TIMEOUT_MS / 1_000} s`))
    }, STARTUP_TIMEOUT_MS)
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      log(line)
      const ready = /ready at (http:\/\/[^/\s]+)\/files/.exec(line)
      if (ready?.[1]) resolve(ready[1])
    })
    child.once('exit', (code, signal) =>
      reject(
        new Error(`${name} exited (${code ?? signal}) before it was ready; see its output above`),
      ),
    )
  }).finally(() => clearTimeout(startup))
  const pid = child.pid as number
  return {
    name,
    pid,
    origin,
    exited,
    kill: async (signal = 'SIGKILL') => {
      if (running()) process.kill(pid, signal)
      // A graceful stop gets 10 s (lock drain + revoke); then it is killed.
      const timer = setTimeout(() => running() && process.kill(pid, 'SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const deployment = await startDeployment({
    endpoints: (process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(','),
    directory: process.env.FILES_DIR ?? './files',
    port: Number(process.env.PORT ?? 1080),
  }).catch((error: unknown) => {
    console.error(`could not start: ${error instanceof Error ? error.message : error}`)
    process.exit(1)
  })
  console.log(`upload page: ${deployment.url}/  tus endpoint: ${deployment.url}/files`)
  shutDownOnSignals(deployment.close, console.log)
}
