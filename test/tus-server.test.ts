import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer, type Server as HttpServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import { Upload } from 'tus-js-client'
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../src/index.js'
import {
  deferCleanup,
  keysUnder,
  newClient,
  signal,
  uniquePrefix,
  within,
} from './harness/index.js'

const LOCK_DRAIN_TIMEOUT = 1_000
const TUS = { 'Tus-Resumable': '1.0.0' }

/**
 * One tus instance: @tus/server + FileStore on the shared directory + its own Etcd3Locker.
 * Upload metadata lives in .json files beside the uploads, or in etcd (`locker.kvStore()`).
 */
async function tusInstance(
  directory: string,
  prefix: string,
  metadata: 'files' | 'etcd' = 'files',
  lockers?: Etcd3Locker[],
): Promise<string> {
  const locker = new Etcd3Locker(newClient(), { prefix, ttl: 10 })
  lockers?.push(locker)
  const configstore = metadata === 'etcd' ? locker.kvStore() : undefined
  const tus = new Server({
    path: '/files',
    datastore: new FileStore({ directory, configstore }),
    locker,
    lockDrainTimeout: LOCK_DRAIN_TIMEOUT,
  })
  const http: HttpServer = createServer((req, res) => tus.handle(req, res))
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  deferCleanup(async () => {
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
    await locker.close()
  })
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`
}

describe('@tus/server with Etcd3Locker on two instances', () => {
  it('HEAD on B interrupts a slow PATCH on A; the client resumes on B and the file is exact', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-files-'))
    deferCleanup(() => rm(directory, { recursive: true, force: true }))
    const prefix = uniquePrefix('tus')
    const lockers: Etcd3Locker[] = []
    const a = await tusInstance(directory, prefix, 'files', lockers)
    const b = await tusInstance(directory, prefix)
    const data = randomBytes(256 * 1024)

    const created = await fetch(`${a}/files`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': String(data.length) },
    })
    expect(created.status).toBe(201)
    const uploadPath = new URL(created.headers.get('location') ?? '').pathname

    const aHolds = signal()
    lockers[0]?.on('lockAcquired', () => aHolds.fire())
    // A slow PATCH on A: the first 100 KiB now, the rest never (the client stalls).
    const firstPart = data.subarray(0, 100 * 1024)
    const slowPatch = request(`${a}${uploadPath}`, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
        'Content-Length': String(data.length),
      },
    })
    const slowPatchEnded = new Promise<string>((resolve) => {
      slowPatch.on('response', (res) => {
        res.resume()
        res.on('end', () => resolve(`response ${res.statusCode}`))
        res.on('error', () => resolve('response aborted'))
      })
      slowPatch.on('error', () => resolve('connection closed'))
    })
    await new Promise<void>((resolve) => slowPatch.write(firstPart, () => resolve()))
    // Only once A's PATCH holds the lock: a HEAD before that would simply go first.
    await within(aHolds.promise, 2_000, "A's PATCH holds the lock")

    // The client lost patience and resumes through the load balancer, which picks B.
    const headStarted = Date.now()
    const head = await within(
      fetch(`${b}${uploadPath}`, { method: 'HEAD', headers: TUS }),
      LOCK_DRAIN_TIMEOUT + 2_000,
      'HEAD on B',
    )
    expect(Date.now() - headStarted).toBeLessThan(LOCK_DRAIN_TIMEOUT + 2_000)
    expect(head.status).toBe(200)
    const offset = Number(head.headers.get('upload-offset'))
    expect(offset).toBeGreaterThanOrEqual(0)
    expect(offset).toBeLessThanOrEqual(firstPart.length)
    await within(slowPatchEnded, 2_000, 'the slow PATCH on A was ended')

    const resumed = await fetch(`${b}${uploadPath}`, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': String(offset),
      },
      body: data.subarray(offset),
    })
    expect(resumed.status).toBe(204)
    expect(resumed.headers.get('upload-offset')).toBe(String(data.length))

    const stored = await readFile(join(directory, uploadPath.split('/').pop() ?? ''))
    expect(stored.equals(data)).toBe(true)
  })
})

async function sharedDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-files-'))
  deferCleanup(() => rm(directory, { recursive: true, force: true }))
  return directory
}

describe('FileStore with its metadata in etcd (configstore: locker.kvStore())', () => {
  it('passes a full tus upload by tus-js-client; the metadata is in etcd, not on disk', async () => {
    const directory = await sharedDirectory()
    const prefix = uniquePrefix('tus-kv')
    const endpoint = `${await tusInstance(directory, prefix, 'etcd')}/files`
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const url = await new Promise<string>((resolve, reject) => {
      const upload = new Upload(data, {
        endpoint,
        chunkSize: 1024 * 1024,
        metadata: { filename: 'data.bin' },
        retryDelays: [],
        onError: reject,
        onSuccess: () => resolve(upload.url ?? ''),
      })
      upload.start()
    })
    const id = url.split('/').pop() ?? ''
    // Buffer.equals: a deep toEqual of megabytes blocks the event loop for seconds.
    expect((await readFile(join(directory, id))).equals(data)).toBe(true)
    expect(await readdir(directory)).toEqual([id])
    const stored = JSON.parse((await newClient().get(`${prefix}/.kv/${id}`).string()) ?? '{}')
    expect(stored).toMatchObject({ id, size: data.length, metadata: { filename: 'data.bin' } })
  })

  it('two instances serve HEAD and PATCH of one upload alternately, with correct offsets', async () => {
    const directory = await sharedDirectory()
    const prefix = uniquePrefix('tus-alt')
    const instances = [
      await tusInstance(directory, prefix, 'etcd'),
      await tusInstance(directory, prefix, 'etcd'),
    ]
    const data = randomBytes(6 * 64 * 1024)
    const created = await fetch(`${instances[0]}/files`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': String(data.length) },
    })
    expect(created.status).toBe(201)
    const path = new URL(created.headers.get('location') ?? '').pathname

    let offset = 0
    for (let round = 0; round < 6; round++) {
      const headOn = instances[round % 2] ?? ''
      const patchOn = instances[(round + 1) % 2] ?? ''
      const head = await fetch(`${headOn}${path}`, { method: 'HEAD', headers: TUS })
      expect(head.status).toBe(200)
      expect(Number(head.headers.get('upload-offset'))).toBe(offset)
      expect(Number(head.headers.get('upload-length'))).toBe(data.length)
      const chunk = data.subarray(offset, offset + 64 * 1024)
      const patch = await fetch(`${patchOn}${path}`, {
        method: 'PATCH',
        headers: {
          ...TUS,
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Offset': String(offset),
        },
        body: chunk,
      })
      expect(patch.status).toBe(204)
      offset += chunk.length
      expect(Number(patch.headers.get('upload-offset'))).toBe(offset)
    }
    expect(offset).toBe(data.length)
    expect((await readFile(join(directory, path.split('/').pop() ?? ''))).equals(data)).toBe(true)
    expect(await keysUnder(newClient(), `${prefix}/.kv/`)).toHaveLength(1)
  })
})
