/**
 * The lock cycle's writes (a request's enqueue, a released key's delete) made in one turn go to
 * etcd as one txn of nested txns, not one Txn call and one raft proposal each (counted by etcd's
 * own grpc_server_handled_total and etcd_server_proposals_committed_total), and a txn refused for
 * its own sake fails alone. An etcd member of this file's own: its counts are this file's work.
 */
import type { Etcd3, ITxnRequest } from 'etcd3'
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import { checksOf, txnBatchOf } from '../../src/session/txn-batch.js'
import {
  deferCleanup,
  etcdMetric,
  newClient,
  newLocker,
  privateEtcd,
  startEtcd,
  uniquePrefix,
  untilNoKeys,
  within,
} from '../harness/index.js'

const etcd = privateEtcd()
const never = () => new AbortController().signal
const COUNT = 200

const txnCalls = () =>
  etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: 'Txn' })
const proposals = () => etcdMetric(etcd.endpoint, 'etcd_server_proposals_committed_total')

/**
 * A write that goes at once (nothing is in flight on a new client): the txns made after it in
 * the same turn go as a batch, not the first of them alone.
 */
function firstInFlight(client: Etcd3): void {
  void txnBatchOf(client).txn(
    {
      compare: [],
      success: [{ request_put: { key: Buffer.from('/in-flight'), value: Buffer.from('') } }],
    },
    '/in-flight',
  )
}

/** An etcd member of the test's own (run with `extraArgs`) and a client of it, both stopped after. */
async function ownMember(
  extraArgs: string[] = [],
): Promise<{ client: Etcd3; endpoints: string[] }> {
  const member = await startEtcd(1, [], { extraArgs })
  deferCleanup(() => member.stop())
  const client = newClient(member.endpoints)
  deferCleanup(() => client.close())
  return { client, endpoints: member.endpoints }
}

/** A txn that creates `key` (on `lease`, if given) unless it exists, and reads it either way. */
function createUnlessThere(key: Buffer, lease?: string): ITxnRequest {
  return {
    compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
    success: [
      { request_put: { key, value: Buffer.from('new'), lease } },
      { request_range: { key } },
    ],
    failure: [{ request_range: { key } }],
  }
}

