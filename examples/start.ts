/**
 * `npm start`: a complete local deployment: etcd, two tus instances sharing one files directory
 * and the etcd lock/metadata store, a round-robin proxy in front, and an upload page.
 *
 * Uses the etcd at ETCD_ENDPOINTS (comma-separated host:port) when set; otherwise starts a local
 * etcd from PATH (or ETCD_BIN), its data kept beside the files (<FILES_DIR>-etcd), so the uploads
 * of an earlier run resume after a restart, and stops it on exit.
 * PORT (proxy, default 1080), INSTANCES (tus instances, default 2) and FILES_DIR (./files) say
 * where and how many; THROTTLE_KBPS slows every request body to about that many KB/s at the
 * proxy, so there is time to kill the writer by hand; an instance that dies is started again
 * after RESTART_AFTER_MS (default 5000; 0: never).
 */
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { startEtcd } from '../test/harness/etcd.js'
import { type Deployment, startDeployment } from './multi-instance.js'

// Heard from the first line: a signal during the seconds that etcd and the instances take to
// start stops what has started so far, once it is up, rather than leave it running.
let stopping = false
let starting: Promise<void> = Promise.resolve()
let deployment: Deployment | undefined
let stopEtcd = async () => {}

/** Stops the instances (each revokes its session) and the local etcd, then exits. */
function stop(why: string): void {
  if (stopping) return
  stopping = true
  console.log(`\n${why}: stopping the instances (each revokes its etcd session)...`)
  starting
    .then(() => deployment?.close())
    .catch((error: unknown) => console.error(error))
    .finally(() => stopEtcd().finally(() => process.exit(0)))
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal))
// Under npm, a SIGTERM to npm alone (a supervisor, `kill <npm's pid>`) reaches npm's shell. A
// shell that runs its command as a child (dash, Debian's sh) dies of it without passing it on:
// this process is left, with etcd, the instances and the port. Its parent going is the only sign.
// (A shell that execs its command, bash, makes this npm's child, and npm's SIGTERM reaches it.)
if (process.env.npm_lifecycle_event === 'start') {
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) stop('npm start ended')
  }, 250).unref()
}

const port = Number(process.env.PORT ?? 1080)
const directory = resolve(process.env.FILES_DIR ?? './files')
mkdirSync(directory, { recursive: true })

let endpoints = process.env.ETCD_ENDPOINTS?.split(',').map((e) => e.trim())
if (!endpoints) {
  const dataDir = `${directory}-etcd`
  console.log(`ETCD_ENDPOINTS is not set: starting a local etcd, its data in ${dataDir}...`)
  try {
    const etcd = startEtcd(1, [], { ownProcessGroup: true, dataDir })
    // A failed start is handled below, where it is awaited.
    starting = etcd.then(
      (started) => {
        stopEtcd = () => started.stop()
      },
      () => {},
    )
    endpoints = (await etcd).endpoints
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  }
}
await untilStopped()
console.log(`etcd: ${endpoints.join(',')}`)

const throttleKbps = Number(process.env.THROTTLE_KBPS ?? 0)
let up: Deployment
try {
  const starts = startDeployment({
    endpoints,
    directory,
    port,
    instances: Number(process.env.INSTANCES ?? 2),
    uploadBytesPerSecond: throttleKbps > 0 ? throttleKbps * 1_000 : undefined,
    restartAfterMs: Number(process.env.RESTART_AFTER_MS ?? 5_000) || undefined,
  })
  starting = starts.then(
    (started) => {
      deployment = started
    },
    () => {},
  )
  up = await starts
} catch (error) {
  console.error(`could not start: ${error instanceof Error ? error.message : error}`)
  await stopEtcd()
  process.exit(1)
}
await untilStopped()
console.log(`
  upload page:   ${up.url}/
  tus endpoint:  ${up.url}/files   (npm run upload -- <file> ${up.url}/files)
  instances:     ${up.instances.map((i) => `${i.name} ${i.origin} (pid ${i.pid}; /metrics, /health)`).join('\n                 ')}
  files:         ${directory}
  locks:         npx tsx src/cli/main.ts locks --endpoints ${endpoints.join(',')}

Try it: upload a file on the page; it shows which instance holds the upload's lock. Kill that
instance mid-upload, for example tus1:   kill -9 ${up.instances[0]?.pid}
The page's tus client resumes through the other instance once the dead one's etcd session
expires (10 s). ${throttleKbps > 0 ? `Uploads are throttled to ${throttleKbps} KB/s.` : 'For a slower upload: THROTTLE_KBPS=2000 npm start'}
Ctrl-C stops everything, revokes the lock sessions and stops the local etcd.
`)

/** While a signal is stopping what started so far: never returns (stop() exits the process). */
function untilStopped(): Promise<void> {
  return stopping ? new Promise<never>(() => {}) : Promise.resolve()
}
