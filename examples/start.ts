/**
 * `npm start`: a tus upload service with Etcd3Locker, ready to use.
 *
 * Uses the etcd at ETCD_ENDPOINTS (comma-separated host:port) when set; otherwise starts a
 * throw-away etcd from PATH (or ETCD_BIN) in a temp dir and stops it on exit.
 * PORT (default 1080) and FILES_DIR (default ./files) say where to listen and store.
 */
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { startEtcd } from '../test/harness/etcd.js'
import { startTusInstance } from './node-http.js'

const port = Number(process.env.PORT ?? 1080)
const directory = resolve(process.env.FILES_DIR ?? './files')
mkdirSync(directory, { recursive: true })

let endpoints = process.env.ETCD_ENDPOINTS?.split(',').map((e) => e.trim())
let stopEtcd = async () => {}
if (!endpoints) {
  console.log('ETCD_ENDPOINTS is not set: starting a local etcd for this run...')
  const etcd = await startEtcd(1)
  endpoints = etcd.endpoints
  stopEtcd = () => etcd.stop()
}
console.log(`etcd: ${endpoints.join(',')}`)

let instance: Awaited<ReturnType<typeof startTusInstance>>
try {
  instance = await startTusInstance({ endpoints, directory, port })
} catch (error) {
  console.error(`could not start: ${error instanceof Error ? error.message : error}`)
  await stopEtcd()
  process.exit(1)
}
console.log(`tus endpoint: ${instance.url}  (files in ${directory})`)
console.log(`upload a file from another terminal:  npm run upload -- <file> ${instance.url}`)
console.log('Ctrl-C stops the server, revokes the lock session and stops the local etcd.')

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    console.log(`\n${signal}: stopping...`)
    instance
      .close()
      .catch((error: unknown) => console.error(error))
      .finally(() => stopEtcd().finally(() => process.exit(0)))
  })
}
