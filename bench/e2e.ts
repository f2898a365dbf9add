/**
 * Scenario 7: tus uploads end to end with tus-js-client. (a) one instance with MemoryLocker and
 * FileStore's own metadata files; (b) one instance with Etcd3Locker and `locker.kvStore()`, the
 * same server and topology (bench/instance.ts); (c) two instances with Etcd3Locker and the etcd
 * KV store behind a round-robin proxy, sharing one directory (the deployment of `npm start`),
 * with lock retention on and off. Every instance is a process of its own, as deployed, and so
 * is the proxy. Each pair of sides is compared in paired rounds, alternating which goes first,
 * and its ratio is the median of the rounds' ratios: drift and the other side's cleanup then
 * hit both alike. etcd's raft proposals are counted per tus request (from etcd's /metrics), and
 * for one 20-chunk upload to one instance until its kept lock and cache lease are given up.
 */

import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type HttpRequest, Upload } from 'tus-js-client'
import { startDeployment, startServerProcess } from '../examples/multi-instance.js'
import { etcdMetricSum } from '../test/harness/etcd-metrics.js'
import { type BenchContext, client, type Result } from './scenarios.js'
import { percentile, round, timed } from './stats.js'

const CHUNK = 1024 * 1024
const UPLOAD_SIZE = 2 * CHUNK
const CONCURRENCY = 4
const instanceScript = fileURLToPath(new URL('./instance.ts', import.meta.url))
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
  /** etcd raft proposals per tus request, measured alone (see proposalsPerRequest). */
  proposals: number
}

const side = (name: string, endpoint: string): Side => ({
  name,
  endpoint,
  seconds: 0,
  uploads: 0,
  requests: new Map(),
  proposals: 0,
})

/** etcd's raft proposals committed, summed over the members. */
const proposals = (ctx: BenchContext) =>
  etcdMetricSum(ctx.hosts, 'etcd_server_proposals_committed_total')

const requestCount = (s: Side) => [...s.requests.values()].reduce((n, list) => n + list.length, 0)

/** `count` uploads, CONCURRENCY at a time; a HEAD after each, as a resuming client sends. */
async function uploadBatch(
  side: Side,
  data: Buffer,
  count: number,
  concurrency = CONCURRENCY,
  chunkSize = CHUNK,
): Promise<void> {
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
        chunkSize,
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
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await one()
    }),
  )
  side.seconds += (performance.now() - start) / 1e3
  side.uploads += count
}

/** One tus instance with Etcd3Locker + `locker.kvStore()` in its own process. */
function etcdInstance(ctx: BenchContext, dir: string, prefix: string, env: NodeJS.ProcessEnv = {}) {
  return processOf(ctx, instanceScript, [], {
    LOCKER: 'etcd',
    ETCD_ENDPOINTS: ctx.hosts.join(','),
    FILES_DIR: dir,
    PREFIX: prefix,
    CACHE_IDLE: String(CACHE_IDLE_MS),
    ...env,
  })
}

/**
 * `rounds` paired rounds of `perRound` uploads on `a` and on `b`, the order alternating; the
 * ratio of b's uploads/s to a's in each round, sorted.
 */
async function pairedRounds(
  a: Side,
  b: Side,
  data: Buffer,
  rounds: number,
  perRound: number,
  sampler?: PutSampler,
) {
  const ratios: number[] = []
  for (let r = 0; r < rounds; r++) {
    const rate = new Map<Side, number>()
    for (const s of r % 2 === 0 ? [a, b] : [b, a]) {
      const [seconds, uploads] = [s.seconds, s.uploads]
      // Both sides bear the sampler's puts (etcd's disk is theirs too); b's are recorded.
      const sampling = sampler?.start(s === b)
      try {
        await uploadBatch(s, data, perRound)
      } finally {
        await sampling?.stop()
      }
      rate.set(s, (s.uploads - uploads) / (s.seconds - seconds))
    }
    ratios.push((rate.get(b) ?? 0) / (rate.get(a) ?? 1))
  }
  return ratios.sort((x, y) => x - y)
}

// The etcd sides' cache idle time: short, so that their leases are given up (and counted)
// within the run. Uploads here take far less than this between requests, so it costs no misses.
const CACHE_IDLE_MS = 2_000

