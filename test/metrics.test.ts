import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Upload } from 'tus-js-client'
import { expect, it } from 'vitest'
import { startTusInstance } from '../examples/node-http.js'
import { deferCleanup, endpoints, uniquePrefix, within } from './harness/index.js'

/** `name{labels} value` lines of a Prometheus text page, summed per metric name. */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line)
    if (match?.[1] && match[3]) values.set(match[1], (values.get(match[1]) ?? 0) + Number(match[3]))
  }
  return values
}

async function scrape(origin: string): Promise<Map<string, number>> {
  const res = await fetch(`${origin}/metrics`)
  expect(res.status).toBe(200)
  return parseMetrics(await res.text())
}

it('the example’s /metrics shows the lock and KV cache counters moving during an upload', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-metrics-'))
  deferCleanup(() => rm(directory, { recursive: true, force: true }))
  const instance = await startTusInstance({
    endpoints: endpoints(),
    directory,
    port: 0,
    prefix: uniquePrefix('metrics'),
  })
  deferCleanup(() => instance.close())
  const origin = new URL(instance.url).origin

  const before = await scrape(origin)
  expect(before.get('tus_etcd3_locker_lock_acquisitions_total')).toBe(0)
  expect(before.get('tus_etcd3_locker_sessions_granted_total')).toBe(1)

  const data = randomBytes(1024 * 1024)
  await within(
    new Promise<void>((resolve, reject) => {
      new Upload(data, {
        endpoint: instance.url,
        chunkSize: 256 * 1024, // POST + 4 PATCH: five locked requests
        retryDelays: [],
        onError: reject,
        onSuccess: () => resolve(),
      }).start()
    }),
    20_000,
    'the upload',
  )

  const after = await scrape(origin)
  expect(after.get('tus_etcd3_locker_lock_acquisitions_total')).toBeGreaterThanOrEqual(5)
  expect(after.get('tus_etcd3_locker_lock_wait_seconds_count')).toBe(
    after.get('tus_etcd3_locker_lock_acquisitions_total'),
  )
  expect(after.get('tus_etcd3_locker_locks_held')).toBe(0)
  // FileStore reads the upload's metadata on every PATCH; the POST's write of it leased the key
  // to this instance, so every read is served from the cache.
  expect(after.get('tus_etcd3_locker_kv_cache_misses_total')).toBe(0)
  expect(after.get('tus_etcd3_locker_kv_cache_hits_total')).toBeGreaterThan(0)
  expect(after.get('tus_etcd3_locker_lock_timeouts_total')).toBe(0)
  // The cached metadata key's watch (and a kept lock key's) is open on the client's one stream.
  expect(after.get('tus_etcd3_locker_watches_open')).toBeGreaterThanOrEqual(1)
  expect(after.get('tus_etcd3_locker_watch_unknown_ids_total')).toBe(0)
  expect(after.get('tus_etcd3_locker_watch_stream_resumes_total')).toBe(0)
})
