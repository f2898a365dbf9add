/** The copy-paste examples run with the one command at their top, and do what they say. */
import { execFile, execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout } from 'node:timers/promises'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { startTusInstance } from '../examples/node-http.js'
import { startRoundRobin } from '../examples/round-robin-proxy.js'
import { type Child, runProcess } from './harness/child.js'
import {
  deferCleanup,
  endpoints,
  freePort,
  keysUnder,
  newClient,
  uniquePrefix,
  within,
} from './harness/index.js'

const TUS = { 'Tus-Resumable': '1.0.0' }
const run = promisify(execFile)

async function runExample(file: string, env: Record<string, string>) {
  const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-example-'))
  deferCleanup(() => rm(directory, { recursive: true, force: true }))
  const port = await freePort()
  const child = runProcess(process.execPath, ['--import', 'tsx', file], {
    ETCD_ENDPOINTS: endpoints().join(','),
    PORT: String(port),
    FILES_DIR: directory,
    ...env,
  })
  deferCleanup(() => child.kill())
  await child.waitForLine((line) => line.includes(`127.0.0.1:${port}/files`))
  return { child, origin: `http://127.0.0.1:${port}` }
}

describe.each([
  ['examples/express.ts', {}],
  ['examples/node-http.ts', { PREFIX: uniquePrefix('example') }],
])('%s', (file, env) => {
  it('creates and completes an upload, counts it in /metrics, and revokes its session on SIGTERM', async () => {
    const { child, origin } = await runExample(file, env)
    const { location, patched } = await createAndPatchHello(origin, 5)
    expect(patched.status).toBe(204)
    expect(patched.headers.get('upload-offset')).toBe('5')

    const metrics = await (await fetch(`${origin}/metrics`)).text()
    expect(metrics).toMatch(/^tus_etcd3_locker_lock_acquisitions_total 2$/m)

    // The instance caches the upload's metadata under a leasing key on its session...
    const prefix = 'PREFIX' in env ? String(env.PREFIX) : '/tusd'
    const id = location.split('/').pop() ?? ''
    const leasingKey = `${prefix}/.kvlease/${id}`
    expect(await keysUnder(newClient(), leasingKey)).toEqual([leasingKey])
    await child.kill('SIGTERM')
    expect(child.process.exitCode).toBe(0)
    // ...which is gone at once, not a TTL later: SIGTERM revoked the session.
    expect(await keysUnder(newClient(), leasingKey)).toEqual([])
  })
})

describe('examples/round-robin-proxy.ts', () => {
  it('a client that goes away mid-PATCH ends the request at the instance, which releases the lock', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-proxy-'))
    deferCleanup(() => rm(directory, { recursive: true, force: true }))
    const instance = await startTusInstance({
      endpoints: endpoints(),
      directory,
      port: 0,
      prefix: uniquePrefix('proxy-abort'),
    })
    deferCleanup(() => instance.close())
    const proxy = await startRoundRobin([new URL(instance.url).origin])
    deferCleanup(() => proxy.close())
    const created = await fetch(`${proxy.url}/files`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': '1000000' },
    })
    const location = new URL(created.headers.get('location') ?? '', proxy.url)
    const acquired = new Promise<void>((resolve) =>
      instance.locker.once('lockAcquired', () => resolve()),
    )
    const released = new Promise<void>((resolve) =>
      instance.locker.once('lockReleased', () => resolve()),
    )
    const patch = request(location, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': '1000000',
      },
    })
    patch.on('error', () => {}) // we abort it ourselves
    patch.write(Buffer.alloc(1000)) // a first slice, then the client vanishes
    await within(acquired, 5_000, 'the PATCH holds the lock')
    patch.destroy()
    await within(released, 10_000, 'the instance releases the lock after the client left')
  })
})

describe('npm run upload (examples/upload.ts)', () => {
  it.each([
    { given: 'a file that does not exist', path: '/nonexistent/video.mp4', why: 'no such file' },
    { given: 'a directory', path: tmpdir(), why: 'not a file' },
  ])('$given: one line saying so, exit 2, no stack trace', async ({ path, why }) => {
    const failed = await run(process.execPath, [
      '--import',
      'tsx',
      'examples/upload.ts',
      path,
    ]).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error,
    )
    expect(failed?.code).toBe(2)
    expect(failed?.stderr?.trim()).toBe(`upload: cannot upload ${path}: ${why}`)
  })
})

