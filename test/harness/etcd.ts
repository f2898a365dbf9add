/**
 * Starts real etcd members for tests: free loopback ports, a temp data dir, stopped by pid.
 * The binary comes from ETCD_BIN or PATH.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
} from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { freePort } from './free-port.js'

export { freePort }

export const NO_ETCD_MESSAGE =
  'etcd not found: set ETCD_BIN (ETCD_BIN=$(scripts/etcd.sh 3.5) unpacks etcd 3.5 from Debian into .etcd/, installs nothing) or ETCD_ENDPOINTS, or install it (Debian/Ubuntu: apt-get install etcd-server etcd-client, macOS: brew install etcd)'

// Tests that run etcdctl (lock interop, the CLI, RBAC) must run the one of the same etcd line as
// the members: when ETCD_BIN has an etcdctl beside it (scripts/etcd.sh puts them together), that
// directory comes first on PATH, for this process and the processes it starts.
const etcdBinDir = process.env.ETCD_BIN ? dirname(process.env.ETCD_BIN) : undefined
if (etcdBinDir && isExecutable(join(etcdBinDir, 'etcdctl'))) {
  const path = process.env.PATH ?? ''
  if (path.split(delimiter)[0] !== etcdBinDir) process.env.PATH = `${etcdBinDir}${delimiter}${path}`
}

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

/** TLS on the client port: etcd's certificate, and whether it demands client certificates. */
export interface EtcdTls {
  /** CA of client certificates (`--trusted-ca-file`); also how the health check verifies etcd. */
  readonly caFile: string
  /** etcd's server certificate and key (`--cert-file`, `--key-file`). */
  readonly server: { readonly cert: string; readonly key: string }
  /**
   * A client certificate signed by `caFile`: with it etcd is started with `--client-cert-auth`
   * and the health check presents it.
   */
  readonly client?: { readonly cert: string; readonly key: string }
}

/** Optional settings of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Serve clients over https (the peers stay on plain http, on loopback). */
  readonly tls?: EtcdTls
  /** More etcd flags, appended to every member's command line. */
  readonly extraArgs?: readonly string[]
  /**
   * Run the members in a process group of their own, so a Ctrl-C in the terminal does not stop
   * them before the servers using them have revoked their sessions (`npm start`). They are still
   * stopped by pid, by `stop()` or when this process exits.
   */
  readonly ownProcessGroup?: boolean
  /**
   * Keep the members' data here instead of a temp dir removed on stop: a later start with the
   * same directory finds every key again (`npm start` keeps the demo's upload metadata so).
   */
  readonly dataDir?: string
}

/**
 * Starts `size` (1 or 3) members forming one cluster, and waits until each is healthy.
 * `clientPorts` fixes the members' client ports (default: free ones). With `options.tls` the
 * client URLs are `https://`, and endpoints are still `127.0.0.1:<port>` (add `https://` for the
 * etcd3 client, or pass `credentials`).
 */
export async function startEtcd(
  size = 1,
  clientPorts: number[] = [],
  options: StartEtcdOptions = {},
): Promise<EtcdCluster> {
  const { tls, extraArgs = [], ownProcessGroup = false, dataDir: keptDir } = options
  const scheme = tls ? 'https' : 'http'
  const tlsArgs = tls
    ? [
        `--cert-file=${tls.server.cert}`,
        `--key-file=${tls.server.key}`,
        `--trusted-ca-file=${tls.caFile}`,
        ...(tls.client ? ['--client-cert-auth'] : []),
      ]
    : []
  const binary = findEtcdBinary()
  const root = keptDir ?? mkdtempSync(join(tmpdir(), 'tus-etcd3-locker-etcd-'))
  mkdirSync(root, { recursive: true })
  const specs: Array<{ name: string; clientPort: number; peerPort: number }> = []
  for (let i = 0; i < size; i++) {
    const clientPort = clientPorts[i] ?? (await freePort())
    specs.push({ name: `m${i}`, clientPort, peerPort: await freePort() })
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',')
  const token = `t${process.pid}-${Date.now()}`
  const members = specs.map((spec) => {
    const dataDir = join(root, spec.name)
    const clientUrl = `${scheme}://127.0.0.1:${spec.clientPort}`
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
          ...tlsArgs,
          ...extraArgs,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], detached: ownProcessGroup },
      )
      child.stdout?.pipe(log)
      child.stderr?.pipe(log)
      const proc = child
      exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    }
    // Kept data: etcd restarts from it (its cluster flags are then ignored), on new ports.
    launch(existsSync(join(dataDir, 'member')) ? 'existing' : 'new')
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
        await waitHealthy(member.endpoint, join(root, `${spec.name}.log`), tls)
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
      if (keptDir === undefined) rmSync(root, { recursive: true, force: true })
    },
  }
  try {
    await Promise.all(members.map((m) => waitHealthy(m.endpoint, join(root, `${m.name}.log`), tls)))
  } catch (error) {
    await cluster.stop()
    throw error
  }
  return cluster
}

/** Polls `/health` (a test-harness start-up check, bounded to 20 s). */
async function waitHealthy(endpoint: string, logFile: string, tls?: EtcdTls): Promise<void> {
  const until = Date.now() + 20_000
  let last = 'no answer'
  while (Date.now() < until) {
    try {
      const body = JSON.parse(
        tls ? await httpsGet(`https://${endpoint}/health`, tls) : await httpGet(endpoint),
      ) as { health?: string }
      if (body.health === 'true') return
      last = JSON.stringify(body)
    } catch (error) {
      last = String(error)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`etcd at ${endpoint} not healthy after 20 s (${last}); see ${logFile}`)
}

async function httpGet(endpoint: string): Promise<string> {
  const res = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(1_000) })
  return res.text()
}

/** GET over https verifying etcd with the test CA (global fetch cannot take a CA or client cert). */
function httpsGet(url: string, tls: EtcdTls): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        ca: readFileSync(tls.caFile),
        ...(tls.client && {
          cert: readFileSync(tls.client.cert),
          key: readFileSync(tls.client.key),
        }),
        timeout: 1_000,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () => resolve(body))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
    req.end()
  })
}
