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

const port = Number(process.env.PORT ?? 1080)
const directory = resolve(process.env.FILES_DIR ?? './files')
mkdirSync(directory, { recursive: true })

let endpoints = process.env.ETCD_ENDPOINTS?.split(',').map((e) => e.trim())
let stopEtcd = async () => {}
if (!endpoints) {
  const dataDir = `${directory}-etcd`
  console.log(`ETCD_ENDPOINTS is not set: starting a local etcd, its data in ${dataDir}...`)
  try {
    const etcd = await startEtcd(1, [], { ownProcessGroup: true, dataDir })
    endpoints = etcd.endpoints
    stopEtcd = () => etcd.stop()
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  }
}
console.log(`etcd: ${endpoints.join(',')}`)

const throttleKbps = Number(process.env.THROTTLE_KBPS ?? 0)
let deployment: Deployment
try {
  deployment = await startDeployment({
    endpoints,
    directory,
    port,
    instances: Number(process.env.INSTANCES ?? 2),
    uploadBytesPerSecond: throttleKbps > 0 ? throttleKbps * 1_000 : undefined,
    restartAfterMs: Number(process.env.RESTART_AFTER_MS ?? 5_000) || undefined,
  })
} catch (error) {
  console.error(`could not start: ${error instanceof Error ? error.message : error}`)
  await stopEtcd()
  process.exit(1)
}
console.log(`
  upload page:   ${deployment.url}/
  tus endpoint:  ${deployment.url}/files   (npm run upload -- <file> ${deployment.url}/files)
  instances:     ${deployment.instances.map((i) => `${i.name} ${i.origin} (pid ${i.pid}; /metrics, /health)`).join('\n                 ')}
  files:         ${directory}
  locks:         npx tsx src/cli/main.ts locks --endpoints ${endpoints.join(',')}

Try it: upload a file on the page; it shows which instance holds the upload's lock. Kill that
instance mid-upload, for example tus1:   kill -9 ${deployment.instances[0]?.pid}
The page's tus client resumes through the other instance once the dead one's etcd session
expires (10 s). ${throttleKbps > 0 ? `Uploads are throttled to ${throttleKbps} KB/s.` : 'For a slower upload: THROTTLE_KBPS=2000 npm start'}
Ctrl-C stops everything, revokes the lock sessions and stops the local etcd.
`)

let stopping = false
function stop(why: string): void {
  if (stopping) return
  stopping = true
  console.log(`\n${why}: stopping the instances (each revokes its etcd session)...`)
  deployment
    .close()
    .catch((error: unknown) => console.error(error))
    .finally(() => stopEtcd().finally(() => process.exit(0)))
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal))
// A SIGTERM sent to npm alone (a supervisor, `kill <npm's pid>`) ends npm and its shell but does
// not reach this process: left running, it would keep etcd, the instances and the port. Its parent
// going is the only sign of that.
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) stop('the parent process (npm) exited')
}, 250).unref()
