/**
 * A create etcd refuses for permission (RBAC) among creates it accepts, all in flight on one
 * stream: the refused watch alone fails; every other one is created and hears its events. An
 * etcd member of this file's own, with auth enabled (auth applies to every client).
 */
import type { IEvent } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { readBatchOf } from '../../src/session/read-batch.js'
import { watchHubOf } from '../../src/watch/hub.js'
import {
  type EtcdCluster,
  etcdctl,
  newClient,
  signal,
  startEtcd,
  within,
} from '../harness/index.js'

const ROOT = { username: 'root', password: 'root-secret' }
const TENANT = { username: 'tenant', password: 'tenant-secret', prefix: '/tenant' }

let etcd: EtcdCluster

beforeAll(async () => {
  etcd = await startEtcd(1)
  const ctl = (...args: string[]) => etcdctl(args, etcd.endpoints)
  await ctl('user', 'add', `${ROOT.username}:${ROOT.password}`)
  await ctl('role', 'add', 'root')
  await ctl('user', 'grant-role', 'root', 'root')
  await ctl('role', 'add', TENANT.username)
  await ctl(
    'role',
    'grant-permission',
    TENANT.username,
    '--prefix=true',
    'readwrite',
    `${TENANT.prefix}/`,
  )
  await ctl('user', 'add', `${TENANT.username}:${TENANT.password}`)
  await ctl('user', 'grant-role', TENANT.username, TENANT.username)
  await ctl('auth', 'enable')
})

afterAll(async () => {
  await etcd?.stop()
})

it('a create refused for permission among 200 others fails alone; the others hear their puts', async () => {
  const client = newClient(etcd.endpoints, {
    auth: { username: TENANT.username, password: TENANT.password },
  })
  const hub = watchHubOf(client)
  const seen = Array.from({ length: 200 }, () => [] as IEvent[])
  const interrupted: string[] = []
  const created = Array.from({ length: 200 }, () => signal())
  const watch = (i: number) =>
    hub.watch(
      { key: Buffer.from(`${TENANT.prefix}/${i}`), from: 'now' },
      {
        events: (events) => seen[i]?.push(...events),
        interrupted: (why) => interrupted.push(why),
        created: () => created[i]?.fire(),
      },
    )
  const first = Array.from({ length: 100 }, (_, i) => watch(i))
  const refusal = signal<string>()
  const refused = hub.watch(
    { key: Buffer.from('/elsewhere/k'), from: 'now' },
    { events: () => {}, interrupted: (why) => refusal.fire(why) },
  )
  const rest = Array.from({ length: 100 }, (_, i) => watch(100 + i))
  expect(await within(refusal.promise, 5_000, 'the refused watch fails')).toMatch(
    /permission denied/,
  )
  await within(Promise.all(created.map((c) => c.promise)), 5_000, 'every other watch created')
  await Promise.all(
    Array.from({ length: 200 }, (_, i) => client.put(`${TENANT.prefix}/${i}`).value('x')),
  )
  await within(
    new Promise<void>((resolve) => {
      const poll = () => (seen.every((s) => s.length === 1) ? resolve() : setImmediate(poll))
      poll()
    }),
    5_000,
    'every other watch hears its put',
  )
  expect(interrupted).toEqual([])
  expect(refused.ended).toBe(true)
  expect(hub.counters.createsRefused).toBe(1)
  await Promise.all([...first, ...rest].map((w) => w.cancel()))
})

it('a queue read refused for permission fails alone; the reads batched with it are answered', async () => {
  const client = newClient(etcd.endpoints, {
    auth: { username: TENANT.username, password: TENANT.password },
  })
  await client.put(`${TENANT.prefix}/k`).value('v').exec()
  const batch = readBatchOf(client)
  // Made in one turn: one txn, which etcd refuses whole for the range outside the tenant's.
  const elsewhere = batch.range({ key: Buffer.from('/elsewhere/k') })
  const ours = Array.from({ length: 5 }, () =>
    batch.range({ key: Buffer.from(`${TENANT.prefix}/k`) }),
  )
  await expect(elsewhere).rejects.toThrow(/permission denied/)
  for (const answer of await Promise.all(ours)) expect(answer.kvs[0]?.value.toString()).toBe('v')
  client.close()
})
