import { describe, expect, it } from 'vitest'
import { Etcd3Locker, SessionUnavailableError } from '../../src/index.js'
import {
  deferCleanup,
  freePort,
  newClient,
  signal,
  uniquePrefix,
  within,
} from '../harness/index.js'

// Defect: a fresh locker granted its session on the first lock() or KV call, which paid for it
// (connect, grant: ~60 ms), enough to fail a 50 ms upload expiry in tus-node-server's e2e tests.
describe('the session of a new locker', () => {
  it('is granted in the background at construction, before any call', async () => {
    const locker = new Etcd3Locker(newClient(), { prefix: uniquePrefix('eager'), ttl: 10 })
    deferCleanup(() => locker.close())
    const granted = signal<{ lease: string }>()
    locker.on('sessionGranted', (info) => granted.fire(info))
    const { lease } = await within(granted.promise, 3_000, 'sessionGranted with no call made')
    expect(lease).toMatch(/^[0-9a-f]+$/)
  })

  it('that etcd does not grant still fails ready() and lock() as before, without an unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    deferCleanup(() => process.off('unhandledRejection', onUnhandled))
    const nobody = `127.0.0.1:${await freePort()}`
    const locker = new Etcd3Locker(newClient([nobody]), { grantTimeout: 300 })
    deferCleanup(() => locker.close())
    await expect(within(locker.ready(), 3_000, 'ready()')).rejects.toBeInstanceOf(
      SessionUnavailableError,
    )
    await expect(
      within(
        locker.newLock('u').lock(new AbortController().signal, () => {}),
        3_000,
        'lock()',
      ),
    ).rejects.toBeInstanceOf(SessionUnavailableError)
    expect(unhandled).toEqual([])
  })

  it('shows in options.ttl the TTL etcd granted, which etcd raises above a too small one', async () => {
    const locker = new Etcd3Locker(newClient(), { prefix: uniquePrefix('ttl'), ttl: 1 })
    deferCleanup(() => locker.close())
    const granted = signal<{ ttl: number }>()
    locker.on('sessionGranted', (info) => granted.fire(info))
    const { ttl } = await within(granted.promise, 3_000, 'sessionGranted')
    // etcd's minimum TTL is 1.5 election timeouts (1 s by default), rounded up: 2 s.
    expect(ttl).toBeGreaterThan(1)
    expect(locker.options.ttl).toBe(ttl)
  })

  it('says in sessionLost that close() ended the session, not a loss', async () => {
    const locker = new Etcd3Locker(newClient(), { prefix: uniquePrefix('closed'), ttl: 10 })
    const ended = signal<{ closed: boolean }>()
    locker.on('sessionLost', (info) => ended.fire(info))
    await locker.ready()
    await locker.close()
    expect((await within(ended.promise, 3_000, 'sessionLost')).closed).toBe(true)
  })
})
