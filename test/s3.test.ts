/**
 * examples/s3.ts: two instances on one bucket of a local S3 (moto's server), S3Store's cache in
 * etcd (`cache: locker.kvStore()`). S3Store keeps each upload's record (S3 upload id, size,
 * metadata) in its cache; with its default in-memory cache an instance goes on serving an upload
 * another instance deleted (tus-node-server pull request 552), which this file checks does not
 * happen.
 */
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { DefaultHttpStack, type HttpStack, Upload } from 'tus-js-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runProcess } from './harness/child.js'
import {
  deferCleanup,
  endpoints,
  keysUnder,
  newClient,
  uniquePrefix,
  untilNoKeys,
  within,
} from './harness/index.js'
import { type S3Server, startS3Server } from './harness/s3.js'

const TUS = { 'Tus-Resumable': '1.0.0' }
const MiB = 1024 * 1024
/** S3's smallest part (but the last): S3Store keeps a shorter PATCH as a `.part` object. */
const PART_SIZE = 5 * MiB
const BUCKET = 'uploads'

let s3: S3Server
beforeAll(async () => {
  s3 = await startS3Server()
  await s3.createBucket(BUCKET)
})
afterAll(() => s3?.stop())

/** One instance of examples/s3.ts in its own process, as its header comment runs it. */
async function startInstance(name: string, prefix: string) {
  const child = runProcess(process.execPath, ['--import', 'tsx', 'examples/s3.ts'], {
    ETCD_ENDPOINTS: endpoints().join(','),
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: BUCKET,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    S3_PART_SIZE: String(PART_SIZE),
    PORT: '0',
    PREFIX: prefix,
    INSTANCE_NAME: name,
  })
  deferCleanup(() => child.kill())
  const ready = await within(
    child.waitForLine((line) => line.includes('ready at http://')),
    30_000,
    `${name} is ready`,
  )
  const url = /ready at (http:\/\/\S+\/files)/.exec(ready)?.[1] ?? ''
  return { name, child, url, origin: new URL(url).origin }
}

type Instance = Awaited<ReturnType<typeof startInstance>>

async function head(instance: Instance, path: string) {
  const res = await fetch(`${instance.origin}${path}`, { method: 'HEAD', headers: TUS })
  return { status: res.status, offset: res.headers.get('upload-offset') }
}

/** A tus-js-client HTTP stack that sends request i to `instances[i % n]`: a strict round robin. */
function alternating(instances: Instance[]): HttpStack & { served: string[] } {
  const inner = new DefaultHttpStack({})
  const served: string[] = []
  let next = 0
  return {
    served,
    getName: () => 'alternating',
    createRequest: (method, url) => {
      const instance = instances[next++ % instances.length] as Instance
      served.push(`${method} ${instance.name}`)
      const target = new URL(url)
      const origin = new URL(instance.origin)
      target.host = origin.host
      return inner.createRequest(method, target.href)
    },
  }
}

function sha256(data: Buffer | undefined): string {
  return data ? createHash('sha256').update(data).digest('hex') : 'no object'
}