/** Resolves once nothing but upload records (`P/.kv/`) is left under `prefix`: no lock, no lease. */
async function untilQuiet(ctx: BenchContext, prefix: string): Promise<void> {
  const etcd = client(ctx)
  const giveUpAt = performance.now() + 60_000
  for (;;) {
    const keys = await etcd.getAll().prefix(`${prefix}/`).keys()
    if (keys.every((k) => k.startsWith(`${prefix}/.kv/`))) return
    if (performance.now() > giveUpAt) throw new Error(`${prefix}: locks or leases left after 60 s`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** Two instances behind a round-robin proxy (its own process), as `npm start` runs them. */
async function roundRobin(ctx: BenchContext, dir: string, prefix: string, retainLocks?: number) {
  const deployment = await startDeployment({
    endpoints: ctx.hosts,
    directory: dir,
    port: 0,
    prefix,
    retainLocks,
    log: () => {},
  })
  ctx.defer(() => deployment.close())
  // The load balancer in its own process too (nginx in docker-compose.yml), not in the clients'.
  return processOf(
    ctx,
    proxyScript,
    deployment.instances.map((i) => i.origin),
  )
}

/**
 * Raft proposals per request of one upload of `chunks` chunks to one instance (POST, PATCHes,
 * HEAD), counted until its kept lock and its cache lease are given up (no key left under the
 * prefix): the cleanup writes count. The instance's `cacheIdle` is short so that this does not
 * take 30 s; the count does not depend on it.
 */
async function oneUpload(ctx: BenchContext, dir: string, chunks: number): Promise<number> {
  const prefix = `${ctx.prefix}-single`
  const endpoint = await etcdInstance(ctx, dir, prefix, { CACHE_IDLE: '1000' })
  const single = side('one upload', endpoint)
  const chunkSize = 64 * 1024
  const before = await proposals(ctx)
  await uploadBatch(single, randomBytes(chunks * chunkSize), 1, 1, chunkSize)
  await untilQuiet(ctx, prefix)
  return ((await proposals(ctx)) - before) / requestCount(single)
}

/**
 * Raft proposals per tus request of a batch of `count` uploads on `s`, alone (every side quiet
 * before it), counted until its locks and leases are given up (the cleanup writes count).
 */
async function proposalsPerRequest(
  ctx: BenchContext,
  s: Side,
  prefix: string,
  data: Buffer,
  count: number,
): Promise<number> {
  const alone = side(s.name, s.endpoint)
  const before = await proposals(ctx)
  await uploadBatch(alone, data, count)
  await untilQuiet(ctx, prefix)
  return ((await proposals(ctx)) - before) / requestCount(alone)
}

/**
 * Puts through a client of the bench, one every {@link SAMPLE_EVERY_MS}, while a side's uploads
 * run: the write round trip that side's requests meet (its disk and CPU busy with the uploads).
 */
interface PutSampler {
  times: number[]
  /** Puts until `stop()`; `record`: keep their times. A failed put ends the loop, then `stop()` rejects. */
  start(record: boolean): { stop(): Promise<void> }
}

const SAMPLE_EVERY_MS = 25

function putSampler(ctx: BenchContext): PutSampler {
  const etcd = client(ctx)
  const times: number[] = []
  return {
    times,
    start(record) {
      let running = true
      const loop = (async () => {
        for (let i = 0; running; i++) {
          const took = await timed(() => etcd.put(`${ctx.prefix}-sampled-rtt`).value(`${i}`).exec())
          if (record) times.push(took / 1e3)
          await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS))
        }
      })()
      // Seen at stop(), not as an unhandled rejection in the middle of a batch.
      const outcome = loop.then(
        () => undefined,
        (error: unknown) => error,
      )
      return {
        stop: async () => {
          running = false
          const error = await outcome
          if (error !== undefined) throw error
        },
      }
    },
  }
}

/**
 * POSTs one at a time (no upload running), to each side in turn with a put between: the p50 of
 * each. A POST's etcd work (its lock's enqueue, the upload record's fenced write) without the
 * other uploads' load.
 */
async function postsAlone(ctx: BenchContext, sides: [Side, Side], n: number) {
  const etcd = client(ctx)
  const times = [[], [], []] as [number[], number[], number[]]
  const timedMs = async (op: () => Promise<unknown>) => (await timed(op)) / 1e3
  const post = async (s: Side) => {
    const res = await fetch(`${s.endpoint}/files`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000' },
    })
    await res.arrayBuffer()
    if (res.status !== 201) throw new Error(`${s.name}: POST answered ${res.status}`)
  }
  for (let i = 0; i < n; i++) {
    times[0].push(await timedMs(() => post(sides[0])))
    times[1].push(await timedMs(() => post(sides[1])))
    times[2].push(await timedMs(() => etcd.put(`${ctx.prefix}-post-rtt`).value(`${i}`).exec()))
  }
  return times.map((list) => percentile(list, 50)) as [number, number, number]
}