describe('lock-cycle writes in batches', () => {
  it(`${COUNT} locks taken and released at once: a few Txn calls and raft proposals, not one each`, async () => {
    const prefix = uniquePrefix('writes')
    // No retention: every unlock deletes its key.
    const locker = newLocker({ prefix, retainLocks: 0 }, [etcd.endpoint])
    await locker.ready()
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const [callsBefore, proposalsBefore] = await Promise.all([txnCalls(), proposals()])
    const locks = Array.from({ length: COUNT }, (_, i) => locker.newLock(`u${i}`))
    await Promise.all(locks.map((lock) => lock.lock(never(), () => {})))
    // Unlocked at once: no hold lives to its contention watch's start (and its read).
    await Promise.all(locks.map((lock) => lock.unlock()))
    // unlock() resolves before etcd has the delete.
    await untilNoKeys(client, `${prefix}/`)
    const [calls, committed] = await Promise.all([txnCalls(), proposals()])
    // 2 x COUNT Txn calls and as many proposals when each write was a call of its own.
    expect(calls - callsBefore).toBeLessThan((2 * COUNT) / 10)
    expect(committed - proposalsBefore).toBeLessThan((2 * COUNT) / 10)
  })

  /** Lockers `a` and `b` lock the same ids at once, round after round: one holds at a time. */
  async function inTurn(a: Etcd3Locker, b: Etcd3Locker, queueOf: (id: string) => string) {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    await Promise.all([a.ready(), b.ready()])
    for (let round = 0; round < 30; round++) {
      const id = `u${round}`
      const locks = [a.newLock(id), b.newLock(id)]
      // Both enqueues wait for a batch: the tie came when they shared one.
      firstInFlight(client)
      let holders = 0
      let most = 0
      const cycles = locks.map(async (lock) => {
        await lock.lock(never(), () => {})
        most = Math.max(most, ++holders)
        // The keys as etcd has them while one holds: each at a create revision of its own.
        const queue = await client.getAll().prefix(queueOf(id)).exec()
        const revisions = new Set(queue.kvs.map((kv) => kv.create_revision))
        expect(revisions.size).toBe(queue.kvs.length)
        holders--
        await lock.unlock()
      })
      await within(Promise.all(cycles), 5_000, `round ${round}: both hold in turn`)
      expect(most).toBe(1)
    }
  }

  it('two lockers on one client queueing for one upload in the same turn get distinct places: one holds, then the other', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const prefix = uniquePrefix('one-queue')
    const options = { prefix, acquireLockTimeout: 10_000, retainLocks: 0 }
    const a = new Etcd3Locker(client, options)
    const b = new Etcd3Locker(client, options)
    deferCleanup(() => Promise.all([a.close(), b.close()]))
    await inTurn(a, b, (id) => `${prefix}/${id}/`)
  })

  it('the same with one locker on a namespace of the client and one on the client, both on one queue', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const outer = uniquePrefix('ns')
    const options = { acquireLockTimeout: 10_000, retainLocks: 0 }
    const a = new Etcd3Locker(client.namespace(outer), { ...options, prefix: '/tusd' })
    const b = new Etcd3Locker(client, { ...options, prefix: `${outer}/tusd` })
    deferCleanup(() => Promise.all([a.close(), b.close()]))
    await inTurn(a, b, (id) => `${outer}/tusd/${id}/`)
  })

  it("locks on ids of 60 000 bytes made at once are held in turn (a batch stays under etcd's request size)", async () => {
    const prefix = uniquePrefix('large')
    const locker = newLocker({ prefix, retainLocks: 0, acquireLockTimeout: 10_000 }, [
      etcd.endpoint,
    ])
    const locks = Array.from({ length: 16 }, (_, i) => locker.newLock(`${i}`.padEnd(60_000, 'x')))
    await within(
      Promise.all(locks.map((lock) => lock.lock(never(), () => {}))),
      10_000,
      'every lock held',
    )
    await Promise.all(locks.map((lock) => lock.unlock()))
  })

  it('each txn of a batch gets its own answer: its own branch, its own reads, the revision it wrote at', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const prefix = uniquePrefix('answers')
    const keys = Array.from({ length: 30 }, (_, i) => Buffer.from(`${prefix}/${i}`))
    // The even ones exist already.
    for (let i = 0; i < keys.length; i += 2)
      await client
        .put(keys[i] as Buffer)
        .value('old')
        .exec()
    const batch = txnBatchOf(client)
    const callsBefore = await txnCalls()
    const answers = await Promise.all(
      keys.map((key) => batch.txn(createUnlessThere(key), key.toString())),
    )
    expect(await txnCalls()).toBeLessThan(callsBefore + 3)
    answers.forEach((answer, i) => {
      const created = i % 2 === 1
      expect(answer.succeeded).toBe(created)
      const read = answer.responses[created ? 1 : 0]?.response_range?.kvs[0]
      expect(read?.key.toString()).toBe(keys[i]?.toString())
      expect(read?.value.toString()).toBe(created ? 'new' : 'old')
      if (created) expect(read?.create_revision).toBe(answer.header.revision)
    })
  })

  it('a txn on a lease etcd does not know fails alone; the txns batched with it are answered', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const prefix = uniquePrefix('lease')
    const { ID } = await client.leaseClient.leaseGrant({ TTL: 60 })
    await client.leaseClient.leaseRevoke({ ID })
    const batch = txnBatchOf(client)
    firstInFlight(client)
    const gone = batch.txn(createUnlessThere(Buffer.from(`${prefix}/gone`), ID), 'gone')
    const fine = Array.from({ length: 5 }, (_, i) =>
      batch.txn(createUnlessThere(Buffer.from(`${prefix}/${i}`)), `${i}`),
    )
    await expect(gone).rejects.toThrow(/lease not found/)
    for (const answer of await Promise.all(fine)) expect(answer.succeeded).toBe(true)
  })

  it('two txns writing the same key in one turn are both answered (etcd refuses both in one txn)', async () => {
    const client = newClient([etcd.endpoint])
    deferCleanup(() => client.close())
    const key = Buffer.from(uniquePrefix('same'))
    const batch = txnBatchOf(client)
    const put = (value: string): ITxnRequest => ({
      compare: [],
      success: [{ request_put: { key, value: Buffer.from(value) } }],
    })
    // Given as of different queues: one batch, which etcd refuses.
    firstInFlight(client)
    const answers = await Promise.all([batch.txn(put('1'), 'a'), batch.txn(put('2'), 'b')])
    for (const answer of answers) expect(answer.succeeded).toBe(true)
    expect(['1', '2']).toContain(await client.get(key).string())
  })

  it('a member with a --max-request-bytes below our batch size answers every txn all the same', async () => {
    const { client } = await ownMember(['--max-request-bytes=65536'])
    const batch = txnBatchOf(client)
    for (const round of [1, 2]) {
      firstInFlight(client)
      // 30 txns of about 16 KB: one batch of ours, refused as too large by this member.
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          batch.txn(createUnlessThere(Buffer.from(`r${round}/${i}/`.padEnd(4_000, 'k'))), `${i}`),
        ),
      )
      for (const answer of answers) expect(answer.succeeded).toBe(true)
    }
  })

  it('a member with a --max-txn-ops below ours answers every txn all the same', async () => {
    const { client } = await ownMember(['--max-txn-ops=8'])
    const batch = txnBatchOf(client)
    for (const round of [1, 2]) {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          batch.txn(createUnlessThere(Buffer.from(`r${round}/${i}`)), `${i}`),
        ),
      )
      for (const answer of answers) expect(answer.succeeded).toBe(true)
    }
  })
})

