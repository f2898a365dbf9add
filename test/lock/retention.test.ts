/**
 * Lock retention (protocol step 6): after the last local unlock the key is kept, so the next
 * request of this process for the upload holds with no etcd call; anyone else queueing takes it
 * within a hand-over, and nothing is left behind. Counts come from etcd's own /metrics, on a
 * member of this file's own, so no other test's requests are counted.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import { runProcess } from '../harness/child.js'
import {
  deferCleanup,
  etcdMetric,
  keysUnder,
  lockerBehindProxy,
  newClient,
  newLocker,
  privateEtcd,
  signal,
  uniquePrefix,
  untilNoKeys,
  within,
} from '../harness/index.js'

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url))
const never = () => new AbortController().signal

// Long enough that only a waiter, not the idle timer, can be what gives a kept key up here.
const LONG_RETAIN_MS = 60_000

describe('lock retention', () => {
  const etcd = privateEtcd()

  /** Every request etcd handled: unary calls, and watch creates and cancels on the stream. */
  const etcdRequests = async () =>
    (await etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_type: 'unary' })) +
    (await etcdMetric(etcd.endpoint, 'grpc_server_msg_received_total', { grpc_method: 'Watch' }))
  const proposals = () => etcdMetric(etcd.endpoint, 'etcd_server_proposals_committed_total')

  const cycles = async (retainLocks: number, n: number) => {
    const locker = newLocker(
      { prefix: uniquePrefix('hit'), ttl: 10, retainLocks },
      etcd.cluster.endpoints,
    )
    const hits: boolean[] = []
    locker.on('lockAcquired', ({ retained }) => hits.push(retained))
    const first = locker.newLock('u')
    await first.lock(never(), () => {})
    await first.unlock()
    // Let the background work of the first cycle (the kept key's watch, a delete) settle.
    await new Promise((resolve) => setTimeout(resolve, 200))
    const requests = await etcdRequests()
    const raft = await proposals()
    for (let i = 0; i < n; i++) {
      const lock = locker.newLock('u')
      await lock.lock(never(), () => {})
      await lock.unlock()
    }
    return {
      requests: (await etcdRequests()) - requests,
      proposals: (await proposals()) - raft,
      hits: hits.slice(1),
      locker,
    }
  }

  it('the next lock of the same upload on the same instance makes no etcd request', async () => {
    const on = await cycles(5_000, 20)
    const off = await cycles(0, 20)
    console.log(
      `[figure] 20 same-id cycles: retention on ${on.requests} etcd requests, ${on.proposals} raft proposals; off ${off.requests} requests, ${off.proposals} proposals`,
    )
    expect(on.hits).toEqual(Array(20).fill(true))
    expect(on.requests).toBe(0)
    expect(on.proposals).toBe(0)
    expect(off.hits).toEqual(Array(20).fill(false))
    expect(off.proposals).toBeGreaterThanOrEqual(40) // enqueue and delete, each cycle
    expect(on.locker.retainedLocks).toBe(1)
    expect(off.locker.retainedLocks).toBe(0)
  })

  it('a waiter on another instance takes a kept lock long before retainLocks', async () => {
    const prefix = uniquePrefix('take')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    expect(a.retainedLocks).toBe(1)
    const b = newLocker({ prefix, ttl: 10 }, etcd.cluster.endpoints).newLock('u')
    const started = performance.now()
    await within(
      b.lock(never(), () => {}),
      5_000,
      "B's lock of a key A keeps",
    )
    console.log(`[figure] hand-over from a kept key: ${Math.round(performance.now() - started)} ms`)
    expect(a.retainedLocks).toBe(0)
    await b.unlock()
  })

  it('a take of a kept key is two writes and no read: the queue seen at the enqueue needs no second look', async () => {
    const calls = async () => ({
      reads: await etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: 'Range' }),
      txns: await etcdMetric(etcd.endpoint, 'grpc_server_handled_total', { grpc_method: 'Txn' }),
    })
    const prefix = uniquePrefix('take-reads')
    const { proxy, locker: a } = await lockerBehindProxy(
      { prefix, ttl: 10, retainLocks: LONG_RETAIN_MS },
      etcd.endpoint,
    )
    const bClient = newClient(etcd.cluster.endpoints)
    // retainLocks 0: B's unlock deletes its key (one txn) and starts no watch or read of its own.
    const b = new Etcd3Locker(bClient, { prefix, ttl: 10, retainLocks: 0 })
    deferCleanup(() => b.close())
    await b.ready()
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    expect(a.retainedLocks).toBe(1)
    // A's kept key is watched and read once; wait until etcd handles nothing more.
    let settled = await calls()
    for (let i = 0; i < 100; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const now = await calls()
      if (now.reads === settled.reads && now.txns === settled.txns) break
      settled = now
    }
    // A hears of B only once B's watch on A's key is in place: etcd created it at B's enqueue
    // revision, so nothing can have happened in between that a read would show.
    proxy.cut('hold-answers')
    const watchers = () => etcdMetric(etcd.endpoint, 'etcd_debugging_mvcc_watcher_total')
    const watchersBefore = await watchers()
    const before = await calls()
    const taken = b.newLock('u')
    const taking = taken.lock(never(), () => {})
    // Until etcd has registered B's watch (B's hub may open its stream first): A's delete,
    // once A hears of B, must come after it, as it does in a hand-over.
    for (let i = 0; i < 250 && (await watchers()) === watchersBefore; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(await watchers()).toBe(watchersBefore + 1)
    proxy.restore()
    await within(taking, 5_000, "B's lock of a key A keeps")
    // At once: a hold reads its queue 50 ms in (its contention watch), an unlock before does not.
    await taken.unlock()
    expect(a.retainedLocks).toBe(0)
    // B's enqueue, A's delete, B's delete: until etcd has counted all three.
    let after = await calls()
    for (let i = 0; i < 100 && after.txns - before.txns < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      after = await calls()
    }
    expect({ reads: after.reads - before.reads, txns: after.txns - before.txns }).toEqual({
      reads: 0,
      txns: 3,
    })
  })

  it('etcdctl lock takes a kept lock long before retainLocks', async () => {
    const prefix = uniquePrefix('take-ctl')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    const ctl = runProcess('etcdctl', [`--endpoints=${etcd.endpoint}`, 'lock', `${prefix}/u`], {
      ETCDCTL_API: '3',
    })
    try {
      await within(
        ctl.waitForLine((line) => line.startsWith(`${prefix}/u/`)),
        5_000,
        'etcdctl holds',
      )
      expect(a.retainedLocks).toBe(0)
    } finally {
      await ctl.kill('SIGKILL')
    }
  })

  it("the CLI's release takes a kept lock long before retainLocks", async () => {
    const prefix = uniquePrefix('take-cli')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, 'release', 'u', '--endpoints', etcd.endpoint, '--prefix', prefix],
      { stdio: 'ignore' },
    )
    const code = await within(
      new Promise<number | null>((resolve) => child.once('close', resolve)),
      10_000,
      'the CLI release',
    ).finally(() => child.pid && child.exitCode === null && process.kill(child.pid, 'SIGKILL'))
    expect(code).toBe(0)
    expect(a.retainedLocks).toBe(0)
    await untilNoKeys(newClient(etcd.cluster.endpoints), prefix)
  })

  it('an upload another instance took is not kept for a while: unlock deletes its key', async () => {
    const prefix = uniquePrefix('taken')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const b = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const first = a.newLock('u')
    await first.lock(never(), () => {})
    await first.unlock()
    const taken = b.newLock('u')
    await within(
      taken.lock(never(), () => {}),
      5_000,
      'B takes it',
    )
    const again = a.newLock('u')
    const waiting = again.lock(never(), () => {})
    await taken.unlock() // A waits: B saw a waiter, so B deletes instead of keeping
    await within(waiting, 5_000, 'A gets it back')
    await again.unlock()
    expect(a.retainedLocks).toBe(0) // taken from A a moment ago: not kept
    expect(b.retainedLocks).toBe(0)
    await untilNoKeys(newClient(etcd.cluster.endpoints), prefix)
  })

  /** A keeps upload `id`, then B takes it from A's kept key. */
  const keptThenTaken = async (
    a: ReturnType<typeof newLocker>,
    b: ReturnType<typeof newLocker>,
    id: string,
  ) => {
    const held = a.newLock(id)
    await held.lock(never(), () => {})
    await held.unlock()
    expect(a.retainedLocks, `A keeps ${id}`).toBe(1)
    const taker = b.newLock(id)
    await within(
      taker.lock(never(), () => {}),
      5_000,
      `B takes ${id}`,
    )
    await taker.unlock()
  }

  it('an instance whose kept keys other instances take (round robin) stops keeping any', async () => {
    const prefix = uniquePrefix('spread')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const b = newLocker({ prefix, ttl: 10, retainLocks: 0 }, etcd.cluster.endpoints)
    // Two uploads in a row whose next request went to the other instance: each made that
    // request wait for A's delete, which costs it more than a reuse saves.
    await keptThenTaken(a, b, 'u1')
    await keptThenTaken(a, b, 'u2')
    const next = a.newLock('u3')
    await next.lock(never(), () => {})
    await next.unlock()
    expect(a.retainedLocks, 'a third upload is not kept').toBe(0)
    await untilNoKeys(newClient(etcd.cluster.endpoints), prefix)
  })

  it('an instance whose clients mostly stick keeps its keys through an occasional take', async () => {
    const prefix = uniquePrefix('sticky')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const b = newLocker({ prefix, ttl: 10, retainLocks: 0 }, etcd.cluster.endpoints)
    const hits: boolean[] = []
    a.on('lockAcquired', ({ retained }) => hits.push(retained))
    for (let upload = 0; upload < 5; upload++) {
      // Three requests of one upload on A, then its last one on B.
      for (let request = 0; request < 3; request++) {
        const lock = a.newLock(`s${upload}`)
        await lock.lock(never(), () => {})
        await lock.unlock()
      }
      const taker = b.newLock(`s${upload}`)
      await within(
        taker.lock(never(), () => {}),
        5_000,
        `B takes s${upload}`,
      )
      await taker.unlock()
    }
    // Every second and third request of each upload held A's kept key.
    expect(hits).toEqual(Array(5).fill([false, true, true]).flat())
    await untilNoKeys(newClient(etcd.cluster.endpoints), prefix)
  })

  it('close() with kept locks leaves no key', async () => {
    const prefix = uniquePrefix('close')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    for (const id of ['u1', 'u2', 'u3']) {
      const lock = a.newLock(id)
      await lock.lock(never(), () => {})
      await lock.unlock()
    }
    const client = newClient(etcd.cluster.endpoints)
    expect(await keysUnder(client, prefix)).toHaveLength(3)
    expect(a.retainedLocks).toBe(3)
    await a.close()
    expect(a.retainedLocks).toBe(0)
    expect(await keysUnder(client, prefix)).toHaveLength(0)
  })

  it('a lost session drops its kept locks; the next lock takes a new key on a new session', async () => {
    const prefix = uniquePrefix('lost')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    let lease = ''
    a.on('sessionGranted', (info) => {
      lease = info.lease
    })
    const lost = signal()
    a.on('sessionLost', () => lost.fire())
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    expect(a.retainedLocks).toBe(1)
    // An operator revokes the lease: etcd deletes the kept key with it.
    const client = newClient(etcd.cluster.endpoints)
    const [key] = await keysUnder(client, prefix)
    const hex = (key ?? '').slice((key ?? '').lastIndexOf('/') + 1)
    await client.leaseClient.leaseRevoke({ ID: BigInt(`0x${hex}`).toString() })
    await within(lost.promise, 5_000, 'the locker hears its lease is gone')
    expect(a.retainedLocks).toBe(0)
    const next = a.newLock('u')
    const hits: boolean[] = []
    a.on('lockAcquired', ({ retained }) => hits.push(retained))
    await next.lock(never(), () => {})
    expect(hits).toEqual([false])
    const keys = await keysUnder(client, prefix)
    expect(keys).toHaveLength(1)
    expect(keys[0]?.endsWith(hex)).toBe(false)
    expect(lease).not.toBe(hex)
    await next.unlock()
  })

  it('a kept key deleted by hand is never used again: another instance and we never both hold', async () => {
    const prefix = uniquePrefix('deleted')
    const a = newLocker({ prefix, ttl: 10, retainLocks: LONG_RETAIN_MS }, etcd.cluster.endpoints)
    const lock = a.newLock('u')
    await lock.lock(never(), () => {})
    await lock.unlock()
    const client = newClient(etcd.cluster.endpoints)
    await client.delete().prefix(`${prefix}/u/`)
    const b = newLocker({ prefix, ttl: 10 }, etcd.cluster.endpoints).newLock('u')
    await b.lock(never(), () => {})
    let aHolds = false
    const again = a.newLock('u')
    const waiting = again
      .lock(never(), () => {})
      .then(() => {
        aHolds = true
      })
    // Blocked, not held from the deleted key: B's key is first in etcd now.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(aHolds).toBe(false)
    await b.unlock()
    await within(waiting, 5_000, 'A after B')
    await again.unlock()
  })

  /**
   * The holder's contention watch works: a waiter on another instance is heard (`released`
   * settles), and takes upload 'u' of `prefix` once the holder unlocks.
   */
  const heardAndTaken = async (
    prefix: string,
    holder: { unlock(): Promise<void> },
    released: Promise<void>,
  ) => {
    const waiter = newLocker({ prefix, ttl: 10 }, etcd.cluster.endpoints).newLock('u')
    const waiting = waiter.lock(never(), () => {})
    await within(released, 5_000, 'the holder hears the waiter')
    await holder.unlock()
    await within(waiting, 5_000, 'the waiter takes the lock')
    await waiter.unlock()
  }

  it('a lock held after a wait starts its contention watch from a read: none from its old revision', async () => {
    const prefix = uniquePrefix('waited')
    const client = newClient(etcd.cluster.endpoints)
    const watchMessages = () =>
      etcdMetric(etcd.endpoint, 'grpc_server_msg_received_total', { grpc_method: 'Watch' })
    const watchers = () => etcdMetric(etcd.endpoint, 'etcd_debugging_mvcc_watcher_total')
    /** Polls `read` until `done` holds of its value (at most 5 s); returns that value. */
    const until = async (read: () => Promise<number>, done: (n: number) => boolean) => {
      const giveUpAt = Date.now() + 5_000
      for (;;) {
        const n = await read()
        if (done(n) || Date.now() > giveUpAt) return n
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
    // The holder is a bare queue key (as etcdctl's would be): no watch of its own to count.
    const holderKey = `${prefix}/u/0`
    await client.put(holderKey).value('').exec()
    // B's watch stream is open before the count starts (a lock of another upload opens it).
    const bLocker = newLocker({ prefix, ttl: 10, retainLocks: 0 }, etcd.cluster.endpoints)
    const warm = bLocker.newLock('warm-up')
    await warm.lock(never(), () => {})
    await warm.unlock()
    const watching = await watchers()
    const b = bLocker.newLock('u')
    const bReleased = signal()
    const bHolds = b.lock(never(), () => bReleased.fire())
    expect(await until(watchers, (n) => n > watching), "B's wait watch in etcd").toBe(watching + 1)
    // etcd moves on while B waits, and compacts: B's create revision is history now. A watch
    // from it would make etcd decode every revision since (here: refuse it, compacted).
    await client.put(`${prefix}-other`).value('x').exec()
    const put = await client.put(`${prefix}-other`).value('y').exec()
    await client.kv.compact({ revision: put.header.revision, physical: true })
    const before = await watchMessages()
    await client.delete().key(holderKey).exec()
    await within(bHolds, 5_000, 'B holds')
    // B's contention watch starts 50 ms into the hold; then nothing more comes.
    await until(watchMessages, (n) => n - before >= 2)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const watches = (await watchMessages()) - before
    console.log(`[figure] lock held after a wait, history compacted: ${watches} watch messages`)
    // The cancel of B's wait, and one create from the read's revision: no create that etcd
    // refuses (or, uncompacted, catches up from B's old revision).
    expect(watches).toBe(2)
    await heardAndTaken(prefix, b, bReleased.promise)
  })

  it('compaction under a long hold: the watch resumes once, no restart loop', async () => {
    const prefix = uniquePrefix('compacted')
    const a = newLocker({ prefix, ttl: 10 }, etcd.cluster.endpoints)
    const client = newClient(etcd.cluster.endpoints)
    const watchMessages = () =>
      etcdMetric(etcd.endpoint, 'grpc_server_msg_received_total', { grpc_method: 'Watch' })
    const lock = a.newLock('u')
    const released = signal()
    await lock.lock(never(), () => released.fire())
    // Compacted past our key's revision before the holder's watch starts (50 ms into the hold).
    await client.put(`${prefix}-other`).value('x').exec()
    const put = await client.put(`${prefix}-other`).value('y').exec()
    await client.kv.compact({ revision: put.header.revision, physical: true })
    const before = await watchMessages()
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const watches = (await watchMessages()) - before
    console.log(`[figure] 2 s hold under compaction: ${watches} watch messages`)
    // One create cancelled by the compaction, one create from the current revision.
    expect(watches).toBeLessThanOrEqual(3)
    await heardAndTaken(prefix, lock, released.promise)
  })
})
