/**
 * A tus upload server on plain node:http with Etcd3Locker. To start your own from it, copy it
 * with what it imports: shutdown.ts, upload-page.ts and public/ (the upload page, which serves
 * tus-js-client's browser bundle from node_modules), and install tus-etcd3-locker, @tus/server,
 * @tus/file-store, prom-client and tus-js-client, plus tsx to run TypeScript (or drop the page,
 * /locks and /metrics: the README's Usage is the minimal server). It is an ES module.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 PORT=1080 node --import tsx examples/node-http.ts
 *
 * Environment: ETCD_ENDPOINTS (comma-separated host:port, default 127.0.0.1:2379), PORT (1080),
 * HOST (listen address, 127.0.0.1; 0.0.0.0 in a container), FILES_DIR (./files), PREFIX (/tusd),
 * INSTANCE_NAME (shown in logs and /health), LOCK_TTL (seconds, 10), SHUTDOWN_GRACE_MS (how long
 * other requests may take on SIGTERM once the locks are given up, 15000).
 *
 * Routes: /files (tus), / (upload page), /health (200 while the etcd session is live),
 * /metrics (Prometheus), /locks (the upload ids this instance holds a lock on now, for the demo).
 * Every answer names the instance in an `X-Tus-Instance` header. Run it twice on two ports
 * against the same etcd and the same FILES_DIR: both instances serve the same uploads and never
 * write one upload at the same time.
 */
import { createServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import { Registry } from 'prom-client'
import { createEtcdClient, Etcd3Locker } from 'tus-etcd3-locker'
import { registerLockerMetrics } from 'tus-etcd3-locker/metrics'
import { LOCK_DRAIN_MS, shutDown, shutDownOnSignals } from './shutdown.js'
import { serveUploadPage } from './upload-page.js'

export interface TusInstance {
  readonly url: string
  readonly locker: Etcd3Locker
  /** The current etcd session (lease id in hex), once granted. */
  lease(): string | undefined
  /**
   * Shuts down gracefully: stops accepting requests, asks lock holders to release and lets them
   * answer, revokes the lock session, closes the etcd client.
   */
  close(): Promise<void>
}

export interface TusInstanceOptions {
  endpoints: string[]
  directory: string
  /** 0: any free port. */
  port: number
  host?: string
  prefix?: string
  /** Lock session TTL in seconds: how long a crashed instance's locks stay taken. */
  ttl?: number
  /** ms a lock key is kept after the last unlock (the locker's `retainLocks`; 0: off). */
  retainLocks?: number
  /** ms a cached upload record may stay unread (the KV store's `cacheIdle`). */
  cacheIdle?: number
  name?: string
  /** ms other requests may take on close() once the locks are given up (default 15 000). */
  graceMs?: number
  /** Where to print what the locks do (default: nowhere). */
  log?: (line: string) => void
}

/** Starts one tus instance storing files in `directory`, with upload metadata in etcd. */
export async function startTusInstance(options: TusInstanceOptions): Promise<TusInstance> {
  const name = options.name ?? 'tus'
  const log = options.log ?? (() => {})
  // The recommended client: no 5 s refusal of every member after a leader election.
  const client = createEtcdClient({ hosts: options.endpoints })
  const locker = new Etcd3Locker(client, {
    prefix: options.prefix ?? '/tusd',
    ttl: options.ttl ?? 10,
    retainLocks: options.retainLocks,
    lockDrainTimeout: LOCK_DRAIN_MS, // the same as the Server's below
  })
  const kvStore = locker.kvStore({ cacheIdle: options.cacheIdle })
  const registry = new Registry()
  registerLockerMetrics(locker, { registry, kvStores: [kvStore] })
  let lease: string | undefined
  locker.on('sessionGranted', (s) => {
    lease = s.lease
    log(`etcd session ${s.lease} granted (ttl ${s.ttl}s)`)
  })
  locker.on('sessionLost', (s) => {
    if (lease === s.lease) lease = undefined
    log(
      s.closed
        ? `etcd session ${s.lease} revoked (shutdown)`
        : `etcd session ${s.lease} lost: ${s.reason}`,
    )
  })
  // The uploads this instance holds now, for /locks (the demo page shows who writes what).
  const held = new Set<string>()
  locker.on('lockAcquired', (e) => {
    held.add(e.id)
    log(`lock ${e.id} acquired after ${e.waitedMs} ms`)
  })
  locker.on('releaseRequested', (e) => log(`lock ${e.id}: asked to release (${e.reason})`))
  // Without DEBUG, these two say why a request is slow: who it waits for, who wants a lock.
  locker.on('lockWaiting', (e) =>
    log(`lock ${e.id} still waiting after ${e.waitedMs} ms, for ${waitedOn(e)}`),
  )
  locker.on('lockReleased', (e) => {
    held.delete(e.id)
    log(`lock ${e.id} released after ${e.heldMs} ms`)
  })
  await locker.ready() // fail at start-up, with a clear error, when etcd is not there

  const tus = new Server({
    path: '/files',
    // Upload metadata in etcd, shared by every instance; files in the shared directory.
    datastore: new FileStore({ directory: options.directory, configstore: kvStore }),
    locker,
    // How long a PATCH asked to release may go on: within the locker's safetyMargin (2.5 s at
    // ttl 10), so it has stopped before etcd could give its lock to another instance.
    lockDrainTimeout: LOCK_DRAIN_MS,
    respectForwardedHeaders: true,
  })
  const http: HttpServer = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    // Which instance answered, for the demo page's log and for curl -i.
    res.setHeader('x-tus-instance', `${name} pid ${process.pid}`)
    if (path === '/files' || path.startsWith('/files/')) return void tus.handle(req, res)
    if (path === '/locks') {
      return void sendJson(res, 200, { instance: name, pid: process.pid, held: [...held] })
    }
    if (path === '/health') {
      // 200 only when a lock could be taken now: session live and etcd answering with a leader.
      return void locker.health().then(
        () => sendJson(res, 200, { status: 'ok', instance: name, session: lease }),
        (error: unknown) =>
          sendJson(res, 503, { status: 'down', instance: name, error: String(error) }),
      )
    }
    if (path === '/metrics') {
      return void registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType })
          res.end(text)
        },
        (error: unknown) => {
          res.writeHead(500).end(String(error))
        },
      )
    }
    if (serveUploadPage(req, res)) return
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port, options.host ?? '127.0.0.1', resolve)
  })
  const { port } = http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/files`,
    locker,
    lease: () => lease,
    close: () => shutDown({ http, locker, client, graceMs: options.graceMs }),
  }
}

/** What a waiting request waits for, in words. */
export function waitedOn(e: { waitingOn: string; holder: string | undefined }): string {
  if (e.waitingOn === 'queue-entry') return `lease ${e.holder}`
  if (e.waitingOn === 'local-request') return 'another request of this instance'
  return 'etcd (slow or unreachable)'
}

function sendJson(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const name = process.env.INSTANCE_NAME ?? 'tus'
  const instance = await startTusInstance({
    endpoints: (process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(','),
    directory: process.env.FILES_DIR ?? './files',
    port: Number(process.env.PORT ?? 1080),
    host: process.env.HOST,
    prefix: process.env.PREFIX,
    ttl: process.env.LOCK_TTL ? Number(process.env.LOCK_TTL) : undefined,
    retainLocks: process.env.RETAIN_LOCKS ? Number(process.env.RETAIN_LOCKS) : undefined,
    cacheIdle: process.env.CACHE_IDLE ? Number(process.env.CACHE_IDLE) : undefined,
    graceMs: process.env.SHUTDOWN_GRACE_MS ? Number(process.env.SHUTDOWN_GRACE_MS) : undefined,
    name,
    log: (line) => console.log(`[${name}] ${line}`),
  }).catch((error: unknown) => {
    console.error(`[${name}] could not start: ${error instanceof Error ? error.message : error}`)
    process.exit(1)
  })
  console.log(`[${name}] ready at ${instance.url} (pid ${process.pid})`)
  shutDownOnSignals(instance.close, (line) => console.log(`[${name}] ${line}`))
}
