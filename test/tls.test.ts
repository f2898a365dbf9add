/**
 * TLS and mutual TLS: an etcd member of its own serving https and demanding client certificates
 * (`--client-cert-auth --trusted-ca-file`), with certificates made by openssl for this run.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Etcd3Locker, type LockerOptions, SessionUnavailableError } from '../src/index.js'
import {
  deferCleanup,
  type EtcdCluster,
  keysUnder,
  newClient,
  rejectionOf,
  signal,
  startEtcd,
  uniquePrefix,
  within,
} from './harness/index.js'
import { type CertFiles, makeTlsFixtures, type TlsFixtures } from './harness/tls.js'

let tls: TlsFixtures
let etcd: EtcdCluster
let hosts: string[]

beforeAll(async () => {
  tls = await makeTlsFixtures()
  etcd = await startEtcd(1, [], {
    tls: { caFile: tls.caFile, server: tls.server, client: tls.client },
  })
  hosts = etcd.endpoints.map((endpoint) => `https://${endpoint}`)
})

afterAll(async () => {
  await etcd?.stop()
  tls?.remove()
})

/** An etcd3 client over TLS that trusts the test CA and presents `certs` (none for `null`). */
function tlsClient(certs: CertFiles | null = tls.client) {
  return newClient(hosts, { credentials: tls.credentials(certs ?? undefined) })
}

function tlsLocker(options: LockerOptions, certs: CertFiles | null = tls.client): Etcd3Locker {
  const locker = new Etcd3Locker(tlsClient(certs), options)
  deferCleanup(() => locker.close())
  return locker
}

describe('over mutual TLS', () => {
  it('two lockers exclude each other and the holder hears the release request', async () => {
    const prefix = uniquePrefix('mtls')
    const a = tlsLocker({ prefix })
    const b = tlsLocker({ prefix })
    const released = signal()
    const held = a.newLock('upload-1')
    await within(held.lock(new AbortController().signal, released.fire), 10_000, 'A locks')

    let bHolds = false
    const waiting = b.newLock('upload-1')
    const bLocked = waiting
      .lock(new AbortController().signal, () => {})
      .then(() => {
        bHolds = true
      })
    await within(released.promise, 10_000, 'A hears B waiting')
    expect(bHolds).toBe(false)
    await held.unlock()
    await within(bLocked, 10_000, 'B locks after A unlocked')

    const keys = await keysUnder(tlsClient(), `${prefix}/upload-1/`)
    expect(keys).toHaveLength(1)
    await waiting.unlock()
  })

  it('the KV store gets, sets, deletes and lists across two lockers', async () => {
    const prefix = uniquePrefix('mtls-kv')
    const a = tlsLocker({ prefix }).kvStore<{ size: number }>()
    const b = tlsLocker({ prefix }).kvStore<{ size: number }>()
    await a.set('upload-1', { size: 1 })
    await a.set('upload-2', { size: 2 })
    expect(await b.get('upload-1')).toEqual({ size: 1 })
    expect((await b.list()).sort()).toEqual(['upload-1', 'upload-2'])
    await b.set('upload-1', { size: 10 })
    expect(await a.get('upload-1')).toEqual({ size: 10 })
    await a.delete('upload-2')
    expect(await b.get('upload-2')).toBeUndefined()
    expect(await b.list()).toEqual(['upload-1'])
  })
})

describe('a client etcd does not accept', () => {
  const grantTimeout = 1_500

  /** `ready()`'s rejection, and how long it took (bounded well above grantTimeout). */
  const readyFailure = (locker: Etcd3Locker) =>
    rejectionOf(locker.ready(), grantTimeout + 5_000, 'ready()')

  it('without a client certificate: ready() rejects in grantTimeout naming the TLS cause', async () => {
    const locker = tlsLocker({ prefix: uniquePrefix('no-cert'), grantTimeout }, null)
    const { error, ms } = await readyFailure(locker)
    expect(error).toBeInstanceOf(SessionUnavailableError)
    const message = (error as Error).message
    expect(message).toContain(hosts[0])
    expect(message).toMatch(/TLS handshake refused by etcd/)
    expect(message).toMatch(/client certificate/)
    expect(ms).toBeLessThan(grantTimeout + 1_000)

    // lock() needs the same session, and fails the same way.
    const locking = locker.newLock('upload-1').lock(new AbortController().signal, () => {})
    await expect(within(locking, grantTimeout + 5_000, 'lock() settles')).rejects.toThrow(
      /TLS handshake refused by etcd/,
    )
  })

  it('with a certificate of another CA: ready() rejects naming the TLS cause', async () => {
    const locker = tlsLocker(
      { prefix: uniquePrefix('foreign-cert'), grantTimeout },
      tls.foreignClient,
    )
    const { error, ms } = await readyFailure(locker)
    expect(error).toBeInstanceOf(SessionUnavailableError)
    expect((error as Error).message).toMatch(/TLS handshake refused by etcd.*client certificate/)
    expect(ms).toBeLessThan(grantTimeout + 1_000)
  })

  it("that does not trust etcd's CA: ready() rejects naming the server certificate", async () => {
    const client = newClient(hosts, {
      credentials: {
        ...tls.credentials(tls.client),
        rootCertificate: readFileSync(tls.foreignCaFile),
      },
    })
    const locker = new Etcd3Locker(client, { prefix: uniquePrefix('wrong-ca'), grantTimeout })
    deferCleanup(() => locker.close())
    const { error, ms } = await readyFailure(locker)
    expect(error).toBeInstanceOf(SessionUnavailableError)
    expect((error as Error).message).toMatch(/TLS: etcd's server certificate was not accepted/)
    expect((error as Error).message).toMatch(/rootCertificate/)
    expect(ms).toBeLessThan(grantTimeout + 1_000)
  })
})
