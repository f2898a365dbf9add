/**
 * `npm run bench`: what the package costs, as ratios against baselines measured in the same run.
 *
 * Scenarios run in interleaved rounds (A, B, C, A, B, C, ...) so that machine drift hits every
 * side alike; each reports the median and p99 of its per-operation times over all rounds.
 * Uses ETCD_ENDPOINTS when set, otherwise starts (and stops) a local etcd member.
 */
import { writeFileSync } from 'node:fs'
import { MemoryKvStore } from '@tus/utils'
import { Etcd3 } from 'etcd3'
import { Etcd3Locker } from '../src/index.js'
import { startEtcd } from '../test/harness/etcd.js'

interface Scenario {
  name: string
  /** One operation; resolves when done. */
  run(): Promise<unknown>
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15)
const OPS_PER_ROUND = Number(process.env.BENCH_OPS ?? 200)

async function measure(scenarios: Scenario[]): Promise<Map<string, number[]>> {
  const samples = new Map(scenarios.map((s) => [s.name, [] as number[]]))
  for (const s of scenarios) for (let i = 0; i < 20; i++) await s.run() // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of scenarios) {
      const times = samples.get(s.name) ?? []
      for (let i = 0; i < OPS_PER_ROUND; i++) {
        const start = process.hrtime.bigint()
        await s.run()
        times.push(Number(process.hrtime.bigint() - start) / 1e3)
      }
    }
  }
  return samples
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

const given = process.env.ETCD_ENDPOINTS?.split(',')
const etcd = given ? undefined : await startEtcd(1)
const hosts = given ?? etcd?.endpoints ?? []
const client = new Etcd3({ hosts })
const prefix = `/bench-${process.pid}`
const locker = new Etcd3Locker(client, { prefix })
try {
  const upload = { id: 'bench', size: 1_048_576, offset: 524_288, metadata: { filename: 'a.bin' } }
  const cached = locker.kvStore<typeof upload>()
  const uncached = locker.kvStore<typeof upload>({ leasing: false })
  const memory = new MemoryKvStore<typeof upload>()
  await cached.set('bench', upload)
  await memory.set('bench', upload)
  const results = await measure([
    { name: 'kv get, cached (leased)', run: () => cached.get('bench') },
    { name: 'kv get, uncached (etcd read)', run: () => uncached.get('bench') },
    { name: 'MemoryKvStore get', run: () => memory.get('bench') },
  ])
  const rows = [...results].map(([name, times]) => ({
    name,
    medianMicros: Number(percentile(times, 50).toFixed(2)),
    p99Micros: Number(percentile(times, 99).toFixed(2)),
    samples: times.length,
  }))
  const median = (name: string) =>
    rows.find((r) => r.name.startsWith(name))?.medianMicros ?? Number.NaN
  const ratios = {
    'uncached get / cached get': Number(
      (median('kv get, uncached') / median('kv get, cached')).toFixed(1),
    ),
    'cached get / MemoryKvStore get': Number(
      (median('kv get, cached') / median('MemoryKvStore')).toFixed(2),
    ),
  }
  console.table(rows)
  console.table(ratios)
  console.log(`cache counters: ${JSON.stringify(cached.counters)}`)
  writeFileSync(
    new URL('./results.json', import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, opsPerRound: OPS_PER_ROUND, rows, ratios }, null, 2)}\n`,
  )
} finally {
  await locker.close()
  client.close()
  await etcd?.stop()
}
