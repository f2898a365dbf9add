/**
 * A tus upload server on express with Etcd3Locker and Prometheus metrics. To start your own from
 * it, copy it with shutdown.ts and install tus-etcd3-locker, @tus/server, @tus/file-store, express
 * and prom-client, plus tsx to run TypeScript. It is an ES module.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 PORT=1080 node --import tsx examples/express.ts
 *
 * Uploads go to /files, metrics to /metrics, readiness to /health. Run it on several ports (or machines) against the
 * same etcd and shared storage: the instances never write one upload at the same time.
 */
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import express from 'express'
import { Registry } from 'prom-client'
import { createEtcdClient, Etcd3Locker } from 'tus-etcd3-locker'
import { registerLockerMetrics } from 'tus-etcd3-locker/metrics'
import { LOCK_DRAIN_MS, shutDown, shutDownOnSignals } from './shutdown.js'

const client = createEtcdClient({
  hosts: (process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(','),
})
// lockDrainTimeout: the Server's below, within the safetyMargin of ttl 10 (2.5 s).
const locker = new Etcd3Locker(client, {
  prefix: '/tusd',
  ttl: 10,
  lockDrainTimeout: LOCK_DRAIN_MS,
})
locker.on('sessionGranted', (s) => console.log(`etcd session ${s.lease} granted (ttl ${s.ttl}s)`))
locker.on('lockAcquired', (e) => console.log(`lock ${e.id} acquired after ${e.waitedMs} ms`))
// Without DEBUG, these two say why a request is slow: who it waits for, who wants a lock.
locker.on('lockWaiting', (e) =>
  console.log(
    `lock ${e.id} still waiting after ${e.waitedMs} ms, for ${e.waitingOn === 'queue-entry' ? `lease ${e.holder}` : e.waitingOn}`,
  ),
)
locker.on('releaseRequested', (e) => console.log(`lock ${e.id}: asked to release (${e.reason})`))
locker.on('sessionLost', (s) =>
  console.log(
    s.closed
      ? `etcd session ${s.lease} revoked (shutdown)`
      : `etcd session ${s.lease} lost: ${s.reason}`,
  ),
)
const configstore = locker.kvStore() // upload metadata in etcd, shared by every instance
const registry = new Registry()
registerLockerMetrics(locker, { registry, kvStores: [configstore] })
await locker.ready() // fails here, with a clear error, when etcd cannot be reached

const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: process.env.FILES_DIR ?? './files', configstore }),
  locker,
  lockDrainTimeout: LOCK_DRAIN_MS, // how long a PATCH asked to release may go on
  respectForwardedHeaders: true,
})

const app = express()
// Readiness: 200 only while a lock could be taken (session live, etcd answering with a leader).
app.get('/health', async (_req, res) => {
  try {
    await locker.health()
    res.json({ status: 'ok' })
  } catch (error) {
    res.status(503).json({ status: 'down', error: String(error) })
  }
})
app.get('/metrics', async (_req, res) => {
  res.type(registry.contentType).send(await registry.metrics())
})
app.all('/files{/*rest}', (req, res) => tus.handle(req, res))

const port = Number(process.env.PORT ?? 1080)
const http = app.listen(port, '127.0.0.1', () => {
  console.log(
    `tus endpoint: http://127.0.0.1:${port}/files  metrics: http://127.0.0.1:${port}/metrics (pid ${process.pid})`,
  )
})

// SIGTERM (Kubernetes, docker stop) and Ctrl-C: stop taking requests, let lock holders answer,
// revoke the session so every lock of this instance is free at once, then exit.
const graceMs = process.env.SHUTDOWN_GRACE_MS ? Number(process.env.SHUTDOWN_GRACE_MS) : undefined
shutDownOnSignals(() => shutDown({ http, locker, client, graceMs }), console.log)
