/**
 * The deployment of `npm start`, natively, in the topology of docker-compose.yml: three etcd
 * members, two tus instances (separate processes) on one files directory, a round-robin proxy.
 * A real browser uploads 20 MB through the upload page; the instance holding the upload's lock
 * is killed mid-way, and the upload completes on the other instance, byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout } from 'node:timers/promises'
import { Etcd3 } from 'etcd3'
import { type Browser, chromium } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type Deployment, startDeployment } from '../examples/multi-instance.js'
import { type EtcdCluster, startEtcd } from './harness/etcd.js'

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
const SIZE = 20 * 1024 * 1024
const PREFIX = '/browser-test'

let cluster: EtcdCluster
let deployment: Deployment
let browser: Browser
const dir = mkdtempSync(join(tmpdir(), 'tus-etcd3-locker-browser-'))
const lines: string[] = []

beforeAll(async () => {
  // Before anything starts: a missing browser must say what to install or set, not fail later.
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: this test drives a real browser. Install it (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM_BIN to a Chromium or Chrome binary`,
    )
  }
  cluster = await startEtcd(3)
  deployment = await startDeployment({
    endpoints: cluster.endpoints,
    directory: join(dir, 'files'),
    port: 0,
    prefix: PREFIX,
    ttl: 3,
    // Slow enough that the kill lands mid-upload: 20 MB at 4 MB/s takes ~5 s.
    uploadBytesPerSecond: 4 * 1024 * 1024,
    log: (line) => lines.push(line),
  })
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root in a sandboxed VM with no outside network: no sandbox, no background traffic.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await deployment?.close()
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
}, 60_000)

/** The lease (hex) of the oldest queue entry of upload `id`: its lock holder. */
async function holderOf(id: string): Promise<string | undefined> {
  const client = new Etcd3({ hosts: cluster.endpoints })
  try {
    const res = await client
      .getAll()
      .prefix(`${PREFIX}/${id}/`)
      .sort('Create', 'Ascend')
      .limit(1)
      .exec()
    return res.kvs[0]?.key.toString().split('/').pop()
  } finally {
    client.close()
  }
}

it('a 20 MB browser upload survives the death of the instance holding its lock', async () => {
  const original = randomBytes(SIZE)
  const file = join(dir, 'upload.bin')
  writeFileSync(file, original)
  const page = await browser.newPage()
  await page.goto(`${deployment.url}/`)
  expect(await page.locator('h1').textContent()).toBe('Resumable upload')
  await page.setInputFiles('#file', file)

  await page.waitForFunction(() => window.uploadState.percent >= 20, undefined, { timeout: 30_000 })
  const url = await page.evaluate(() => window.uploadState.url)
  const id = String(url).split('/').pop() ?? ''
  // The PATCH in flight holds the lock: find its instance through etcd, and kill it. The page
  // names the same instance, with the command to kill it. The two agree once the PATCH holds:
  // until then etcd's oldest entry can still be the key the POST's instance kept, given up as
  // the PATCH's instance queues (the page's percent counts bytes the browser has buffered).
  let seen = 'nothing yet'
  let victim: (typeof deployment.instances)[number] | undefined
  const deadline = Date.now() + 5_000
  while (victim === undefined && Date.now() < deadline) {
    const holder = await holderOf(id)
    const sessions = await Promise.all(deployment.instances.map((i) => i.session()))
    const inEtcd = deployment.instances[sessions.indexOf(holder)]
    const shown = await page.evaluate(() => window.uploadState.holder?.pid)
    if (inEtcd !== undefined && shown === inEtcd.pid) victim = inEtcd
    else {
      seen = `etcd's oldest entry ${holder} (sessions ${sessions}), the page's pid ${shown}`
      await setTimeout(100)
    }
  }
  expect(victim, `one holder in etcd and on the page within 5 s: ${seen}`).toBeDefined()
  expect(await page.locator('#holder').textContent()).toContain(`kill -9 ${victim?.pid}`)
  const percentAtKill = await page.evaluate(() => window.uploadState.percent)
  await victim?.kill('SIGKILL')
  if (process.env.SCREENSHOT_DIR) {
    await page.screenshot({ path: join(process.env.SCREENSHOT_DIR, 'upload-resuming.png') })
  }

  await page.waitForFunction(() => window.uploadState.done || window.uploadState.error, undefined, {
    timeout: 90_000,
  })
  const state = await page.evaluate(() => window.uploadState)
  if (process.env.SCREENSHOT_DIR) {
    await page.screenshot({ path: join(process.env.SCREENSHOT_DIR, 'upload-done.png') })
  }
  expect(state.error).toBeNull()
  expect(state.retries, 'the client had to resume').toBeGreaterThan(0)
  expect(percentAtKill).toBeLessThan(100)
  const stored = readFileSync(join(dir, 'files', id))
  expect(stored.length).toBe(SIZE)
  expect(sha256(stored)).toBe(sha256(original))
  const survivor = deployment.instances.find((i) => i !== victim)
  expect(lines.some((l) => l.startsWith(`[${survivor?.name}] lock ${id} acquired`))).toBe(true)
  expect(
    lines.some((l) => l.startsWith(`[deployment] ${victim?.name} (pid ${victim?.pid}) died`)),
  ).toBe(true)
}, 150_000)

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** What the upload page keeps in `window.uploadState` (the test's lib has no DOM types). */
interface UploadState {
  percent: number
  done: boolean
  error: string | null
  url: string | null
  retries: number
  holder: { instance: string; pid: number } | null
}
declare const window: { uploadState: UploadState }