describe('npm start (examples/start.ts)', () => {
  it('brings up etcd, two instances and the proxy; the page answers; Ctrl-C stops everything', {
    timeout: 90_000,
  }, async () => {
    const directory = await startDirectory()
    const port = await freePort()
    // Without ETCD_ENDPOINTS, as a new user runs it: it starts its own etcd.
    const start = runProcess(process.execPath, ['--import', 'tsx', 'examples/start.ts'], {
      ETCD_ENDPOINTS: undefined,
      PORT: String(port),
      FILES_DIR: directory,
    })
    deferCleanup(() => stopStart(start))
    await within(
      start.waitForLine((line) => line.startsWith('Ctrl-C stops everything')),
      60_000,
      'npm start is up',
    )
    const pids = start
      .lines()
      .flatMap((line) => [...line.matchAll(/\(pid (\d+);/g)].map((m) => Number(m[1])))
    expect(pids).toHaveLength(2)
    const page = await fetch(`http://127.0.0.1:${port}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('Resumable upload')
    const created = await fetch(`http://127.0.0.1:${port}/files`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': '1' },
    })
    expect(created.status).toBe(201)

    await start.kill('SIGINT')
    expect(start.process.exitCode).toBe(0)
    expect(start.lines().filter((l) => l.includes('revoked (shutdown)'))).toHaveLength(2)
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow() // instances are gone
  })

  it.each([
    { when: 'once it is up', line: 'Ctrl-C stops everything', revoked: 2 },
    // Whether an instance got its session by then varies: what it must do is stop.
    { when: 'while its instances start', line: 'etcd: ', revoked: undefined },
  ])(
    'SIGTERM to the npm process alone (as a supervisor sends it) $when stops everything it started',
    {
      timeout: 90_000,
    },
    async ({ line: ready, revoked }) => {
      const directory = await startDirectory()
      const port = await freePort()
      // In a process group of its own, as in a terminal, so that a failed run is stopped as Ctrl-C
      // stops it; the test itself signals npm alone.
      const npm = runProcess(
        'npm',
        ['start', '--silent'],
        { ETCD_ENDPOINTS: undefined, PORT: String(port), FILES_DIR: directory },
        { detached: true },
      )
      const npmPid = npm.process.pid
      if (npmPid === undefined) throw new Error('npm start did not spawn')
      let started: number[] = []
      let passed = false
      deferCleanup(async () => {
        if (passed) return
        signalGroup(npmPid, 'SIGINT')
        const deadline = Date.now() + 20_000
        while (groupAlive(npmPid) && Date.now() < deadline) await setTimeout(200)
        signalGroup(npmPid, 'SIGKILL')
        // etcd runs in a group of its own: seen below npm in this run, and not stopped above.
        for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL')
      })
      await within(
        npm.waitForLine((line) => line.startsWith(ready)),
        60_000,
        `npm start printed "${ready}"`,
      )
      // npm's shell (where sh runs its command as a child), the deployment, its etcd, and the
      // instances started so far; those started later are added as they are seen.
      started = descendantsOf([npmPid])
      expect(started.length).toBeGreaterThanOrEqual(3)

      await npm.kill('SIGTERM')
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline) {
        const table = processTable() // one `ps` a poll, for every pid
        for (const pid of descendantsOf(started, table))
          if (!started.includes(pid)) started.push(pid)
        if (!started.some((pid) => alive(pid, table))) break
        await setTimeout(200)
      }
      const left = processTable()
      expect(
        started.filter((pid) => alive(pid, left)),
        'processes left running after npm exited',
      ).toEqual([])
      // As on Ctrl-C: each instance revoked its session.
      if (revoked !== undefined) {
        expect(npm.lines().filter((l) => l.includes('revoked (shutdown)'))).toHaveLength(revoked)
      }
      // A second npm start could listen on the port again.
      await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow()
      passed = true
    },
  )

  it('keeps the uploads across a restart (etcd data beside the files) and starts a killed instance again', {
    timeout: 180_000,
  }, async () => {
    const directory = await startDirectory()
    const port = await freePort()
    const origin = `http://127.0.0.1:${port}`
    const run = async () => {
      const start = runProcess(process.execPath, ['--import', 'tsx', 'examples/start.ts'], {
        ETCD_ENDPOINTS: undefined,
        PORT: String(port),
        FILES_DIR: directory,
        RESTART_AFTER_MS: '300',
      })
      deferCleanup(() => stopStart(start))
      await within(
        start.waitForLine((line) => line.startsWith('Ctrl-C stops everything')),
        60_000,
        'npm start is up',
      )
      return start
    }
    const first = await run()
    const { location, patched } = await createAndPatchHello(origin, 10)
    expect(patched.status).toBe(204)

    // The printed command kills tus1; the deployment says so, and brings it back.
    const command = first.lines().find((line) => /kill -9 \d+/.test(line)) ?? ''
    const pid = Number(/kill -9 (\d+)/.exec(command)?.[1])
    process.kill(pid, 'SIGKILL')
    await within(
      first.waitForLine((line) => line.startsWith(`[deployment] tus1 (pid ${pid}) died (SIGKILL)`)),
      5_000,
      'the death of tus1 is told',
    )
    await within(
      first.waitForLine((line) => /^\[deployment\] tus1 is back \(pid \d+\)/.test(line)),
      30_000,
      'tus1 is back',
    )
    await first.kill('SIGINT')
    expect(first.process.exitCode).toBe(0)

    // A second npm start on the same files finds the upload's metadata: it resumes.
    const second = await run()
    for (let i = 0; i < 2; i++) {
      const head = await fetch(location, { method: 'HEAD', headers: TUS }) // each instance once
      expect(head.status).toBe(200)
      expect(head.headers.get('upload-offset')).toBe('5')
    }
    await second.kill('SIGINT')
    expect(second.process.exitCode).toBe(0)
  })
})

