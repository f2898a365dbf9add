/**
 * The examples' graceful shutdown, as a deployment sees it: SIGTERM during a slow PATCH answers
 * the PATCH, exits and leaves no lease in etcd; Ctrl-C on `examples/express.ts`, then a second
 * one while it shuts down, still revokes the session every time.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { type IncomingMessage, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runProcess } from './harness/child.js'
import {
  deferCleanup,
  endpoints,
  etcdctl,
  freePort,
  keysUnder,
  newClient,
  uniquePrefix,
  within,
} from './harness/index.js'

const TUS = { 'Tus-Resumable': '1.0.0' }
const LENGTH = 2_000_000

async function filesDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-shutdown-'))
  deferCleanup(() => rm(directory, { recursive: true, force: true }))
  return directory
}

async function createUpload(origin: string): Promise<string> {
  const created = await fetch(`${origin}/files`, {
    method: 'POST',
    headers: { ...TUS, 'Upload-Length': String(LENGTH) },
  })
  expect(created.status).toBe(201)
  return new URL(created.headers.get('location') ?? '', origin).href
}

/**
 * A PATCH whose body trickles in (10 KB every 20 ms, far slower than the whole upload needs),
 * as a slow client's does. Resolves with the answer, or with the error that ended it.
 */
function slowPatch(location: string): Promise<IncomingMessage | Error> {
  return new Promise((resolve) => {
    const patch = request(location, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(LENGTH),
      },
    })
    let sent = 0
    const timer = setInterval(() => {
      if (sent >= LENGTH) return clearInterval(timer)
      patch.write(Buffer.alloc(10_000, 1))
      sent += 10_000
    }, 20)
    const done = (result: IncomingMessage | Error) => {
      clearInterval(timer)
      resolve(result)
    }
    patch.on('response', (response) => {
      response.resume()
      done(response)
    })
    patch.on('error', done)
  })
}

async function leaseIsGone(lease: string): Promise<boolean> {
  // etcdctl prints lease ids in hex, as the examples log them.
  const list = await etcdctl(['lease', 'list'])
  return !list.split('\n').some((line) => line.trim() === lease)
}

describe('SIGTERM to examples/node-http.ts during a slow PATCH', () => {
  it('answers the PATCH with what it received, exits 0 and leaves no lease or lock key', async () => {
    const prefix = uniquePrefix('sigterm')
    const port = await freePort()
    const child = runProcess(process.execPath, ['--import', 'tsx', 'examples/node-http.ts'], {
      ETCD_ENDPOINTS: endpoints().join(','),
      PORT: String(port),
      FILES_DIR: await filesDirectory(),
      PREFIX: prefix,
      INSTANCE_NAME: 'tus1',
    })
    deferCleanup(() => child.kill())
    const granted = await within(
      child.waitForLine((line) => /etcd session [0-9a-f]+ granted/.test(line)),
      20_000,
      'the instance is up',
    )
    const lease = /etcd session ([0-9a-f]+) granted/.exec(granted)?.[1] ?? ''
    await within(
      child.waitForLine((line) => line.includes(`127.0.0.1:${port}/files`)),
      20_000,
      'the instance is ready',
    )
    const location = await createUpload(`http://127.0.0.1:${port}`)
    const id = location.split('/').pop() ?? ''
    const answer = slowPatch(location)
    // The POST took the lock first; the PATCH's is the second.
    const acquired = () =>
      child.lines().filter((line) => line.includes(`lock ${id} acquired`)).length >= 2
    await within(child.waitForLine(acquired), 10_000, 'the PATCH holds the lock')
    const started = performance.now()
    child.process.kill('SIGTERM')
    const response = await within(answer, 15_000, 'an answer to the PATCH')
    if (response instanceof Error) throw new Error(`the PATCH got no answer: ${response.message}`)
    expect(response.statusCode).toBe(204)
    const offset = Number(response.headers['upload-offset'])
    expect(offset).toBeGreaterThan(0)
    expect(offset).toBeLessThan(LENGTH)
    expect(await within(child.exited(), 15_000, 'the instance exits')).toBe(0)
    const tookMs = performance.now() - started
    console.log(
      `[figure] SIGTERM -> PATCH answered (offset ${offset}) and exit: ${Math.round(tookMs)} ms`,
    )
    expect(await leaseIsGone(lease)).toBe(true)
    const client = newClient()
    expect(await keysUnder(client, `${prefix}/${id}/`)).toEqual([])
    expect(await keysUnder(client, `${prefix}/.kvlease/`)).toEqual([])
  })
})

describe('Ctrl-C twice on examples/express.ts with an upload in flight', () => {
  it('revokes the session every time, though a second SIGINT comes while it shuts down', {
    timeout: 120_000,
  }, async () => {
    const tries = 5
    for (let attempt = 0; attempt < tries; attempt++) {
      const port = await freePort()
      // Started as its header says, in a process group of its own: a terminal's Ctrl-C reaches
      // the whole foreground group. (Not through npx tsx: the tsx launcher answers a repeated
      // signal by SIGKILLing a child whose event loop is busy for 60 ms, which no handler
      // survives; the README says so.)
      const server = runProcess(
        process.execPath,
        ['--import', 'tsx', 'examples/express.ts'],
        {
          ETCD_ENDPOINTS: endpoints().join(','),
          PORT: String(port),
          FILES_DIR: await filesDirectory(),
        },
        { detached: true },
      )
      deferCleanup(() => server.kill())
      const pid = server.process.pid ?? 0
      const until = (matches: (line: string) => boolean, what: string) =>
        within(server.waitForLine(matches), 30_000, what)
      await until((line) => line.startsWith('tus endpoint'), 'express.ts listens')
      const granted = server.lines().find((line) => /etcd session [0-9a-f]+ granted/.test(line))
      const lease = /etcd session ([0-9a-f]+) granted/.exec(granted ?? '')?.[1] ?? ''
      const location = await createUpload(`http://127.0.0.1:${port}`)
      const id = location.split('/').pop() ?? ''
      const answer = slowPatch(location)
      // The POST took the lock first; the PATCH's is the second.
      await until(
        () => server.lines().filter((line) => line.includes(`lock ${id} acquired`)).length >= 2,
        'the PATCH holds the lock',
      )
      process.kill(-pid, 'SIGINT')
      // A second Ctrl-C (or a wrapper's relay of the first) while the shutdown drains.
      await until((line) => line.startsWith('SIGINT: shutting down'), 'the shutdown starts')
      process.kill(-pid, 'SIGINT')
      await within(server.exited(), 20_000, `the server exits (try ${attempt + 1})`)
      const response = await within(answer, 5_000, 'the PATCH ends')
      const offset = response instanceof Error ? -1 : Number(response.headers['upload-offset'])
      expect({ attempt, status: (response as IncomingMessage).statusCode }).toEqual({
        attempt,
        status: 204,
      })
      expect(offset).toBeGreaterThan(0)
      expect(offset).toBeLessThan(LENGTH)
      expect({ attempt, gone: await leaseIsGone(lease) }).toEqual({ attempt, gone: true })
      expect(server.lines()).toContain(
        'SIGINT again: still shutting down (the etcd session is revoked first)',
      )
    }
  })
})
