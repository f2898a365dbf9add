/** The copy-paste examples run with the one command at their top, and do what they say. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runProcess } from './harness/child.js'
import {
  deferCleanup,
  endpoints,
  freePort,
  keysUnder,
  newClient,
  uniquePrefix,
} from './harness/index.js'

const TUS = { 'Tus-Resumable': '1.0.0' }

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
    const created = await fetch(`${origin}/files`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': '5' },
    })
    expect(created.status).toBe(201)
    const location = new URL(created.headers.get('location') ?? '', origin).href
    const patched = await fetch(location, {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: 'hello',
    })
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
