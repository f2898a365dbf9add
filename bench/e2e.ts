/**
 * Scenario 7: tus uploads end to end with tus-js-client. (a) one instance with MemoryLocker and
 * FileStore's own metadata files; (b) two instances with Etcd3Locker and the etcd KV store behind
 * a round-robin proxy, sharing one directory (the deployment of `npm start`). Every instance is
 * a process of its own, as deployed, and so is the proxy.
 */

import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type HttpRequest, Upload } from 'tus-js-client'
import { startDeployment, startServerProcess } from '../examples/multi-instance.js'
import type { BenchContext, Result } from './scenarios.js'
import { percentile, round } from './stats.js'

const CHUNK = 1024 * 1024
const UPLOAD_SIZE = 2 * CHUNK
const CONCURRENCY = 4
const memoryScript = fileURLToPath(new URL('./memory-instance.ts', import.meta.url))
const proxyScript = fileURLToPath(new URL('./proxy-process.ts', import.meta.url))

/** `script` (with `args`) in its own process, stopped with the run; resolves with its origin. */
async function processOf(
  ctx: BenchContext,
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<string> {
  const server = await startServerProcess(basename(script), script, args, () => {}, env)
  ctx.defer(() => server.kill('SIGTERM'))
  return server.origin
}

interface Side {
  name: string
  endpoint: string
  seconds: number
  uploads: number
  requests: Map<string, number[]>
}

/** `count` uploads, CONCURRENCY at a time; a HEAD after each, as a resuming client sends. */
async function uploadBatch(side: Side, data: Buffer, count: number): Promise<void> {
  const record = (method: string, ms: number) => {
    const list = side.requests.get(method) ?? []
    list.push(ms)
    side.requests.set(method, list)
  }
  const one = async () => {
    const started = new Map<HttpRequest, number>()
    const url = await new Promise<string>((resolve, reject) => {
      const upload = new Upload(data, {
        endpoint: `${side.endpoint}/files`,
        chunkSize: CHUNK,
        retryDelays: [],
        onBeforeRequest: (req) => {
          started.set(req, performance.now())
        },
        onAfterResponse: (req) => {
          record(req.getMethod(), performance.now() - (started.get(req) ?? performance.now()))
        },
        onError: reject,
        onSuccess: () => resolve(upload.url ?? ''),
      })
      upload.start()
    })
    const headStart = performance.now()
    const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
    if (head.headers.get('upload-offset') !== String(data.length)) throw new Error('bad offset')
    record('HEAD', performance.now() - headStart)
  }
  const start = performance.now()
  let left = count
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (left-- > 0) await one()
    }),
  )
  side.seconds += (performance.now() - start) / 1e3
  side.uploads += count
}

export async function endToEnd(ctx: BenchContext): Promise<Result[]> {
  const dirs = await Promise.all(
    [0, 1].map(() => mkdtemp(join(tmpdir(), 'tus-etcd3-locker-bench-'))),
  )
  ctx.defer(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))
  const [single, shared] = dirs as [string, string]
  // Each instance is its own process, as deployed; the clients (and the proxy) run here.
  const memory: Side = {
    name: 'one instance, MemoryLocker + metadata files',
    endpoint: await processOf(ctx, memoryScript, [], { FILES_DIR: single }),
    seconds: 0,
    uploads: 0,
    requests: new Map(),
  }
  const deployment = await startDeployment({
    endpoints: ctx.hosts,
    directory: shared,
    port: 0,
    prefix: ctx.prefix,
    log: () => {},
  })
  ctx.defer(() => deployment.close())
  // The load balancer in its own process too (nginx in docker-compose.yml), not in the clients'.
  const proxy = await processOf(
    ctx,
    proxyScript,
    deployment.instances.map((i) => i.origin),
  )
  const etcd: Side = {
    name: 'two instances behind a proxy, Etcd3Locker + etcd metadata',
    endpoint: proxy,
    seconds: 0,
    uploads: 0,
    requests: new Map(),
  }
  const data = randomBytes(UPLOAD_SIZE)
  const total = ctx.quick ? 4 : 200
  const perRound = ctx.quick ? 2 : 25
  for (let done = 0; done < total; done += perRound) {
    await uploadBatch(memory, data, perRound)
    await uploadBatch(etcd, data, perRound)
  }
  const S = 'end to end'
  const rows: Result[] = []
  for (const side of [memory, etcd]) {
    rows.push({
      scenario: S,
      name: `${side.name}`,
      unit: 'uploads/s',
      value: round(side.uploads / side.seconds),
    })
    for (const method of ['HEAD', 'PATCH']) {
      const times = side.requests.get(method) ?? []
      rows.push({
        scenario: S,
        name: `${side.name}: ${method} p50`,
        unit: 'ms',
        value: round(percentile(times, 50)),
        p99: round(percentile(times, 99)),
        samples: times.length,
      })
    }
  }
  rows.push({
    scenario: S,
    name: 'uploads/s: etcd / memory',
    unit: 'ratio',
    value: round(etcd.uploads / etcd.seconds / (memory.uploads / memory.seconds)),
    goal: { value: 0.9, higherIsBetter: true },
  })
  return rows
}