/** The p50 of `n` puts in a row through a client of the bench (the POST's floor unit). */
async function putRoundTrip(ctx: BenchContext, n: number): Promise<number> {
  const etcd = client(ctx)
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await etcd.put(`${ctx.prefix}-rtt`).value(`${i}`)
    times.push(performance.now() - started)
  }
  await etcd.delete().key(`${ctx.prefix}-rtt`)
  return percentile(times, 50)
}

export async function endToEnd(ctx: BenchContext): Promise<Result[]> {
  const dirs = await Promise.all(
    [0, 1, 2, 3, 4].map(() => mkdtemp(join(tmpdir(), 'tus-etcd3-locker-bench-'))),
  )
  ctx.defer(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))
  const [single, oneEtcd, shared, sharedOff, oneUploadDir] = dirs as [
    string,
    string,
    string,
    string,
    string,
  ]
  // First, with nothing else running: one upload's cost to etcd, cleanup included.
  const perRequestOfOne = await oneUpload(ctx, oneUploadDir, ctx.quick ? 3 : 20)
  const prefixes = { one: `${ctx.prefix}-one`, two: `${ctx.prefix}-two`, off: `${ctx.prefix}-off` }
  const data = randomBytes(UPLOAD_SIZE)
  const rounds = ctx.quick ? 2 : 16
  const perRound = ctx.quick ? 2 : 20
  // Each instance is its own process, as deployed; the clients (and the proxy) run here.
  const memory = side(
    'one instance, MemoryLocker + metadata files',
    await processOf(ctx, instanceScript, [], { LOCKER: 'memory', FILES_DIR: single }),
  )
  const one = side(
    'one instance, Etcd3Locker + etcd metadata',
    await etcdInstance(ctx, oneEtcd, prefixes.one),
  )
  const sampler = putSampler(ctx)
  const oneRatios = await pairedRounds(memory, one, data, rounds, perRound, sampler)
  const [memoryPostAlone, etcdPostAlone, putBetweenPosts] = await postsAlone(
    ctx,
    [memory, one],
    ctx.quick ? 10 : 200,
  )
  // The POSTs' kept locks and cache leases go before the next pair starts.
  if (!ctx.quick) await untilQuiet(ctx, prefixes.one)
  // The round-robin pair only now: its processes and cleanups stay out of the first pair's run.
  const two = side(
    'two instances behind a proxy, Etcd3Locker + etcd metadata',
    await roundRobin(ctx, shared, prefixes.two),
  )
  const twoOff = side(
    'two instances behind a proxy, retainLocks 0',
    await roundRobin(ctx, sharedOff, prefixes.off, 0),
  )
  const retentionRatios = await pairedRounds(twoOff, two, data, rounds, perRound)
  const writeTrip = await putRoundTrip(ctx, ctx.quick ? 20 : 200)
  const sides = [memory, one, two, twoOff]
  // Then each etcd side alone, from quiet to quiet: what its requests cost etcd. The quick
  // run (a smoke test) skips this: each quiet wait is a retainLocks.
  const counted: Array<[Side, string]> = [
    [one, prefixes.one],
    [two, prefixes.two],
    [twoOff, prefixes.off],
  ]
  for (const [s, prefix] of ctx.quick ? [] : counted) {
    for (const [, p] of counted) await untilQuiet(ctx, p)
    s.proposals = await proposalsPerRequest(ctx, s, prefix, data, perRound)
  }
  const S = 'end to end'
  const rows: Result[] = []
  for (const s of sides) {
    rows.push({
      scenario: S,
      name: `${s.name}`,
      unit: 'uploads/s',
      value: round(s.uploads / s.seconds),
    })
    for (const method of ['POST', 'PATCH', 'HEAD']) {
      const times = s.requests.get(method) ?? []
      rows.push({
        scenario: S,
        name: `${s.name}: ${method} p50`,
        unit: 'ms',
        value: round(percentile(times, 50)),
        p99: round(percentile(times, 99)),
        samples: times.length,
      })
    }
    if (s !== memory && !ctx.quick) {
      rows.push({
        scenario: S,
        name: `${s.name}: raft proposals per tus request, cleanup included`,
        unit: 'ratio',
        value: round(s.proposals, 3),
      })
    }
  }
  const rate = (s: Side) => s.uploads / s.seconds
  // The protocol's floor for the ratio below: an upload through the etcd side must cost at least
  // the POST's two writes in a row (its lock's enqueue, then the record's fenced write; PATCHes
  // and the HEAD take the kept key and the leased record locally), each a put timed while the
  // same uploads run. Each of CONCURRENCY uploads at a time takes CONCURRENCY / rate.
  const memoryUploadMs = (CONCURRENCY / rate(memory)) * 1e3
  const putDuringUploads = percentile(sampler.times, 50)
  const floorRatio = memoryUploadMs / (memoryUploadMs + 2 * putDuringUploads)
  rows.push(
    {
      scenario: S,
      name: `uploads/s, one instance: etcd / memory at the protocol's floor (an upload of ${round(memoryUploadMs)} ms with memory, plus two puts of ${round(putDuringUploads)} ms)`,
      unit: 'ratio',
      value: round(floorRatio),
    },
    {
      scenario: S,
      name: `uploads/s, one instance: etcd / memory (median of ${rounds} paired rounds)`,
      unit: 'ratio',
      value: round(percentile(oneRatios, 50)),
      range: [round(oneRatios[0] ?? 0), round(oneRatios.at(-1) ?? 0)],
      goal: { value: 0.9, higherIsBetter: true },
    },
    {
      scenario: S,
      name: `POST p50, one instance: (etcd - memory) / one write round trip (a put, p50 ${round(writeTrip)} ms, etcd idle)`,
      unit: 'ratio',
      value: round(
        (percentile(one.requests.get('POST') ?? [], 50) -
          percentile(memory.requests.get('POST') ?? [], 50)) /
          writeTrip,
      ),
    },
    {
      // The POSTs above run beside three other uploads' PATCHes, which hold the disk etcd
      // syncs its log to: the unit is a put timed while those uploads run.
      scenario: S,
      name: `POST p50, one instance: (etcd - memory) / one write round trip during the uploads (a put every ${SAMPLE_EVERY_MS} ms, p50 ${round(percentile(sampler.times, 50))} ms)`,
      unit: 'ratio',
      value: round(
        (percentile(one.requests.get('POST') ?? [], 50) -
          percentile(memory.requests.get('POST') ?? [], 50)) /
          percentile(sampler.times, 50),
      ),
      goal: { value: 2.5, higherIsBetter: false },
    },
    {
      scenario: S,
      name: `POST p50 one at a time, one instance: (etcd ${round(etcdPostAlone)} ms - memory ${round(memoryPostAlone)} ms) / a put between them (p50 ${round(putBetweenPosts)} ms)`,
      unit: 'ratio',
      value: round((etcdPostAlone - memoryPostAlone) / putBetweenPosts),
      goal: { value: 2.5, higherIsBetter: false },
    },
    {
      scenario: S,
      name: 'uploads/s, two instances vs one with memory',
      unit: 'ratio',
      value: round(rate(two) / rate(memory)),
    },
    {
      scenario: S,
      name: `uploads/s, round robin: retention on / off (median of ${rounds} paired rounds)`,
      unit: 'ratio',
      value: round(percentile(retentionRatios, 50)),
      range: [round(retentionRatios[0] ?? 0), round(retentionRatios.at(-1) ?? 0)],
      goal: { value: 0.95, higherIsBetter: true },
    },
    {
      scenario: S,
      name: 'one 20-chunk upload, one instance: raft proposals per request, cleanup included',
      unit: 'ratio',
      value: round(perRequestOfOne, 3),
      goal: { value: 0.3, higherIsBetter: false },
    },
  )
  return rows
}
