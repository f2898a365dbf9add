/**
 * Starts real etcd members for tests: free loopback ports, a temp data dir, stopped by pid.
 * The binary comes from ETCD_BIN or PATH.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, constants, createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

export const NO_ETCD_MESSAGE =
  'etcd not found: set ETCD_BIN or ETCD_ENDPOINTS, or install it (Debian/Ubuntu: apt-get install etcd-server, macOS: brew install etcd, or docker compose up etcd)'

/** One running etcd member. */
export interface EtcdMember {
  readonly name: string
  /** `127.0.0.1:<port>` */
  readonly endpoint: string
  readonly peerUrl: string
  readonly dataDir: string
  pid(): number | undefined
  /** SIGKILL by pid; resolves once the process has exited. */
  kill(): Promise<void>
  /** Start again on the same ports and data dir (after kill). */
  restart(): Promise<void>
}

/** A set of members started together; `stop()` ends them all and removes the temp dir. */
export interface EtcdCluster {
  readonly members: EtcdMember[]
  readonly endpoints: string[]
  stop(): Promise<void>
}

/** Path of the etcd binary, or throws one clear line saying how to get one. */
export function findEtcdBinary(): string {
  const fromEnv = process.env.ETCD_BIN
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`ETCD_BIN=${fromEnv} is not an executable file`)
    return fromEnv
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'etcd')
    if (dir && isExecutable(candidate)) return candidate
  }
  throw new Error(NO_ETCD_MESSAGE)
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      )
    })
  })
}

/**
 * Starts `size` (1 or 3) members forming one cluster, and waits until each is healthy.
 * `clientPorts` fixes the members' client ports (default: free ones).
 */
export async function startEtcd(size = 1, clientPorts: number[] = []): Promise<EtcdCluster> {
  const binary = findEtcdBinary()
  const root = mkdtempSync(join(tmpdir(), 'tus-etcd3-locker-etcd-'))
  const specs: Array<{ name: string; clientPort: number; peerPort: number }> = []
  for (let i = 0; i < size; i++) {
    const clientPort = clientPorts[i] ?? (await freePort())
    specs.push({ name: `m${i}`, clientPort, peerPort: await freePort() })
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',')
  const token = `t${process.pid}-${Date.now()}`
  const members = specs.map((spec) => {
    const dataDir = join(root, spec.name)
    const clientUrl = `http://127.0.0.1:${spec.clientPort}`
    const peerUrl = `http://127.0.0.1:${spec.peerPort}`
    let child: ChildProcess | undefined
    let exited: Promise<void> = Promise.resolve()
    const launch = (state: 'new' | 'existing') => {
      const log = createWriteStream(join(root, `${spec.name}.log`), { flags: 'a' })
      child = spawn(
        binary,
        [
          `--name=${spec.name}`,
          `--data-dir=${dataDir}`,
          `--listen-client-urls=${clientUrl}`,
          `--advertise-client-urls=${clientUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-state=${state}`,
          `--initial-cluster-token=${token}`,
          '--logger=zap',
          '--log-level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      child.stdout?.pipe(log)
      child.stderr?.pipe(log)
      const proc = child
      exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    }
    launch('new')
    const member: EtcdMember = {
      name: spec.name,
      endpoint: `127.0.0.1:${spec.clientPort}`,
      peerUrl,
      dataDir,
      pid: () =>
        child && child.exitCode === null && child.signalCode === null ? child.pid : undefined,
      kill: async () => {
        const pid = member.pid()
        if (pid !== undefined) process.kill(pid, 'SIGKILL')
        await exited
      },
      restart: async () => {
        await member.kill()
        launch('existing')
        await waitHealthy(member.endpoint, join(root, `${spec.name}.log`))
      },
    }
    return member
  })
  // A crash of this process must not leave etcd running: SIGKILL the members on exit.
  const killOnExit = () => {
    for (const m of members) {
      const pid = m.pid()
      if (pid !== undefined) process.kill(pid, 'SIGKILL')
    }
  }
  process.once('exit', killOnExit)
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint),
    stop: async () => {
      process.removeListener('exit', killOnExit)
      await Promise.all(members.map((m) => m.kill()))
      rmSync(root, { recursive: true, force: true })
    },
  }
  try {
    await Promise.all(members.map((m) => waitHealthy(m.endpoint, join(root, `${m.name}.log`))))
  } catch (error) {
    await cluster.stop()
    throw error
  }
  return cluster
}

/** Polls `/health` (a test-harness start-up check, bounded to 20 s). */
async function waitHealthy(endpoint: string, logFile: string): Promise<void> {
  const until = Date.now() + 20_000
  let last = 'no answer'
  while (Date.now() < until) {
    try {
      const res = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(1_000) })
      const body = (await res.json()) as { health?: string }
      if (body.health === 'true') return
      last = JSON.stringify(body)
    } catch (error) {
      last = String(error)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`etcd at ${endpoint} not healthy after 20 s (${last}); see ${logFile}`)
}
