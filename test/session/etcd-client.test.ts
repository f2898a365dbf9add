/**
 * createEtcdClient's `hosts`: what the README's Usage passes (`process.env.ETCD_ENDPOINTS`) is a
 * comma-separated string, as docker-compose and the Kubernetes manifests set it. It must reach
 * every member, and an empty one must be refused at once, naming what to set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEtcdClient, Etcd3Locker } from '../../src/index.js'
import {
  deferCleanup,
  type EtcdCluster,
  startEtcd,
  uniquePrefix,
  within,
} from '../harness/index.js'

describe('createEtcdClient hosts', () => {
  let cluster: EtcdCluster
  beforeAll(async () => {
    cluster = await startEtcd(3)
  }, 60_000)
  afterAll(() => cluster?.stop())

  it.each([
    { form: 'a comma-separated string', hosts: () => cluster.endpoints.join(',') },
    {
      form: 'a comma-separated string with spaces and a trailing comma',
      hosts: () => ` ${cluster.endpoints.join(' , ')} ,`,
    },
    { form: 'an array with padded entries', hosts: () => cluster.endpoints.map((e) => ` ${e} `) },
  ])('$form reaches every member: a lock is held and released', async ({ hosts }) => {
    const client = createEtcdClient({ hosts: hosts() })
    deferCleanup(() => client.close())
    const locker = new Etcd3Locker(client, {
      prefix: uniquePrefix('hosts'),
      ttl: 10,
      lockDrainTimeout: 2000,
    })
    deferCleanup(() => locker.close())
    await within(locker.ready(), 5_000, 'ready() with three endpoints')
    const lock = locker.newLock('u1')
    await within(
      lock.lock(new AbortController().signal, () => {}),
      5_000,
      'lock()',
    )
    await lock.unlock()
    // Each member answers through the client: a call pinned to each endpoint alone works too.
    for (const endpoint of cluster.endpoints) {
      const one = createEtcdClient({ hosts: `${endpoint},` })
      deferCleanup(() => one.close())
      await within(
        one
          .put(`${uniquePrefix('one')}/k`)
          .value('v')
          .exec(),
        5_000,
        `put via ${endpoint}`,
      )
    }
  })

  it.each([
    { form: 'the empty string', hosts: '' },
    { form: 'only commas and spaces', hosts: ' , ,' },
    { form: 'an empty array', hosts: [] },
    { form: 'an array of empty strings', hosts: ['', ' '] },
  ])('$form is refused at once, naming hosts and ETCD_ENDPOINTS', ({ hosts }) => {
    expect(() => createEtcdClient({ hosts })).toThrow(RangeError)
    expect(() => createEtcdClient({ hosts })).toThrow(
      /^createEtcdClient: hosts names no etcd endpoint \(got .*\): give 'host:port' or a comma-separated list \('a:2379,b:2379'\), e\.g\. from ETCD_ENDPOINTS$/,
    )
  })

  it.each([
    { form: 'no options', options: undefined },
    { form: 'null', options: null },
    { form: 'a host string', options: '127.0.0.1:2379' },
  ])('$form for its options is a TypeError asking for { hosts }', ({ options }) => {
    expect(() => createEtcdClient(options as never)).toThrow(TypeError)
    expect(() => createEtcdClient(options as never)).toThrow(
      /^createEtcdClient needs its options as an object with hosts: createEtcdClient\(\{ hosts: '127\.0\.0\.1:2379' \}\), got /,
    )
  })

  it.each([
    { form: 'a number', hosts: 2379 },
    { form: 'undefined', hosts: undefined },
    { form: 'an array with a number', hosts: ['127.0.0.1:2379', 2379] },
  ])('$form is a TypeError naming hosts', ({ hosts }) => {
    expect(() => createEtcdClient({ hosts: hosts as never })).toThrow(TypeError)
    expect(() => createEtcdClient({ hosts: hosts as never })).toThrow(/^createEtcdClient: hosts /)
  })
})