describe("a batch's checks: what etcd checks for each nested txn", () => {
  const b = (text: string) => Buffer.from(text)
  const shape = (request: ITxnRequest) =>
    checksOf(request).map((op) => {
      const { request_put: put, request_range: range, request_delete_range: del } = op
      if (put) return `put ${put.key} ${put.value}`
      if (range) return `read ${range.key}..${range.range_end ?? ''}`
      return `delete ${del?.key}..${del?.range_end ?? ''}`
    })

  it("an enqueue: its put, and its queue's range (its compare's key and reads lie within it)", () => {
    expect(
      shape({
        compare: [{ key: b('/p/u/1'), target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [
          { request_put: { key: b('/p/u/1'), value: b('') } },
          { request_range: { key: b('/p/u/'), range_end: b('/p/u0') } },
        ],
        failure: [
          { request_range: { key: b('/p/u/1') } },
          { request_range: { key: b('/p/u/'), range_end: b('/p/u0') } },
        ],
      }),
    ).toEqual(['put /p/u/1 ', 'read /p/u/../p/u0'])
  })

  it('a delete: its delete and the read of its compare; reads outside each other all stay', () => {
    expect(
      shape({
        compare: [{ key: b('/p/u/1'), target: 'Create', result: 'Equal', create_revision: 5 }],
        success: [{ request_delete_range: { key: b('/p/u/1') } }],
      }),
    ).toEqual(['delete /p/u/1..', 'read /p/u/1..'])
    expect(
      shape({
        compare: [],
        success: [
          { request_range: { key: b('a') } },
          { request_range: { key: b('b'), range_end: b('c') } },
          { request_range: { key: b('a'), range_end: b('\0') } },
          { request_range: { key: b('0'), range_end: b('1') } },
        ],
      }),
    ).toEqual(['read a..\0', 'read 0..1'])
  })
})

describe('lock-cycle writes in batches, etcd out of space', () => {
  it('with the NOSPACE alarm raised, locks made at once write nothing and releases still delete', async () => {
    const { client, endpoints } = await ownMember()
    const prefix = uniquePrefix('nospace')
    const locker = newLocker({ prefix, retainLocks: 0, acquireLockTimeout: 1_500 }, endpoints)
    const held = Array.from({ length: 4 }, (_, i) => locker.newLock(`held-${i}`))
    for (const lock of held) await lock.lock(never(), () => {})
    // What etcd does once its backend passes --quota-backend-bytes: only reads and deletes.
    await client.maintenance.alarm({ action: 'Activate', memberID: 0, alarm: 'Nospace' })
    deferCleanup(() =>
      client.maintenance.alarm({ action: 'Deactivate', memberID: 0, alarm: 'Nospace' }),
    )
    // In one turn: the releases' deletes and the new enqueues.
    const releases = held.map((lock) => lock.unlock())
    const refused = Array.from({ length: 4 }, (_, i) =>
      locker
        .newLock(`new-${i}`)
        .lock(never(), () => {})
        .then(
          () => 'held',
          () => 'refused',
        ),
    )
    await Promise.all(releases)
    expect(await Promise.all(refused)).toEqual(['refused', 'refused', 'refused', 'refused'])
    expect(await client.getAll().prefix(`${prefix}/new-`).keys()).toEqual([])
    await untilNoKeys(client, `${prefix}/held-`)
  })
})
