/**
 * The bad-input table: every odd id, prefix, option, endpoint, KV key and KV value either works
 * exactly as DESIGN.md's key layout says (and leaves no key behind) or is refused with a TypeError
 * or RangeError (or a 503 LockerError for etcd it cannot reach) whose message names the input and
 * why. Nothing may crash the process: an unhandled rejection or uncaught exception fails the file.
 */
import { ERRORS } from '@tus/utils'
import { Etcd3 } from 'etcd3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Etcd3KvStore, Etcd3Locker, LockerError, SessionUnavailableError } from '../src/index.js'
import {
  deferCleanup,
  keysUnder,
  newClient,
  newLocker,
  signal,
  startEtcd,
  uniquePrefix,
  untilNoKeys,
  within,
} from './harness/index.js'

const KIB64 = 65_536
const MIB = 1_048_576
const never = () => new AbortController().signal

// Anything that escapes to the process level is a crash a server would die of.
const crashes: unknown[] = []
const onCrash = (error: unknown) => crashes.push(error)
beforeAll(() => {
  process.on('unhandledRejection', onCrash)
  process.on('uncaughtException', onCrash)
})
afterEach(async () => {
  await new Promise((resolve) => setImmediate(resolve)) // let pending rejections surface
  expect(crashes.splice(0)).toEqual([])
})
afterAll(async () => {
  await new Promise((resolve) => setImmediate(resolve)) // rejections of the last cleanups
  process.off('unhandledRejection', onCrash)
  process.off('uncaughtException', onCrash)
  expect(crashes).toEqual([])
})

/** The keys under `prefix`, as raw bytes: ids with NUL or emoji must be exactly their UTF-8. */
function keyBytes(prefix: string): Promise<Buffer[]> {
  return newClient().getAll().prefix(`${prefix}/`).keyBuffers()
}

/** Asserts that `key` is `expected` followed by a lease id in lower-case hex. */
function expectLockKey(key: Buffer, expected: string): void {
  const head = Buffer.from(expected)
  expect(key.subarray(0, head.length).equals(head)).toBe(true)
  expect(key.subarray(head.length).toString()).toMatch(/^[0-9a-f]+$/)
}

describe('upload ids that work: the key is P/<escaped id>/<leaseHex>, exclusion holds', () => {
  it.each([
    { rule: '"/" is escaped to %2F', id: '/', segment: '%2F' },
    { rule: '"a/b" stays one segment, a%2Fb', id: 'a/b', segment: 'a%2Fb' },
    { rule: '"%" is escaped to %25', id: '%', segment: '%25' },
    { rule: '".." has its leading dot escaped', id: '..', segment: '%2E.' },
    { rule: '".kv" cannot reach the KV keys: leading dot escaped', id: '.kv', segment: '%2Ekv' },
    { rule: 'NUL is kept as a byte', id: 'a\0b', segment: 'a\0b' },
    { rule: 'control characters are kept', id: '\t\n\r\x1b\x7f', segment: '\t\n\r\x1b\x7f' },
    { rule: 'unicode is kept as UTF-8', id: 'ünïcödé-名前', segment: 'ünïcödé-名前' },
    { rule: 'emoji and ZWJ sequences are kept', id: '😀👩‍👩‍👧', segment: '😀👩‍👩‍👧' },
    { rule: '64 KiB of ASCII (the longest id) works', id: 'x'.repeat(KIB64), segment: null },
    { rule: '64 KiB of 4-byte emoji works', id: '😀'.repeat(KIB64 / 4), segment: null },
    {
      rule: '64 KiB of "/" (escaped to 192 KiB) works',
      id: '/'.repeat(KIB64),
      segment: '%2F'.repeat(KIB64),
    },
  ])('id: $rule; a second locker waits, unlock leaves no key', async ({ id, segment }) => {
    const prefix = uniquePrefix('id')
    const holder = newLocker({ prefix, ttl: 10, retainLocks: 0 }).newLock(id)
    const asked = signal()
    await holder.lock(never(), () => asked.fire())

    const waiter = newLocker({ prefix, ttl: 10, retainLocks: 0 }).newLock(id)
    let acquired = false
    const waiting = waiter
      .lock(never(), () => {})
      .then(() => {
        acquired = true
      })
    await within(asked.promise, 10_000, 'the holder hears the waiter')
    expect(acquired).toBe(false)
    const keys = await keyBytes(prefix)
    expect(keys).toHaveLength(2)
    for (const key of keys) expectLockKey(key, `${prefix}/${segment ?? id}/`)

    await holder.unlock()
    await within(waiting, 10_000, 'the waiter gets the lock after unlock')
    await waiter.unlock()
    await untilNoKeys(newClient(), prefix)
  })
})