describe('examples/s3.ts: S3Store with cache: locker.kvStore(), two instances', () => {
  it('an upload whose PATCHes alternate between the instances completes; both instances answer its offset after each one, and neither serves an upload the other deleted', async () => {
    const prefix = uniquePrefix('s3')
    const [a, b] = await Promise.all([startInstance('s3-a', prefix), startInstance('s3-b', prefix)])
    const instances = [a, b]

    // tus-js-client, chunks of 4 MiB: parts of 5 MiB, each PATCH's rest kept as a `.part` object
    // for the next one, so S3Store uses ListParts and the .part's Put, Head, Get and Delete too.
    // Offsets come from S3 (ListParts + the .part's size), not from the cache.
    const data = randomBytes(14 * MiB + 18)
    const stack = alternating(instances)
    const etcd = newClient()
    const afterPatch: Array<{
      on: string
      offset: string | null
      heads: unknown[]
      inEtcd: boolean
    }> = []
    const url = await within(
      new Promise<string>((resolve, reject) => {
        const upload = new Upload(data, {
          endpoint: a.url,
          chunkSize: 4 * MiB,
          httpStack: stack,
          retryDelays: [],
          onAfterResponse: async (req, res) => {
            if (req.getMethod() !== 'PATCH') return
            const path = new URL(req.getURL()).pathname
            const on = stack.served.at(-1) ?? ''
            const heads = [await head(a, path), await head(b, path)]
            const id = path.split('/').pop() ?? ''
            const inEtcd = (await keysUnder(etcd, `${prefix}/.kv/${id}`)).length === 1
            afterPatch.push({ on, offset: res.getHeader('Upload-Offset') ?? null, heads, inEtcd })
          },
          onError: reject,
          onSuccess: () => resolve(upload.url ?? ''),
        })
        upload.start()
      }),
      60_000,
      'the upload completes',
    )
    expect(stack.served).toEqual([
      'POST s3-a',
      'PATCH s3-b',
      'PATCH s3-a',
      'PATCH s3-b',
      'PATCH s3-a',
    ])
    // After each PATCH, HEAD on either instance gives the offset that PATCH answered, and the
    // upload's record is in etcd (the last PATCH deletes it; the HEADs after it read it back).
    const offsets = [4 * MiB, 8 * MiB, 12 * MiB, data.length].map(String)
    expect(afterPatch).toEqual(
      offsets.map((offset, i) => ({
        on: `PATCH ${i % 2 === 0 ? 's3-b' : 's3-a'}`,
        offset,
        heads: [
          { status: 200, offset },
          { status: 200, offset },
        ],
        inEtcd: true,
      })),
    )
    const path = new URL(url).pathname
    const id = path.split('/').pop() ?? ''
    expect(sha256(await s3.getObject(BUCKET, id))).toBe(sha256(data))

    // A second upload, cancelled half-way: created and written through a, its record cached by
    // both, deleted through a. With S3Store's in-memory cache, b still holds the record, finds
    // the multipart upload gone and reports the upload complete (200, offset = size).
    const created = await fetch(a.url, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': String(6 * MiB) },
    })
    expect(created.status).toBe(201)
    const cancelled = new URL(created.headers.get('location') ?? '').pathname
    const patched = await fetch(`${a.origin}${cancelled}`, {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: data.subarray(0, MiB),
    })
    expect(patched.status).toBe(204)
    expect(await head(b, cancelled)).toEqual({ status: 200, offset: String(MiB) })
    expect(await head(a, cancelled)).toEqual({ status: 200, offset: String(MiB) })
    const deleted = await fetch(`${a.origin}${cancelled}`, { method: 'DELETE', headers: TUS })
    expect(deleted.status).toBe(204)
    // S3Store's remove() does not await its cache delete: wait for etcd to have it.
    const cancelledId = cancelled.split('/').pop() ?? ''
    await untilNoKeys(newClient(), `${prefix}/.kv/${cancelledId}`)
    expect(await head(b, cancelled)).toEqual({ status: 404, offset: null })
    expect(await head(a, cancelled)).toEqual({ status: 404, offset: null })
    expect(await s3.getObject(BUCKET, `${cancelledId}.info`)).toBeUndefined()

    // SIGTERM with nothing in flight: both exit at once, their sessions revoked: no lock key
    // and no leasing key is left. The completed upload's record stays, read back from S3 by the
    // HEADs after it completed; only a DELETE of the upload removes it.
    await Promise.all(
      instances.map((i) => within(i.child.kill('SIGTERM'), 10_000, `${i.name} exits`)),
    )
    for (const i of instances) expect(i.child.process.exitCode).toBe(0)
    expect(await keysUnder(newClient(), `${prefix}/`)).toEqual([`${prefix}/.kv/${id}`])
  })

  it('an Upload-Defer-Length upload completes when its last PATCH declares the length, and both instances answer it', async () => {
    const prefix = uniquePrefix('s3-defer')
    const [a, b] = await Promise.all([startInstance('s3-a', prefix), startInstance('s3-b', prefix)])
    const data = randomBytes(2 * MiB + 5)
    const created = await fetch(a.url, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Defer-Length': '1' },
    })
    expect(created.status).toBe(201)
    const path = new URL(created.headers.get('location') ?? '').pathname
    const id = path.split('/').pop() ?? ''
    const patch = (on: Instance, from: number, to: number, length?: number) =>
      fetch(`${on.origin}${path}`, {
        method: 'PATCH',
        headers: {
          ...TUS,
          'Upload-Offset': String(from),
          'Content-Type': 'application/offset+octet-stream',
          ...(length === undefined ? {} : { 'Upload-Length': String(length) }),
        },
        body: data.subarray(from, to),
      })
    // b caches the record while the length is unknown...
    expect((await patch(b, 0, MiB)).status).toBe(204)
    const before = await fetch(`${a.origin}${path}`, { method: 'HEAD', headers: TUS })
    expect(before.headers.get('upload-defer-length')).toBe('1')
    expect(before.headers.get('upload-offset')).toBe(String(MiB))
    // ...a declares it with the last PATCH and completes the upload...
    const last = await patch(a, MiB, data.length, data.length)
    expect(last.status).toBe(204)
    expect(last.headers.get('upload-offset')).toBe(String(data.length))
    expect(sha256(await s3.getObject(BUCKET, id))).toBe(sha256(data))
    // ...and b answers with the length, not from its copy of the record.
    for (const on of [b, a]) {
      const res = await fetch(`${on.origin}${path}`, { method: 'HEAD', headers: TUS })
      expect(res.status).toBe(200)
      expect(res.headers.get('upload-length')).toBe(String(data.length))
      expect(res.headers.get('upload-offset')).toBe(String(data.length))
      expect(res.headers.get('upload-defer-length')).toBeNull()
    }
  })

  it('SIGTERM refuses new connections, answers the PATCH in flight with what it received, revokes the session and exits 0; the upload resumes on the other instance', async () => {
    const prefix = uniquePrefix('s3-stop')
    const [a, b] = await Promise.all([startInstance('s3-a', prefix), startInstance('s3-b', prefix)])
    const data = randomBytes(MiB)
    const created = await fetch(a.url, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': String(data.length) },
    })
    const path = new URL(created.headers.get('location') ?? '').pathname
    const id = path.split('/').pop() ?? ''
    const acquired = () => a.child.lines().filter((l) => l.includes(`lock ${id} acquired`)).length
    const before = acquired()

    // A PATCH that sends half its body, then waits.
    const patch = request(`${a.origin}${path}`, {
      method: 'PATCH',
      agent: false,
      headers: {
        ...TUS,
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(data.length),
      },
    })
    const answered = new Promise<{ status?: number; offset?: string }>((resolve, reject) => {
      patch.once('error', reject)
      patch.once('response', (res) => {
        res.resume()
        resolve({ status: res.statusCode, offset: res.headers['upload-offset'] as string })
      })
    })
    patch.write(data.subarray(0, data.length / 2))
    await within(
      a.child.waitForLine(() => acquired() > before),
      10_000,
      'the PATCH holds the lock',
    )

    process.kill(a.child.process.pid as number, 'SIGTERM')
    await within(
      a.child.waitForLine((l) => l.includes('SIGTERM: shutting down')),
      10_000,
      'a shuts down',
    )
    // No new connection is accepted...
    const refused = await new Promise<string>((resolve) => {
      const probe = request(`${a.origin}/health`, { agent: false })
      probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
      probe.once('response', (res) => resolve(`answered ${res.statusCode}`))
      probe.end()
    })
    expect(refused).toBe('ECONNREFUSED')
    // ...the PATCH in flight is asked to stop, and answered with what it received...
    const half = data.length / 2
    expect(await within(answered, 10_000, 'the PATCH answers')).toEqual({
      status: 204,
      offset: String(half),
    })
    patch.on('error', () => {}) // answered: the rest of its body meets a closed connection
    patch.destroy()
    await within(a.child.exited(), 10_000, 'a exits')
    expect(a.child.process.exitCode).toBe(0)
    // ...its session is revoked: no lock or leasing key of a is left...
    const client = newClient()
    expect(await keysUnder(client, `${prefix}/${id}/`)).toEqual([])
    expect(await keysUnder(client, `${prefix}/.kvlease/`)).toEqual([])
    // ...and the client resumes on b with nothing lost.
    const resumed = await fetch(`${b.origin}${path}`, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'Upload-Offset': String(half),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: data.subarray(half),
    })
    expect(resumed.status).toBe(204)
    expect(await head(b, path)).toEqual({ status: 200, offset: String(data.length) })
    expect(sha256(await s3.getObject(BUCKET, id))).toBe(sha256(data))
  })
})
