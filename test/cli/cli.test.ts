import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { escapeId, leaseHex } from '../../src/keys.js'
import { type Child, runTs } from '../harness/child.js'
import {
  deferCleanup,
  endpoints,
  keysUnder,
  newClient,
  uniquePrefix,
  untilKeyCount,
  within,
} from '../harness/index.js'

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url))

interface CliRun {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

/** Runs the CLI from source (no build) and collects its output; killed by pid after 30 s. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const started = Date.now()
  // Endpoints only from the arguments, unless a test sets ETCD_ENDPOINTS itself.
  const { ETCD_ENDPOINTS: _, ...inherited } = process.env
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s
  })
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s
  })
  const guard = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 30_000)
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(guard)
      resolve({ code, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** A fixture process, killed by pid after the test. */
function fixture(file: string, args: string[]): Child {
  const child = runTs(`../fixtures/${file}`, args)
  deferCleanup(() => child.kill())
  return child
}

const eps = () => endpoints().join(',')

describe('tus-etcd3-locker CLI', () => {
  it('locks and sessions show the holder and the waiter of two processes, in queue order', async () => {
    const prefix = uniquePrefix('cli-locks')
    const id = 'up/load.1'
    const queue = `${prefix}/${escapeId(id)}/`
    const holder = fixture('hold-lock.ts', [eps(), prefix, id, '10'])
    await within(holder.waitForLine('held'), 20_000, 'holder holds')
    const waiter = fixture('hold-lock.ts', [eps(), prefix, id, '10'])
    const client = newClient()
    await within(untilKeyCount(client, queue, 2), 20_000, 'waiter queued')
    expect(waiter.lines()).toEqual([]) // still waiting
    const [holderLease, waiterLease] = (
      await client.getAll().prefix(queue).sort('Create', 'Ascend').keys()
    ).map((key) => key.slice(queue.length))

    // A third session written by hand: an id the locker escapes, and a KV value and leasing key.
    const lease = client.lease(10)
    deferCleanup(() => lease.revoke())
    const otherLease = leaseHex(await lease.grant())
    const odd = '.odd/id%'
    await lease.put(`${prefix}/${escapeId(odd)}/${otherLease}`).value('')
    await lease.put(`${prefix}/.kvlease/meta/1`).value('')
    await client.put(`${prefix}/.kv/meta/1`).value('{"size":1}')

    const at = ['--endpoints', eps(), '--prefix', prefix]
    const [text, json, sessionsText, sessionsJson] = await Promise.all([
      cli(['locks', '--prefix', `${prefix.slice(1)}/`], { ETCD_ENDPOINTS: eps() }),
      cli(['locks', '--json', ...at]),
      cli(['sessions', ...at]),
      cli([...at, '--json', 'sessions']),
    ])

    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^ID +ROLE +LEASE +TTL$/),
      expect.stringMatching(new RegExp(`^\\.odd/id% +holder +${otherLease} +\\d+s$`)),
      expect.stringMatching(new RegExp(`^up/load\\.1 +holder +${holderLease} +\\d+s$`)),
      expect.stringMatching(new RegExp(`^up/load\\.1 +waiter 1 +${waiterLease} +\\d+s$`)),
    ])

    expect(json.code, json.stderr).toBe(0)
    const doc = JSON.parse(json.stdout)
    expect(doc.prefix).toBe(prefix)
    expect(doc.locks.map((l: { id: string }) => l.id)).toEqual([odd, id])
    const upload = doc.locks[1]
    expect(upload.holder).toMatchObject({ lease: holderLease, key: `${queue}${holderLease}` })
    expect(upload.waiters.map((w: { lease: string }) => w.lease)).toEqual([waiterLease])
    for (const entry of [upload.holder, ...upload.waiters]) {
      expect(entry.ttl).toBeGreaterThan(0)
      expect(entry.ttl).toBeLessThanOrEqual(10)
    }

    expect(sessionsText.code, sessionsText.stderr).toBe(0)
    const rows = sessionsText.stdout.trimEnd().split('\n')
    expect(rows[0]).toMatch(/^LEASE +TTL +GRANTED +HOLDS +WAITS +KV-LEASES$/)
    expect(rows).toContainEqual(
      expect.stringMatching(new RegExp(`^${holderLease} +\\d+s +10s +1 +0 +0$`)),
    )
    expect(rows).toContainEqual(
      expect.stringMatching(new RegExp(`^${waiterLease} +\\d+s +10s +0 +1 +0$`)),
    )
    expect(rows).toContainEqual(
      expect.stringMatching(new RegExp(`^${otherLease} +\\d+s +10s +1 +0 +1$`)),
    )
    expect(rows).toHaveLength(4)

    expect(sessionsJson.code, sessionsJson.stderr).toBe(0)
    const sessions = JSON.parse(sessionsJson.stdout).sessions as Array<Record<string, unknown>>
    const byLease = new Map(sessions.map((s) => [s.lease, s]))
    expect(byLease.get(holderLease)).toMatchObject({ grantedTtl: 10, holds: [id], waits: [] })
    expect(byLease.get(waiterLease)).toMatchObject({ grantedTtl: 10, holds: [], waits: [id] })
    expect(byLease.get(otherLease)).toMatchObject({ holds: [odd], kvLeases: ['meta/1'] })
    console.log(
      `[figure] cli locks/sessions (4 runs in parallel): ${[text, json, sessionsText, sessionsJson].map((r) => r.ms).join(', ')} ms`,
    )
  })

  it("release makes the holder's requestRelease fire and exits 0 once it let go", async () => {
    const prefix = uniquePrefix('cli-release')
    const id = 'upload-r'
    const holder = fixture('yield-lock.ts', [eps(), prefix, id, '10'])
    await within(holder.waitForLine('held'), 20_000, 'holder holds')
    const [holderKey] = await keysUnder(newClient(), `${prefix}/${id}/`)

    const run = await cli(['release', id, '--endpoints', eps(), '--prefix', prefix, '--json'])

    expect(run.code, run.stderr).toBe(0)
    expect(holder.lines()).toEqual(['held', 'release-requested', 'released'])
    const doc = JSON.parse(run.stdout)
    expect(doc).toMatchObject({
      id,
      released: true,
      holder: { lease: holderKey?.split('/').pop() },
    })
    // Neither the holder's key nor ours is left.
    expect(await keysUnder(newClient(), `${prefix}/`)).toEqual([])
    console.log(`[figure] cli release, holder lets go: ${run.ms} ms (waited ${doc.waitedMs} ms)`)
  })

  it('release of a holder that keeps the lock exits 3 after --timeout and leaves no key of ours; no lock exits 4', async () => {
    const prefix = uniquePrefix('cli-stuck')
    const id = 'upload-s'
    const holder = fixture('hold-lock.ts', [eps(), prefix, id, '10'])
    await within(holder.waitForLine('held'), 20_000, 'holder holds')
    const before = await keysUnder(newClient(), `${prefix}/`)

    const at = ['--endpoints', eps(), '--prefix', prefix]
    const [stuck, none] = await Promise.all([
      cli(['release', id, '--timeout', '1500', ...at]),
      cli(['release', 'nobody-holds-this', ...at]),
    ])

    expect(stuck.code, stuck.stderr).toBe(3)
    expect(stuck.stderr).toMatch(
      /^tus-etcd3-locker: holder [0-9a-f]+ of "upload-s" did not release within 1500 ms\n$/,
    )
    expect(stuck.ms).toBeGreaterThanOrEqual(1_500)
    await within(holder.waitForLine('release-requested'), 5_000, 'holder asked to release')
    expect(await keysUnder(newClient(), `${prefix}/`)).toEqual(before)

    expect(none.code, none.stderr).toBe(4)
    expect(none.stderr).toBe(`tus-etcd3-locker: no lock on "nobody-holds-this" under ${prefix}\n`)
  })

  it('release when others already wait puts no key of its own (the next holder is not asked in vain)', async () => {
    const prefix = uniquePrefix('cli-queued')
    const id = 'upload-q'
    const holder = fixture('hold-lock.ts', [eps(), prefix, id, '10'])
    await within(holder.waitForLine('held'), 20_000, 'holder holds')
    fixture('hold-lock.ts', [eps(), prefix, id, '10']) // a waiter: the holder has been asked
    await within(untilKeyCount(newClient(), `${prefix}/${id}/`, 2), 10_000, 'the waiter queues')
    await within(holder.waitForLine('release-requested'), 5_000, 'the holder is asked')
    const watcher = await newClient().watch().prefix(`${prefix}/`).create()
    deferCleanup(() => watcher.cancel())
    const puts: string[] = []
    watcher.on('put', (kv) => puts.push(kv.key.toString()))

    const run = await cli([
      'release',
      id,
      '--timeout',
      '1000',
      '--endpoints',
      eps(),
      '--prefix',
      prefix,
    ])

    expect(run.code, run.stderr).toBe(3) // hold-lock never lets go
    expect(puts).toEqual([])
  })

  it('--help of each command exits 0 with its usage; bad usage exits 2 with one line', async () => {
    const help = await Promise.all([
      cli(['--help']),
      cli(['locks', '-h']),
      cli(['sessions', '--help']),
      cli(['release', '--help']),
    ])
    const expected = [
      /^Usage: tus-etcd3-locker <command>/,
      /^Usage: tus-etcd3-locker locks/,
      /^Usage: tus-etcd3-locker sessions/,
      /^Usage: tus-etcd3-locker release <id>[\s\S]*--timeout/,
    ]
    help.forEach((run, i) => {
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(expected[i] as RegExp)
      expect(run.stdout).toContain('--endpoints')
    })

    const bad = await Promise.all([
      cli(['lock']),
      cli(['locks', '--endpoint', 'x']),
      cli(['release']),
      cli(['release', 'u', '--timeout', 'soon']),
      cli(['sessions', '--prefix', '/']),
    ])
    const messages = [
      'unknown command "lock"',
      'unknown option --endpoint',
      'release needs the upload id',
      '--timeout must be a whole number of ms',
      '--prefix must name a key space',
    ]
    bad.forEach((run, i) => {
      expect(run.code, run.stderr).toBe(2)
      expect(run.stdout).toBe('')
      expect(run.stderr).toMatch(/^tus-etcd3-locker: [^\n]+\(see tus-etcd3-locker --help\)\n$/)
      expect(run.stderr).toContain(messages[i])
    })
  })

  it('--version and -v print the package version and exit 0, without etcd', async () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string }
    for (const flag of ['--version', '-v']) {
      const run = await cli([flag, '--endpoints', '127.0.0.1:1'])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toBe(`tus-etcd3-locker ${version}\n`)
    }
  })

  it('an unreachable or silent etcd exits 1 with one clear line, within a bound', async () => {
    // A listener that accepts and never answers: the case only a deadline ends.
    const sockets = new Set<Socket>()
    const silent: Server = createServer((socket) => sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    deferCleanup(() => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => silent.close(resolve))
    })
    const address = silent.address()
    const silentEndpoint = `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`

    const [refused, hung, hungRelease] = await Promise.all([
      cli(['locks', '--endpoints', '127.0.0.1:1']),
      cli(['sessions', '--endpoints', silentEndpoint]),
      cli(['release', 'u', '--endpoints', silentEndpoint]),
    ])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(
      /^tus-etcd3-locker: cannot reach etcd at 127\.0\.0\.1:1: connect ECONNREFUSED[^\n]*\n$/,
    )
    for (const run of [hung, hungRelease]) {
      expect(run.code).toBe(1)
      expect(run.stderr).toBe(
        `tus-etcd3-locker: cannot reach etcd at ${silentEndpoint}: no answer within 3 s\n`,
      )
      // Ended by the 3 s call deadline (not before), plus start-up and exit on a busy machine.
      expect(run.ms).toBeGreaterThanOrEqual(3_000)
      expect(run.ms).toBeLessThan(12_000)
    }
    console.log(
      `[figure] cli exit on unreachable etcd: refused ${refused.ms} ms, silent ${hung.ms} / ${hungRelease.ms} ms`,
    )
  })
})
