/**
 * Queue reads of a burst of lock requests go to etcd as a few read-only txns, not one Range call
 * each (counted by etcd's own grpc_server_handled_total), and a read that fails for its own
 * revision fails alone. An etcd member of this file's own: its counts are this file's requests.
 */
import { describe, expect, it } from 'vitest'
import { readBatchOf } from '../../src/session/read-batch.js'
import {
  deferCleanup,
  etcdMetric,
  newClient,
  newLocker,
  privateEtcd,
  startEtcd,
  uniquePrefix,
  untilTrue,
  within,
} from '../harness/index.js'

const etcd = privateEtcd()
const never = () => new AbortController().signal
const COUNT = 200

const handled = (method: string) =>
  etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: method })

describe('queue reads in batches', () => {
  it(`${COUNT} waiters behind ${COUNT} holds: a few Range calls in all, not one per read`, async () => {
    const prefix = uniquePrefix('batch')
    const holder = newLocker({ prefix, acquireLockTimeout: 60_000 }, [etcd.endpoint])
    const waiter = newLocker({ prefix, acquireLockTimeout: 60_000 }, [etcd.endpoint])
    await Promise.all([holder.ready(), waiter.ready()])
    const rangesBefore = await handled('Range')
    const ids = Array.from({ length: COUNT }, (_, i) => `u${i}`)
    await Promise.all(ids.map((id) => holder.newLock(id).lock(never(), () => {})))
    // Every hold's contention watch is in place and has read the queue at its start.
    await untilTrue(
      () =>
        holder.watchCounters.watchesOpen === COUNT && holder.watchCounters.createsInFlight === 0,
      10_000,
      'the holds watch their queues',
    )
    const waiting = ids.map((id) => {
      const lock = waiter.newLock(id)
      return lock.lock(never(), () => {}).then(() => lock)
    })
    await untilTrue(
      () =>
        waiter.watchCounters.watchesOpen === COUNT && waiter.watchCounters.createsInFlight === 0,
      10_000,
      'the waiters watch their predecessors',
    )
    await holder.close()
    const locks = await within(Promise.all(waiting), 20_000, 'every waiter holds')
    for (const lock of locks) await lock.unlock()
    const ranges = (await handled('Range')) - rangesBefore
    // One read per hold (its contention watch's start) and one per waiter (its predecessor,
    // once its watch is in place): 400 reads, one Range call each before they were batched.
    expect(ranges).toBeLessThan((2 * COUNT) / 10)
  })

  it('a read at a compacted revision fails alone; the reads batched with it are answered', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const key = Buffer.from(uniquePrefix('compacted'))
    const first = await client.put(key).value('1').exec()
    await client.put(key).value('2').exec()
    const { header } = await client.get(key).exec()
    await client.kv.compact({ revision: header.revision, physical: true })
    const batch = readBatchOf(client)
    // Made in one turn: one txn, which etcd refuses for the compacted range.
    const old = batch.range({ key, revision: first.header.revision })
    const now = Array.from({ length: 5 }, () => batch.range({ key }))
    await expect(old).rejects.toThrow(/compacted/)
    for (const answer of await Promise.all(now)) {
      expect(answer.kvs[0]?.value.toString()).toBe('2')
    }
  })

  it('a member with a --max-txn-ops below 128 answers every read all the same', async () => {
    const small = await startEtcd(1, [], { extraArgs: ['--max-txn-ops=8'] })
    deferCleanup(() => small.stop())
    const client = newClient(small.endpoints)
    deferCleanup(() => client.close())
    await client.put('k').value('v').exec()
    const batch = readBatchOf(client)
    const first = await Promise.all(
      Array.from({ length: 50 }, () => batch.range({ key: Buffer.from('k') })),
    )
    const then = await Promise.all(
      Array.from({ length: 50 }, () => batch.range({ key: Buffer.from('k') })),
    )
    for (const answer of [...first, ...then]) expect(answer.kvs[0]?.value.toString()).toBe('v')
  })
})