describe('upload ids that are refused by newLock(), before anything reaches etcd', () => {
  // Never contacted: newLock() validates without talking to etcd.
  const locker = new Etcd3Locker(new Etcd3({ hosts: '127.0.0.1:1' }))
  afterAll(() => locker.close())

  it.each([
    { rule: 'the empty id', id: '', kind: RangeError, message: /^upload id must not be empty$/ },
    { rule: 'a number', id: 7, kind: TypeError, message: /must be a string, got number 7/ },
    { rule: 'undefined', id: undefined, kind: TypeError, message: /string, got undefined/ },
    { rule: 'null', id: null, kind: TypeError, message: /must be a string, got null/ },
    { rule: 'a Buffer', id: Buffer.from('id'), kind: TypeError, message: /got object/ },
    {
      rule: 'a lone high surrogate (etcd would store U+FFFD, like any other)',
      id: '\uD800',
      kind: RangeError,
      message: /valid Unicode, got the string "\\ud800" with a lone surrogate U\+D800 at index 0/,
    },
    {
      rule: 'a lone low surrogate after text',
      id: 'ab\uDC00',
      kind: RangeError,
      message: /lone surrogate U\+DC00 at index 2/,
    },
    {
      rule: '64 KiB + 1 byte of ASCII',
      id: 'x'.repeat(KIB64 + 1),
      kind: RangeError,
      message: /at most 65536 bytes in UTF-8, got 65537 bytes: the string "x{40}"\.\.\. \(65537/,
    },
    {
      rule: '64 KiB + 1 byte of 2-byte characters',
      id: `${'é'.repeat(KIB64 / 2)}x`,
      kind: RangeError,
      message: /at most 65536 bytes in UTF-8, got 65537 bytes/,
    },
  ])('id: $rule is a $kind.name naming it', ({ id, kind, message }) => {
    let thrown: unknown
    try {
      locker.newLock(id as string)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(kind)
    expect((thrown as Error).message).toMatch(message)
    expect((thrown as Error).message.length).toBeLessThan(200) // a 64 KiB id is not echoed
  })
})

describe('lock() arguments @tus/server always passes', () => {
  it.each([
    {
      rule: 'no signal',
      args: [undefined, () => {}],
      message: /^lock\(\) needs an AbortSignal as its first argument, got undefined$/,
    },
    {
      rule: 'a plain object as signal',
      args: [{}, () => {}],
      message: /needs an AbortSignal.*got object$/,
    },
    {
      rule: 'no requestRelease',
      args: [new AbortController().signal],
      message: /^lock\(\) needs a requestRelease function as its second argument, got undefined$/,
    },
    {
      rule: 'a string as requestRelease',
      args: [new AbortController().signal, 'x'],
      message: /requestRelease function.*got the string "x"$/,
    },
  ])(
    'lock() with $rule rejects with a TypeError; the same Lock then works and leaves no key',
    async ({ args, message }) => {
      const prefix = uniquePrefix('lock-args')
      const lock = newLocker({ prefix, ttl: 10, retainLocks: 0 }).newLock('u')
      const error = await (lock.lock as (...a: unknown[]) => Promise<void>)(...args).catch(
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(TypeError)
      expect((error as Error).message).toMatch(message)
      await lock.lock(never(), () => {})
      expect(await keysUnder(newClient(), prefix)).toHaveLength(1)
      await lock.unlock()
      await untilNoKeys(newClient(), prefix)
    },
  )
})

describe('prefixes that work: normalized to a leading / and no trailing /', () => {
  it.each([
    {
      rule: 'no leading slash gets one',
      given: (p: string) => p.slice(1),
      stored: (p: string) => p,
    },
    {
      rule: 'trailing slashes are dropped',
      given: (p: string) => `${p}///`,
      stored: (p: string) => p,
    },
    {
      rule: 'leading slashes collapse to one',
      given: (p: string) => `///${p.slice(1)}`,
      stored: (p: string) => p,
    },
    {
      rule: 'inner segments are kept',
      given: (p: string) => `${p}/tenant/a/`,
      stored: (p: string) => `${p}/tenant/a`,
    },
    {
      rule: 'unicode is kept',
      given: (p: string) => `${p}-ünï-😀`,
      stored: (p: string) => `${p}-ünï-😀`,
    },
    {
      rule: '4 KiB (the longest prefix) works',
      given: (p: string) => p.padEnd(4_096, 'p'),
      stored: (p: string) => p.padEnd(4_096, 'p'),
    },
  ])('prefix: $rule; lock and unlock leave no key', async ({ given, stored }) => {
    const base = uniquePrefix('prefix')
    const root = stored(base)
    const locker = newLocker({ prefix: given(base), ttl: 10, retainLocks: 0 })
    expect(locker.options.prefix).toBe(root)
    const lock = locker.newLock('u')
    await lock.lock(never(), () => {})
    const keys = await keyBytes(root)
    expect(keys).toHaveLength(1)
    expectLockKey(keys[0] as Buffer, `${root}/u/`)
    await lock.unlock()
    await untilNoKeys(newClient(), root)
  })
})

describe('options refused at construction (see also isolation-and-input)', () => {
  // Never contacted: construction validates without talking to etcd.
  const client = new Etcd3({ hosts: '127.0.0.1:1' })
  afterAll(() => client.close())

  it.each([
    {
      rule: 'prefix null',
      options: { prefix: null },
      kind: TypeError,
      message: /"prefix" must be a string, got null/,
    },
    {
      rule: 'prefix an array',
      options: { prefix: ['/a'] },
      kind: TypeError,
      message: /"prefix" must be a string, got an array/,
    },
    {
      rule: 'prefix with a newline',
      options: { prefix: '/tusd\n' },
      kind: RangeError,
      message: /"prefix" must not contain control characters, got the string "\/tusd\\n"/,
    },
    {
      rule: 'prefix with NUL',
      options: { prefix: '/a\0' },
      kind: RangeError,
      message: /control characters/,
    },
    {
      rule: 'prefix with a tab',
      options: { prefix: '/a\tb' },
      kind: RangeError,
      message: /control characters/,
    },
    {
      rule: 'prefix with a lone surrogate',
      options: { prefix: '/a\uD83D' },
      kind: RangeError,
      message: /"prefix" must be valid Unicode.*U\+D83D at index 2/,
    },
    {
      rule: 'prefix over 4 KiB',
      options: { prefix: '/'.padEnd(4_097, 'p') },
      kind: RangeError,
      message: /"prefix" must be at most 4096 bytes in UTF-8, got 4097 bytes/,
    },
    {
      rule: 'ttl null (only undefined means the default)',
      options: { ttl: null },
      kind: TypeError,
      message: /"ttl" must be a number, got null/,
    },
    {
      rule: 'ttl Infinity',
      options: { ttl: Number.POSITIVE_INFINITY },
      kind: RangeError,
      message: /"ttl" must be a whole number of seconds from 1 to 9000000000, got Infinity/,
    },
    {
      rule: 'ttl a fraction below 1',
      options: { ttl: 0.5 },
      kind: RangeError,
      message: /"ttl" must be a whole number.*got 0.5/,
    },
    {
      rule: "ttl above etcd's maximum lease",
      options: { ttl: 9_000_000_001 },
      kind: RangeError,
      message: /"ttl".*got 9000000001/,
    },
    {
      rule: 'ttl a BigInt',
      options: { ttl: 60n },
      kind: TypeError,
      message: /"ttl" must be a number, got bigint 60/,
    },
    {
      rule: 'acquireLockTimeout negative',
      options: { acquireLockTimeout: -1 },
      kind: RangeError,
      message:
        /"acquireLockTimeout" must be a number of milliseconds above 0 and at most 2147483647, got -1/,
    },
    {
      rule: 'acquireLockTimeout NaN',
      options: { acquireLockTimeout: Number.NaN },
      kind: RangeError,
      message: /"acquireLockTimeout".*got NaN/,
    },
    {
      rule: 'acquireLockTimeout beyond a timer (2^31 ms)',
      options: { acquireLockTimeout: 2 ** 31 },
      kind: RangeError,
      message: /"acquireLockTimeout".*got 2147483648/,
    },
    {
      rule: 'acquireLockTimeout null',
      options: { acquireLockTimeout: null },
      kind: TypeError,
      message: /"acquireLockTimeout" must be a number, got null/,
    },
    {
      rule: 'grantTimeout NaN',
      options: { grantTimeout: Number.NaN },
      kind: RangeError,
      message: /"grantTimeout".*got NaN/,
    },
    {
      rule: 'grantTimeout Infinity',
      options: { grantTimeout: Number.POSITIVE_INFINITY },
      kind: RangeError,
      message: /"grantTimeout".*got Infinity/,
    },
    {
      rule: 'grantTimeout a string',
      options: { grantTimeout: '1500' },
      kind: TypeError,
      message: /"grantTimeout" must be a number, got the string "1500"/,
    },
    {
      rule: 'grantTimeout 0',
      options: { grantTimeout: 0 },
      kind: RangeError,
      message: /"grantTimeout".*above 0.*got 0/,
    },
    {
      rule: 'retainLocks -1',
      options: { retainLocks: -1 },
      kind: RangeError,
      message: /"retainLocks" must be 0 \(off\) or a number of milliseconds.*got -1/,
    },
    {
      rule: 'retainLocks NaN',
      options: { retainLocks: Number.NaN },
      kind: RangeError,
      message: /"retainLocks".*got NaN/,
    },
    {
      rule: 'retainLocks a string',
      options: { retainLocks: '5000' },
      kind: TypeError,
      message: /"retainLocks" must be a number, got the string "5000"/,
    },
    {
      rule: 'retainLocks above the timer limit',
      options: { retainLocks: 2 ** 31 },
      kind: RangeError,
      message: /"retainLocks".*got 2147483648/,
    },
    {
      rule: 'safetyMargin NaN',
      options: { safetyMargin: Number.NaN },
      kind: RangeError,
      message: /"safetyMargin".*got NaN/,
    },
    {
      rule: 'safetyMargin null',
      options: { safetyMargin: null },
      kind: TypeError,
      message: /"safetyMargin" must be a number, got null/,
    },
    {
      rule: 'options a string',
      options: 'ttl=5',
      kind: TypeError,
      message: /^Etcd3Locker options must be an object, got the string "ttl=5"$/,
    },
    {
      rule: 'options an array',
      options: [5],
      kind: TypeError,
      message: /^Etcd3Locker options must be an object, got an array$/,
    },
    {
      rule: 'options null',
      options: null,
      kind: TypeError,
      message: /^Etcd3Locker options must be an object, got null$/,
    },
    {
      rule: 'a KV-only option',
      options: { leasing: false },
      kind: TypeError,
      message: /Etcd3Locker has no option "leasing"; known options: ttl, prefix/,
    },
  ])('Etcd3Locker: $rule is a $kind.name naming it', ({ options, kind, message }) => {
    expect(() => new Etcd3Locker(client, options as never)).toThrow(kind)
    expect(() => new Etcd3Locker(client, options as never)).toThrow(message)
  })

  it('fractions of a millisecond are accepted: only ttl must be whole', () => {
    const locker = new Etcd3Locker(client, { acquireLockTimeout: 1.5, grantTimeout: 2 ** 31 - 1 })
    expect(locker.options).toMatchObject({ acquireLockTimeout: 1.5, grantTimeout: 2 ** 31 - 1 })
  })

  it.each([
    {
      rule: 'an unknown option',
      options: { tll: 5 },
      kind: TypeError,
      message:
        /^Etcd3KvStore has no option "tll"; known options: prefix, ttl, grantTimeout, safetyMargin, leasing, revokeBackoff, cacheSize, cacheIdle$/,
    },
    {
      rule: "the locker's acquireLockTimeout",
      options: { acquireLockTimeout: 5 },
      kind: TypeError,
      message: /Etcd3KvStore has no option "acquireLockTimeout"/,
    },
    {
      rule: 'ttl 0',
      options: { ttl: 0 },
      kind: RangeError,
      message: /^Etcd3KvStore option "ttl" must be a whole number/,
    },
    {
      rule: 'prefix "/"',
      options: { prefix: '/' },
      kind: RangeError,
      message: /^Etcd3KvStore option "prefix" must name a key space/,
    },
    {
      rule: 'leasing "yes"',
      options: { leasing: 'yes' },
      kind: TypeError,
      message: /"leasing" must be a boolean, got the string "yes"/,
    },
    {
      rule: 'revokeBackoff a string',
      options: { revokeBackoff: '1000' },
      kind: TypeError,
      message: /"revokeBackoff" must be a number, got the string "1000"/,
    },
    {
      rule: 'revokeBackoff negative',
      options: { revokeBackoff: -1 },
      kind: RangeError,
      message: /"revokeBackoff" must be a number of milliseconds from 0 to 2147483647, got -1/,
    },
    {
      rule: 'options null',
      options: null,
      kind: TypeError,
      message: /^Etcd3KvStore options must be an object, got null$/,
    },
  ])('Etcd3KvStore: $rule is a $kind.name naming it', ({ options, kind, message }) => {
    expect(() => new Etcd3KvStore(client, options as never)).toThrow(kind)
    expect(() => new Etcd3KvStore(client, options as never)).toThrow(message)
  })

  it.each([
    {
      rule: 'a prefix (the locker has one)',
      options: { prefix: '/other' },
      kind: TypeError,
      message:
        /^locker\.kvStore\(\) has no option "prefix"; known options: leasing, revokeBackoff, cacheSize, cacheIdle$/,
    },
    {
      rule: "a ttl (the session is the locker's)",
      options: { ttl: 5 },
      kind: TypeError,
      message: /locker\.kvStore\(\) has no option "ttl"/,
    },
    {
      rule: 'leasing 1',
      options: { leasing: 1 },
      kind: TypeError,
      message: /^locker\.kvStore\(\) option "leasing" must be a boolean, got number 1$/,
    },
    {
      rule: 'cacheSize 0',
      options: { cacheSize: 0 },
      kind: RangeError,
      message: /^locker\.kvStore\(\) option "cacheSize" must be a whole number/,
    },
    {
      rule: 'options null',
      options: null,
      kind: TypeError,
      message: /^locker\.kvStore\(\) options must be an object, got null$/,
    },
  ])('locker.kvStore(): $rule is a $kind.name naming it', ({ options, kind, message }) => {
    const locker = new Etcd3Locker(client)
    expect(() => locker.kvStore(options as never)).toThrow(kind)
    expect(() => locker.kvStore(options as never)).toThrow(message)
  })
})

describe('endpoints that are garbage or unreachable', () => {
  it.each([
    { rule: 'a host name with spaces', host: 'not a host', shown: '"not a host"' },
    { rule: 'a scheme and no host', host: 'http://', shown: 'http://' },
    { rule: 'the empty string', host: '', shown: '""' },
    { rule: 'a closed port', host: '127.0.0.1:1', shown: '127.0.0.1:1' },
    { rule: 'a port out of range', host: '127.0.0.1:99999', shown: '127.0.0.1:99999' },
  ])(
    'endpoint $rule: ready(), lock() and the KV store reject with a 503 naming it',
    async ({ host, shown }) => {
      const grantTimeout = 300
      // acquireLockTimeout far above grantTimeout: lock() must fail for the endpoint, not time out.
      const locker = newLocker(
        { prefix: uniquePrefix('ep'), grantTimeout, acquireLockTimeout: 20_000 },
        [host],
      )
      const grantFailure = new RegExp(
        `^etcd at ${escapeRegExp(shown)} did not grant a lock session within ${grantTimeout} ms: .+`,
      )

      let started = Date.now()
      const notReady = await locker.ready().catch((e: unknown) => e)
      expect(notReady).toBeInstanceOf(SessionUnavailableError)
      expect((notReady as LockerError).message).toMatch(grantFailure)
      // gRPC's empty "Resolution note:" is not left dangling at the end.
      expect((notReady as LockerError).message).not.toMatch(/note:$/)
      expect((notReady as LockerError).status_code).toBe(503)
      expect(Date.now() - started).toBeLessThan(grantTimeout + 2_000)

      started = Date.now()
      const notLocked = await locker
        .newLock('u')
        .lock(never(), () => {})
        .catch((e: unknown) => e)
      expect(notLocked).not.toBe(ERRORS.ERR_LOCK_TIMEOUT)
      expect(notLocked).toBeInstanceOf(SessionUnavailableError)
      expect((notLocked as LockerError).message).toMatch(grantFailure)
      expect(Date.now() - started).toBeLessThan(grantTimeout + 2_000)

      const leased = locker.kvStore()
      await expect(leased.get('k')).rejects.toThrow(grantFailure)
      const direct = locker.kvStore({ leasing: false })
      for (const call of [
        () => direct.get('k'),
        () => direct.set('k', {} as never),
        () => direct.delete('k'),
        () => leased.set('k', {} as never),
      ]) {
        const error = await call().catch((e: unknown) => e)
        expect(error).toBeInstanceOf(LockerError)
        expect((error as LockerError).status_code).toBe(503)
        expect((error as LockerError).message).toMatch(
          new RegExp(
            `^Etcd3KvStore could not reach "k": etcd at ${escapeRegExp(shown)} did not answer \\(.+\\)$`,
          ),
        )
      }
      await expect(direct.list()).rejects.toThrow(/^Etcd3KvStore could not list its keys: etcd at /)

      started = Date.now()
      await locker.close()
      expect(Date.now() - started).toBeLessThan(2_000)
    },
  )
})

describe('KV keys that work: stored as given at P/.kv/<key>', () => {
  it.each([
    { rule: '"/" alone', key: '/' },
    { rule: 'slashes anywhere, doubled and trailing', key: 'a//b/' },
    { rule: '"%" and escape look-alikes', key: '%2F%' },
    { rule: '".." and a leading dot', key: '..' },
    { rule: 'NUL', key: 'a\0b' },
    { rule: 'control characters', key: '\t\n\x7f' },
    { rule: 'emoji', key: '😀👩‍👩‍👧' },
    { rule: '64 KiB (the longest key)', key: 'k'.repeat(KIB64) },
  ])('KV key: $rule round-trips and lists intact; close leaves no key', async ({ key }) => {
    const prefix = uniquePrefix('kvkey')
    const store = new Etcd3KvStore<{ v: number }>(newClient(), { prefix, ttl: 10 })
    deferCleanup(() => store.close())
    await store.set(key, { v: 1 })
    const valueKey = Buffer.from(`${prefix}/.kv/${key}`)
    expect((await keyBytes(prefix)).some((k) => k.equals(valueKey))).toBe(true)
    expect(await store.get(key)).toEqual({ v: 1 }) // leases it
    expect(await store.get(key)).toEqual({ v: 1 }) // from the cache
    expect(await store.list()).toEqual([key])
    await store.delete(key)
    expect(await store.get(key)).toBeUndefined()
    await store.close() // revokes the session: the leasing key goes with it
    expect(await keyBytes(prefix)).toEqual([])
  })
})

describe('KV keys refused before anything reaches etcd (see also kv-store)', () => {
  it.each([
    {
      rule: 'undefined',
      key: undefined,
      kind: TypeError,
      message: /^Etcd3KvStore key must be a string, got undefined$/,
    },
    {
      rule: 'null',
      key: null,
      kind: TypeError,
      message: /^Etcd3KvStore key must be a string, got null$/,
    },
    {
      rule: 'a lone surrogate',
      key: 'a\uDFFF',
      kind: RangeError,
      message: /^Etcd3KvStore key must be valid Unicode.*lone surrogate U\+DFFF at index 1$/,
    },
    {
      rule: '64 KiB + 1 byte',
      key: 'k'.repeat(KIB64 + 1),
      kind: RangeError,
      message: /^Etcd3KvStore key must be at most 65536 bytes in UTF-8, got 65537 bytes/,
    },
  ])('KV key: $rule is a $kind.name from set, get and delete', async ({ key, kind, message }) => {
    const prefix = uniquePrefix('kvkey-bad')
    const store = newLocker({ prefix, ttl: 10, retainLocks: 0 }).kvStore<unknown>()
    for (const call of [
      () => store.set(key as string, {}),
      () => store.get(key as string),
      () => store.delete(key as string),
    ]) {
      const error = await call().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(kind)
      expect((error as Error).message).toMatch(message)
    }
    expect(await keysUnder(newClient(), prefix)).toEqual([])
  })
})

describe('KV values', () => {
  const circular: unknown[] = []
  circular.push({ list: circular })
  const throwing = {
    toJSON() {
      throw new Error('toJSON failed on purpose')
    },
  }

  it.each([
    {
      rule: 'a nested BigInt',
      value: { size: 1n },
      message: /^Etcd3KvStore cannot store the value of "k": .*BigInt/,
    },
    {
      rule: 'an array that contains itself',
      value: circular,
      message: /^Etcd3KvStore cannot store the value of "k": .*circular/i,
    },
    {
      rule: 'a toJSON that throws',
      value: throwing,
      message: /^Etcd3KvStore cannot store the value of "k": toJSON failed on purpose$/,
    },
  ])(
    'value: $rule is a TypeError naming the key, and nothing is written',
    async ({ value, message }) => {
      const prefix = uniquePrefix('kvval-bad')
      const store = newLocker({ prefix, ttl: 10, retainLocks: 0 }).kvStore<unknown>()
      const error = await store.set('k', value).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TypeError)
      expect((error as Error).message).toMatch(message)
      expect(await keysUnder(newClient(), prefix)).toEqual([])
    },
  )

  it.each([
    { rule: '1 MiB + 1 byte of JSON', chars: MIB - 1, bytes: MIB + 1 },
    {
      rule: "3 MiB (above gRPC's limit: would break the client's connection)",
      chars: 3 * MIB,
      bytes: 3 * MIB + 2,
    },
  ])(
    'value: $rule is a RangeError naming the key and its size; nothing is written, locks still work',
    async ({ chars, bytes }) => {
      const prefix = uniquePrefix('kvval-big')
      const locker = newLocker({ prefix, ttl: 10, retainLocks: 0 })
      const store = locker.kvStore<unknown>()
      const error = await store.set('big', 'v'.repeat(chars)).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(RangeError)
      expect((error as Error).message).toBe(
        `Etcd3KvStore cannot store the value of "big": its JSON is ${bytes} bytes, more than ${MIB}`,
      )
      expect(await keysUnder(newClient(), prefix)).toEqual([])
      const lock = locker.newLock('u')
      await within(
        lock.lock(never(), () => {}),
        5_000,
        'a lock on the same client',
      )
      await lock.unlock()
      await store.set('small', { s: 1 })
      expect(await store.list()).toEqual(['small'])
    },
  )

  it("value: above an etcd's own --max-request-bytes is refused naming the key; the store still works", async () => {
    const small = await startEtcd(1, [], { extraArgs: ['--max-request-bytes=65536'] })
    deferCleanup(() => small.stop())
    const store = new Etcd3KvStore<unknown>(newClient(small.endpoints), {
      prefix: '/tusd',
      ttl: 10,
    })
    deferCleanup(() => store.close())
    const error = await store.set('big', 'v'.repeat(100_000)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(LockerError)
    expect((error as Error).message).toMatch(
      /^Etcd3KvStore cannot write "big": etcd refused the request as too large \(its --max-request-bytes/,
    )
    expect(await store.get('big')).toBeUndefined()
    await store.set('small', { s: 1 })
    expect(await store.list()).toEqual(['small'])
  })

  it.each([
    { rule: 'null is kept', value: null, read: null },
    {
      rule: 'JSON rules apply: undefined fields go, NaN is null, a Date is its ISO string',
      value: { a: undefined, n: Number.NaN, d: new Date(0) },
      read: { n: null, d: '1970-01-01T00:00:00.000Z' },
    },
    { rule: 'exactly 1 MiB of JSON fits', value: 'v'.repeat(MIB - 2), read: 'v'.repeat(MIB - 2) },
  ])('value: $rule', async ({ value, read }) => {
    const prefix = uniquePrefix('kvval')
    const writer = newLocker({ prefix, ttl: 10, retainLocks: 0 }).kvStore<unknown>()
    await writer.set('k', value)
    expect(await writer.get('k')).toEqual(read)
    const reader = newLocker({ prefix, ttl: 10, retainLocks: 0 }).kvStore<unknown>({
      leasing: false,
    })
    expect(await reader.get('k')).toEqual(read)
  })
})

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
