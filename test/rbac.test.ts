/**
 * Per-tenant RBAC: an etcd member of its own with auth enabled (auth applies to every client, so
 * never on the shared etcd), users `tenant-a` and `tenant-b` with readwrite on `/tenant-a/` and
 * `/tenant-b/` only. Each tenant works on its prefix; on the other's it is refused at once.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthenticationError,
  Etcd3Locker,
  type LockerOptions,
  PermissionDeniedError,
} from '../src/index.js'
import {
  deferCleanup,
  type EtcdCluster,
  etcdctl,
  newClient,
  rejectionOf,
  signal,
  startEtcd,
  within,
} from './harness/index.js'

const ROOT = { username: 'root', password: 'root-secret' }
const TENANTS = {
  a: { username: 'tenant-a', password: 'secret-a', prefix: '/tenant-a' },
  b: { username: 'tenant-b', password: 'secret-b', prefix: '/tenant-b' },
}

let etcd: EtcdCluster

beforeAll(async () => {
  etcd = await startEtcd(1)
  const ctl = (...args: string[]) => etcdctl(args, etcd.endpoints)
  await ctl('user', 'add', `${ROOT.username}:${ROOT.password}`)
  await ctl('role', 'add', 'root')
  await ctl('user', 'grant-role', 'root', 'root')
  for (const { username, password, prefix } of Object.values(TENANTS)) {
    await ctl('role', 'add', username)
    await ctl('role', 'grant-permission', username, '--prefix=true', 'readwrite', `${prefix}/`)
    await ctl('user', 'add', `${username}:${password}`)
    await ctl('user', 'grant-role', username, username)
  }
  await ctl('auth', 'enable')
})

afterAll(async () => {
  await etcd?.stop()
})

function client(user: { username: string; password: string }): Etcd3 {
  return newClient(etcd.endpoints, { auth: { username: user.username, password: user.password } })
}

function tenantLocker(
  user: { username: string; password: string },
  options: LockerOptions,
): Etcd3Locker {
  const locker = new Etcd3Locker(client(user), options)
  deferCleanup(() => locker.close())
  return locker
}

const never = new AbortController().signal

type Meta = { id: string; offset: number }

describe('per-tenant RBAC', () => {
  it('each tenant locks and stores under its own prefix, unseen by the other', async () => {
    const a = tenantLocker(TENANTS.a, { prefix: TENANTS.a.prefix })
    const b = tenantLocker(TENANTS.b, { prefix: TENANTS.b.prefix })
    // The same upload id in both tenants: two prefixes, two independent locks.
    const lockA = a.newLock('shared-id')
    const lockB = b.newLock('shared-id')
    await within(
      Promise.all([lockA.lock(never, () => {}), lockB.lock(never, () => {})]),
      10_000,
      'both tenants lock',
    )
    await a.kvStore<Meta>().set('shared-id', { id: 'shared-id', offset: 1 })
    await b.kvStore<Meta>().set('shared-id', { id: 'shared-id', offset: 2 })
    expect(await a.kvStore<Meta>().get('shared-id')).toMatchObject({ offset: 1 })
    expect(await b.kvStore<Meta>().get('shared-id')).toMatchObject({ offset: 2 })
    expect(await a.kvStore<Meta>().list()).toEqual(['shared-id'])
    await lockA.unlock()
    await lockB.unlock()
    await a.kvStore<Meta>().delete('shared-id')
    expect(await a.kvStore<Meta>().get('shared-id')).toBeUndefined()
    expect(await b.kvStore<Meta>().get('shared-id')).toMatchObject({ offset: 2 })
    await b.kvStore<Meta>().delete('shared-id')
  })

  it("a tenant on the other's prefix is refused at once and cannot touch its lock", async () => {
    const owner = tenantLocker(TENANTS.a, { prefix: TENANTS.a.prefix })
    const releaseRequested = signal()
    let releaseRequests = 0
    const held = owner.newLock('upload-1')
    await within(
      held.lock(never, () => {
        releaseRequests++
        releaseRequested.fire()
      }),
      10_000,
      'tenant A locks',
    )
    await owner.kvStore<Meta>().set('upload-1', { id: 'upload-1', offset: 7 })
    const root = client(ROOT)
    const { kvs, header } = await root.getAll().prefix('/tenant-a/').exec()
    const [ownerKey] = kvs.filter((kv) => kv.key.toString().startsWith('/tenant-a/upload-1/'))
    expect(ownerKey).toBeDefined()
    const since = BigInt(header.revision)

    // Tenant B configured with tenant A's prefix; acquireLockTimeout far above what we accept.
    const intruder = tenantLocker(TENANTS.b, {
      prefix: TENANTS.a.prefix,
      acquireLockTimeout: 20_000,
    })
    const { error: refusal, ms: lockMs } = await rejectionOf(
      intruder.newLock('upload-1').lock(never, () => {}),
      10_000,
      "intruder's lock()",
    )
    expect(refusal).toBeInstanceOf(PermissionDeniedError)
    expect((refusal as Error).message).toContain('/tenant-a/upload-1/')
    expect((refusal as Error).message).toContain('permission denied')
    expect(lockMs).toBeLessThan(3_000)

    const kv = intruder.kvStore<Meta>()
    await expect(kv.get('upload-1')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(kv.set('upload-1', { id: 'upload-1', offset: 0 })).rejects.toThrow(
      /etcd denied access to \/tenant-a\/\.kv\/upload-1/,
    )
    await expect(kv.delete('upload-1')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(kv.list()).rejects.toBeInstanceOf(PermissionDeniedError)

    // Nothing under /tenant-a/ changed since A locked: a watch from that revision replays every
    // put and delete, and the first event it delivers is a legitimate waiter's key, put now.
    const watcher = await root
      .watch()
      .prefix('/tenant-a/')
      .startRevision((since + 1n).toString())
      .create()
    deferCleanup(() => watcher.cancel())
    const firstEvent = new Promise<{ type: string; key: string }>((resolve) => {
      watcher.on('data', (res) => {
        const event = res.events[0]
        if (event) resolve({ type: event.type, key: event.kv.key.toString() })
      })
    })
    const waiter = tenantLocker(TENANTS.a, { prefix: TENANTS.a.prefix })
    let waiterLease = ''
    waiter.once('sessionGranted', ({ lease }) => {
      waiterLease = lease
    })
    await within(waiter.ready(), 10_000, 'the waiter gets a session')
    expect(releaseRequests).toBe(0)
    const waiting = waiter.newLock('upload-1').lock(never, () => {})
    const first = await within(firstEvent, 10_000, 'first event under /tenant-a/')
    expect(first.type).toBe('Put')
    expect(first.key).toBe(`/tenant-a/upload-1/${waiterLease}`)

    // ...so the holder's first release request is for that waiter, and the hand-over works.
    await within(releaseRequested.promise, 10_000, 'holder hears the waiter')
    expect(releaseRequests).toBe(1)
    expect(await owner.kvStore<Meta>().get('upload-1')).toMatchObject({ offset: 7 })
    await held.unlock()
    await within(waiting, 10_000, 'the waiter locks')
  })

  it("a tenant's locks on the other's prefix made at once are each refused, and write nothing", async () => {
    // Several in one turn: their enqueues go to etcd in one batch (nested txns, whose operations
    // etcd before 3.4.42 / 3.5.28 does not check against the user's permissions).
    const intruder = tenantLocker(TENANTS.b, {
      prefix: TENANTS.a.prefix,
      acquireLockTimeout: 20_000,
    })
    await within(intruder.ready(), 10_000, 'the intruder gets a session')
    const root = client(ROOT)
    const ids = Array.from({ length: 8 }, (_, i) => `batched-${i}`)
    const refusals = await Promise.all(
      ids.map((id) =>
        rejectionOf(
          intruder.newLock(id).lock(never, () => {}),
          10_000,
          id,
        ),
      ),
    )
    for (const { error } of refusals) expect(error).toBeInstanceOf(PermissionDeniedError)
    const written = await root.getAll().prefix('/tenant-a/batched-').keys()
    expect(written).toEqual([])
  })

  it('a wrong password is an authentication error at once, not a retry until grantTimeout', async () => {
    const grantTimeout = 10_000
    const locker = tenantLocker(
      { username: TENANTS.a.username, password: 'not-the-password' },
      { prefix: TENANTS.a.prefix, grantTimeout },
    )
    const { error, ms } = await rejectionOf(locker.ready(), grantTimeout + 5_000, 'ready()')
    expect(ms).toBeLessThan(3_000)
    expect(error).toBeInstanceOf(AuthenticationError)
    expect((error as Error).message).toContain(etcd.endpoints[0])
    expect((error as Error).message).toMatch(/authentication failed/)
    await expect(
      within(
        locker.newLock('upload-1').lock(never, () => {}),
        5_000,
        'lock() settles',
      ),
    ).rejects.toBeInstanceOf(AuthenticationError)
  })

  it('a client without credentials on an etcd with auth is refused at once', async () => {
    const locker = new Etcd3Locker(newClient(etcd.endpoints), {
      prefix: TENANTS.a.prefix,
      acquireLockTimeout: 20_000,
    })
    deferCleanup(() => locker.close())
    const error = await within(
      locker
        .newLock('upload-1')
        .lock(never, () => {})
        .then(
          () => new Error('lock() resolved'),
          (e: unknown) => e,
        ),
      5_000,
      'lock() settles',
    )
    expect(error).toBeInstanceOf(AuthenticationError)
    expect((error as Error).message).toMatch(/user name is empty/)
    await expect(locker.kvStore().get('upload-1')).rejects.toBeInstanceOf(AuthenticationError)
  })
})
