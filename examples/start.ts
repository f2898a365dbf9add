/**
 * `npm start`: a complete local deployment: etcd, two tus instances sharing one files directory
 * and the etcd lock/metadata store, a round-robin proxy in front, and an upload page.
 *
 * Uses the etcd at ETCD_ENDPOINTS (comma-separated host:port) when set; otherwise starts a
 * throw-away etcd from PATH (or ETCD_BIN) in a temp dir and stops it on exit.
 * PORT (proxy, default 1080), INSTANCES (2) and FILES_DIR (./files) say where and how many.
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
  console.log('ETCD_ENDPOINTS is not set: starting a local etcd for this run...')
  try {
    const etcd = await startEtcd(1, [], { ownProcessGroup: true })
    endpoints = etcd.endpoints
    stopEtcd = () => etcd.stop()
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  }
}
console.log(`etcd: ${endpoints.join(',')}`)

let deployment: Deployment
try {
  deployment = await startDeployment({
    endpoints,
    directory,
    port,
    instances: Number(process.env.INSTANCES ?? 2),
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

Kill an instance mid-upload (kill <pid>): the upload resumes through the other one.
Ctrl-C stops everything, revokes the lock sessions and stops the local etcd.
`)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    console.log(`\n${signal}: stopping the instances (each revokes its etcd session)...`)
    deployment
      .close()
      .catch((error: unknown) => console.error(error))
      .finally(() => stopEtcd().finally(() => process.exit(0)))
  })
}
