import { Etcd3 } from 'etcd3'
import { afterAll, describe, expect, it } from 'vitest'
import {
  defaultLockerOptions,
  Etcd3KvStore,
  Etcd3Locker,
  SessionUnavailableError,
} from '../src/index.js'
import { escapeId, normalizePrefix } from '../src/keys.js'
import { freePort, keysUnder, newClient, newLocker, uniquePrefix, within } from './harness/index.js'

function instance(prefix: string) {
  const locker = newLocker({ prefix, ttl: 10, acquireLockTimeout: 2_000 })
  return locker
}

const never = () => new AbortController().signal

describe('isolation', () => {
  it('the same id under two prefixes never blocks', async () => {
    const base = uniquePrefix('tenant')
    const a = instance(`${base}-a`).newLock('same-id')
    const b = instance(`${base}-b`).newLock('same-id')
    await a.lock(never(), () => {})
    await within(
      b.lock(never(), () => {}),
      1_000,
      'same id on another prefix',
    )
    await Promise.all([a.unlock(), b.unlock()])
  })

  it('ids "a" and "a/b" never block each other, and keep separate queues', async () => {
    const prefix = uniquePrefix('nested')
    const a = instance(prefix).newLock('a')
    const ab = instance(prefix).newLock('a/b')
    await a.lock(never(), () => {})
    await within(
      ab.lock(never(), () => {}),
      1_000,
      '"a/b" while "a" is held',
    )
    const keys = await keysUnder(newClient(), prefix)
    expect(keys.filter((k) => k.startsWith(`${prefix}/a/`))).toHaveLength(1)
    expect(keys.filter((k) => k.startsWith(`${prefix}/a%2Fb/`))).toHaveLength(1)
    await Promise.all([a.unlock(), ab.unlock()])
  })

  it('an ordinary id is stored as is, with the lease in lower-case hex (etcdctl and tusd compatible)', async () => {
    const prefix = uniquePrefix('layout')
    const locker = instance(prefix)
    const lock = locker.newLock('4f8a1c2e9b7d.bin+file-id_1')
    await lock.lock(never(), () => {})
    const [key] = await keysUnder(newClient(), prefix)
    expect(key).toMatch(new RegExp(`^${prefix}/4f8a1c2e9b7d\\.bin\\+file-id_1/[0-9a-f]+$`))
    await lock.unlock()
  })
})

describe('bad input', () => {
  // Never contacted: construction and newLock() validate without talking to etcd.
  const client = new Etcd3({ hosts: '127.0.0.1:1' })
  afterAll(() => client.close())

  it.each([
    ['ttl', 0],
    ['ttl', -1],
    ['ttl', 1.5],
    ['ttl', Number.NaN],
    ['ttl', '60'],
    ['prefix', ''],
    ['prefix', '/'],
    ['prefix', '//'],
    ['prefix', 42],
    ['acquireLockTimeout', 0],
    ['acquireLockTimeout', Number.POSITIVE_INFINITY],
    ['acquireLockTimeout', '30000'],
    ['grantTimeout', -5],
    ['safetyMargin', -1],
    ['safetyMargin', 20_000],
    ['safetyMargin', '3000'],
  ])('option %s = %o throws an error naming it', (name, value) => {
    expect(() => new Etcd3Locker(client, { [name]: value } as never)).toThrow(
      new RegExp(`option "${name}".*${value === '' ? '""' : ''}`),
    )
  })

  it('an unknown option is refused by name', () => {
    expect(() => new Etcd3Locker(client, { tll: 5 } as never)).toThrow(/no option "tll"/)
  })

  it('a missing client is refused', () => {
    expect(() => new Etcd3Locker(undefined as never)).toThrow(TypeError)
  })

  it.each([
    { given: 'nothing', value: undefined },
    { given: 'null', value: null },
    { given: 'a host string', value: '127.0.0.1:2379' },
  ])('Etcd3KvStore given $given for its client says it needs one', ({ value }) => {
    expect(() => new Etcd3KvStore(value as never)).toThrow(TypeError)
    expect(() => new Etcd3KvStore(value as never)).toThrow(
      /^Etcd3KvStore needs an Etcd3 client from the etcd3 package as its first argument \(createEtcdClient\(\{ hosts \}\)\), got /,
    )
  })

  it('defaults are documented values', () => {
    expect(defaultLockerOptions()).toEqual({
      ttl: 60,
      prefix: '/tusd',
      acquireLockTimeout: 30_000,
      grantTimeout: 1_500,
      safetyMargin: 3_500,
      retainLocks: 5_000,
      lockDrainTimeout: 3_000,
    })
    expect(new Etcd3Locker(client).options).toEqual(defaultLockerOptions())
    // Above @tus/server's default lockDrainTimeout, and never more than a quarter of the TTL.
    expect(new Etcd3Locker(client, { ttl: 4 }).options.safetyMargin).toBe(1_000)
  })

  it('prefixes are normalized; ids escape only %, / and a leading dot', () => {
    expect(normalizePrefix('tusd/')).toBe('/tusd')
    expect(normalizePrefix('//a/b//')).toBe('/a/b')
    expect(escapeId('a/b')).toBe('a%2Fb')
    expect(escapeId('50%')).toBe('50%25')
    expect(escapeId('a%2Fb')).toBe('a%252Fb')
    expect(escapeId('.kv')).toBe('%2Ekv')
    expect(escapeId('a.b')).toBe('a.b')
    expect(escapeId('ünï-😀')).toBe('ünï-😀')
  })
})

describe('ready()', () => {
  it('resolves once etcd granted the session', async () => {
    await expect(instance(uniquePrefix('ready')).ready()).resolves.toBeUndefined()
  })

  it('rejects within grantTimeout, naming the endpoint, when etcd is unreachable', async () => {
    const endpoint = `127.0.0.1:${await freePort()}`
    const locker = newLocker({ grantTimeout: 500 }, [endpoint])
    const started = Date.now()
    const error = await locker.ready().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SessionUnavailableError)
    expect(String((error as Error).message)).toContain(endpoint)
    expect(Date.now() - started).toBeLessThan(500 + 1_000)
  })
})