/** Creates an upload of `length` bytes at `origin` and PATCHes its first five: "hello". */
async function createAndPatchHello(origin: string, length: number) {
  const created = await fetch(`${origin}/files`, {
    method: 'POST',
    headers: { ...TUS, 'Upload-Length': String(length) },
  })
  expect(created.status).toBe(201)
  const location = new URL(created.headers.get('location') ?? '', origin).href
  const patched = await fetch(location, {
    method: 'PATCH',
    headers: { ...TUS, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    body: 'hello',
  })
  return { location, patched }
}

/**
 * Stops an npm start left running by a failed test as Ctrl-C does, so that it stops its etcd and
 * instances (their own process groups) too; SIGKILL only if that takes over 20 s.
 */
async function stopStart(start: Child): Promise<void> {
  await within(start.kill('SIGINT'), 20_000, 'npm start stops on SIGINT').catch(() =>
    start.kill('SIGKILL'),
  )
}

/** A files directory for npm start, removed after the test with the etcd data kept beside it. */
async function startDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-start-'))
  deferCleanup(async () => {
    await rm(directory, { recursive: true, force: true })
    await rm(`${directory}-etcd`, { recursive: true, force: true })
  })
  return directory
}

/** Every process now: pid, parent, group and whether it has exited (a zombie), from `ps`. */
function processTable(): Array<{ pid: number; ppid: number; pgid: number; exited: boolean }> {
  return execFileSync('ps', ['-A', '-o', 'pid=,ppid=,pgid=,stat='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((row) => row.trim().split(/\s+/))
    .map(([pid, ppid, pgid, stat]) => ({
      pid: Number(pid),
      ppid: Number(ppid),
      pgid: Number(pgid),
      exited: stat?.startsWith('Z') ?? false,
    }))
}

/** Whether a process of group `pgid` has not exited. */
function groupAlive(pgid: number): boolean {
  return processTable().some((p) => p.pgid === pgid && !p.exited)
}

/** Sends `signal` to process group `pgid`, gone or not. */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // the group is gone
  }
}

/** Every process below `roots` in `table`. */
function descendantsOf(roots: number[], table = processTable()): number[] {
  const found: number[] = []
  let frontier = roots
  while (frontier.length > 0) {
    const next = table.filter((p) => frontier.includes(p.ppid)).map((p) => p.pid)
    found.push(...next)
    frontier = next
  }
  return found
}

/** Whether `pid` is a process that has not exited (a zombie counts as exited). */
function alive(pid: number, table = processTable()): boolean {
  return table.some((p) => p.pid === pid && !p.exited)
}
