/** Lock and KV scenarios: each side against its baseline, measured in the same run. */
import { MemoryLocker } from '@tus/server'
import { MemoryKvStore } from '@tus/utils'
import { type Etcd3, EtcdLockFailedError } from 'etcd3'
import { untilKeys } from '../test/harness/key-count.js'
import { createEtcdClient, Etcd3Locker } from './package.js'
import { interleaved, round, type Summary, summarize, timed } from './stats.js'

export interface BenchContext {
  hosts: string[]
  prefix: string
  quick: boolean
  /** Registers something to close once the run ends. */
  defer(cleanup: () => unknown): void
}

/** One line of the results: a scenario side's timing, or a ratio against its baseline. */
export interface Result {
  scenario: string
  name: string
  unit: 'µs' | 'ops/s' | 'uploads/s' | 'ratio' | 'bytes' | 'ms' | 'count'
  value: number
  p99?: number
  /** For a median of rounds: the lowest and the highest round. */
  range?: [number, number]
  samples?: number
  goal?: { value: number; higherIsBetter: boolean }
}

const never = () => new AbortController().signal
const noop = () => {}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A client of its own, as another instance would have: grpc-js shares one connection per etcd
 * member between the clients of a process unless told otherwise, and a scenario's clients must
 * not inherit the last scenario's connection (after the 10 000-lock scale scenario, the soak on a
 * shared connection ran at a fraction of its speed).
 */
export function client(ctx: BenchContext): Etcd3 {
  const c = createEtcdClient({
    hosts: ctx.hosts,
    grpcOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  ctx.defer(() => c.close())
  return c
}

export function locker(
  ctx: BenchContext,
  etcd = client(ctx),
  options: { retainLocks?: number } = {},
): Etcd3Locker {
  const l = new Etcd3Locker(etcd, { prefix: ctx.prefix, ...options })
  ctx.defer(() => l.close())
  return l
}

function timing(scenario: string, name: string, s: Summary): Result {
  return { scenario, name, unit: 'µs', value: s.median, p99: s.p99, samples: s.samples }
}

function ratio(scenario: string, name: string, value: number, goal?: Result['goal']): Result {
  return { scenario, name, unit: 'ratio', value: round(value), ...(goal ? { goal } : {}) }
}

/** Scenarios 1, 2 and 5: one lock cycle, uncontended, against the floor and the peers. */
export async function lockCycle(ctx: BenchContext): Promise<Result[]> {
  const etcd = client(ctx)
  const ours = locker(ctx, etcd)
  await ours.ready()
  const memory = new MemoryLocker()
  const { ID: floorLease } = await etcd.leaseClient.leaseGrant({ TTL: 60 })
  ctx.defer(() => etcd.leaseClient.leaseRevoke({ ID: floorLease }).catch(noop))
  let n = 0
  const times = await interleaved(
    [
      {
        name: 'floor: put with lease + delete',
        op: async () => {
          const key = `${ctx.prefix}/floor/${n++}`
          await etcd.put(key).value('').lease(floorLease).exec()
          await etcd.delete().key(key).exec()
        },
      },
      {
        name: 'Etcd3Locker lock+unlock, fresh id',
        op: async () => {
          const lock = ours.newLock(`fresh-${n++}`)
          await lock.lock(never(), noop)
          await lock.unlock()
        },
      },
      {
        name: 'Etcd3Locker lock+unlock, same id',
        op: async () => {
          const lock = ours.newLock('same')
          await lock.lock(never(), noop)
          await lock.unlock()
        },
      },
      {
        name: 'MemoryLocker lock+unlock',
        op: async () => {
          const lock = memory.newLock('same')
          await lock.lock(never(), noop)
          await lock.unlock()
        },
      },
      {
        name: 'etcd3 client.lock() acquire+release',
        op: async () => {
          const lock = etcd.lock(`${ctx.prefix}/etcd3-lock/same`).ttl(60)
          await lock.acquire()
          await lock.release()
        },
      },
    ],
    ctx.quick ? 1 : 10,
    ctx.quick ? 3 : 100,
  )
  const s = (name: string) => summarize(times.get(name) ?? [])
  const floor = s('floor: put with lease + delete').median
  const S = 'lock cycle'
  return [
    ...[...times.keys()].map((name) => timing(S, name, s(name))),
    ratio(S, 'fresh id / floor', s('Etcd3Locker lock+unlock, fresh id').median / floor, {
      value: 1.15,
      higherIsBetter: false,
    }),
    ratio(S, 'same id / floor', s('Etcd3Locker lock+unlock, same id').median / floor),
    ratio(
      S,
      'same id / MemoryLocker',
      s('Etcd3Locker lock+unlock, same id').median / s('MemoryLocker lock+unlock').median,
      { value: 3, higherIsBetter: false },
    ),
    ratio(
      S,
      'etcd3 client.lock() / floor',
      s('etcd3 client.lock() acquire+release').median / floor,
    ),
  ]
}

/** Scenario 3: lock cycles per second at 1, 16, 256 concurrent uploads vs raw writes / 2. */
export async function throughput(ctx: BenchContext): Promise<Result[]> {
  const etcd = client(ctx)
  // Fresh ids that never come back, each cycle's delete counted: retention would only defer it.
  const ours = locker(ctx, etcd, { retainLocks: 0 })
  await ours.ready()
  const results: Result[] = []
  for (const concurrency of [1, 16, 256]) {
    const perWorker = ctx.quick ? 2 : Math.max(10, Math.ceil(400 / concurrency))
    const run = async (
      op: (worker: number, i: number) => Promise<unknown>,
      settle: () => Promise<unknown> = async () => {},
    ) => {
      const start = process.hrtime.bigint()
      await Promise.all(
        Array.from({ length: concurrency }, async (_, w) => {
          for (let i = 0; i < perWorker; i++) await op(w, i)
        }),
      )
      await settle()
      const seconds = Number(process.hrtime.bigint() - start) / 1e9
      return (concurrency * perWorker) / seconds
    }
    const locks: number[] = []
    const writes: number[] = []
    for (let r = 0; r < (ctx.quick ? 1 : 5); r++) {
      const ids = `c${concurrency}-r${r}-`
      locks.push(
        await run(
          async (w, i) => {
            const lock = ours.newLock(`${ids}${w}-${i}`)
            await lock.lock(never(), noop)
            await lock.unlock()
          },
          // unlock() resolves before etcd has the delete: the run ends when the last one landed.
          () => untilKeys(etcd, `${ctx.prefix}/${ids}`, (n) => n === 0),
        ),
      )
      writes.push(await run((w, i) => etcd.put(`${ctx.prefix}/raw/${w}/${i}`).value('x').exec()))
    }
    const lockRate = summarize(locks).median
    const writeRate = summarize(writes).median
    const S = `throughput x${concurrency}`
    results.push(
      { scenario: S, name: 'lock+unlock cycles', unit: 'ops/s', value: round(lockRate, 0) },
      { scenario: S, name: 'raw etcd writes', unit: 'ops/s', value: round(writeRate, 0) },
      ratio(S, 'cycles / (writes / 2)', lockRate / (writeRate / 2), {
        value: 0.8,
        higherIsBetter: true,
      }),
    )
  }
  return results
}

// Local reuses of each kept key before another instance takes it: 3 reuses to 1 take.
const KEPT_REUSES = 4

/** Scenario 4: holder unlocks -> waiter in another instance holds, vs one etcd round trip. */
export async function handOver(ctx: BenchContext): Promise<Result[]> {
  const holderClient = client(ctx)
  const waiterClient = client(ctx)
  const holder = locker(ctx, holderClient)
  const waiter = locker(ctx, waiterClient)
  const keeper = locker(ctx, client(ctx))
  await Promise.all([holder.ready(), waiter.ready(), keeper.ready()])
  const count = ctx.quick ? 3 : 60
  const handovers: number[] = []
  const roundTrips: number[] = []
  const etcd3Handovers: number[] = []
  const fromKept: number[] = []
  const writeTrips: number[] = []
  const idleWriteTrips: number[] = []
  const hops: number[] = []
  const twoHops: number[] = []
  // The protocol's floor, as etcd and the etcd3 client do it: a put heard by another client's
  // watch (a hand-over: the holder's delete, heard by the waiter), and that twice in a row, one
  // each way (from a kept key: the waiter's enqueue heard by the keeper, its delete heard back).
  const hopPrefix = `${ctx.prefix}/hop/`
  // Per listening client, what each awaited key resolves: the putter's own watch hears its put
  // too, and must not count.
  const heardBy = new Map<Etcd3, Map<string, () => void>>()
  for (const c of [holderClient, waiterClient]) {
    const heard = new Map<string, () => void>()
    heardBy.set(c, heard)
    const w = await c.watch().prefix(hopPrefix).create()
    w.on('put', (kv) => heard.get(kv.key.toString())?.())
    ctx.defer(() => w.cancel())
  }
  /** `from` puts `key`; resolves once the watch of client `to` has it. */
  const putHeard = async (from: Etcd3, to: Etcd3, key: string) => {
    const heard = heardBy.get(to) as Map<string, () => void>
    const done = new Promise<void>((resolve) => heard.set(key, resolve))
    try {
      await Promise.all([from.put(key).value('x').exec(), done])
    } finally {
      heard.delete(key)
    }
  }
  for (let i = 0; i < count; i++) {
    const id = `handover-${i}`
    const held = holder.newLock(id)
    let heard!: () => void
    const waiterQueued = new Promise<void>((resolve) => {
      heard = resolve
    })
    await held.lock(never(), () => heard())
    const acquired = waiter.newLock(id)
    const holding = acquired.lock(never(), noop)
    await waiterQueued
    await sleep(20) // let the waiter's watch on the holder's key be set up, as in a real wait
    handovers.push(
      await timed(async () => {
        await held.unlock()
        await holding
      }),
    )
    await acquired.unlock()
    await sleep(20) // unlock()'s delete goes on in the background: not inside the round trip
    roundTrips.push(await timed(() => waiterClient.get(`${ctx.prefix}/rtt`).exec()))
    writeTrips.push(await timed(() => waiterClient.put(`${ctx.prefix}/rtt`).value('x').exec()))
    // Every hand-over here starts after 20 ms with nothing to do, as do these floors: on this
    // machine a put after such a pause takes about 0.8 ms longer than one right after a call.
    await sleep(20)
    idleWriteTrips.push(await timed(() => waiterClient.put(`${ctx.prefix}/rtt`).value('x').exec()))
    await sleep(20)
    hops.push(await timed(() => putHeard(holderClient, waiterClient, `${hopPrefix}${i}/a`)))
    await sleep(20)
    twoHops.push(
      await timed(async () => {
        await putHeard(waiterClient, holderClient, `${hopPrefix}${i}/b`)
        await putHeard(holderClient, waiterClient, `${hopPrefix}${i}/c`)
      }),
    )

    // From a kept key: the keeper unlocked a while ago (retainLocks), then the waiter asks. The
    // keeper reuses its kept keys, as an instance behind a sticky load balancer does: one whose
    // kept keys are only ever taken stops keeping them (see Retention), and this would then
    // measure a lock of a key nobody has.
    const keptId = `kept-${i}`
    for (let reuse = 0; reuse < KEPT_REUSES; reuse++) {
      const kept = keeper.newLock(keptId)
      await kept.lock(never(), noop)
      await kept.unlock()
    }
    await sleep(20) // the kept key's watch is set up, as it is for any key kept a while
    if (keeper.retainedLocks !== 1) throw new Error(`hand-over bench: ${keptId} is not kept`)
    const taker = waiter.newLock(keptId)
    fromKept.push(await timed(() => taker.lock(never(), noop)))
    await taker.unlock()

    // The peer a user might write: etcd3's client.lock(), retried every 100 ms.
    const key = `${ctx.prefix}/etcd3-handover/${i}`
    const first = await holderClient.lock(key).ttl(60).acquire()
    let acquiredAt = 0n
    const second = (async () => {
      for (;;) {
        try {
          const lock = await waiterClient.lock(key).ttl(60).acquire()
          acquiredAt = process.hrtime.bigint()
          return lock
        } catch (error) {
          if (!(error instanceof EtcdLockFailedError)) throw error
          await sleep(100)
        }
      }
    })()
    await sleep(20 + (i % 10) * 10) // release at varying points of the retry cycle
    const releasedAt = process.hrtime.bigint()
    await first.release()
    const lock = await second
    etcd3Handovers.push(Number(acquiredAt - releasedAt) / 1e3)
    await lock.release()
  }
  const S = 'hand-over'
  const h = summarize(handovers)
  const rtt = summarize(roundTrips)
  const peer = summarize(etcd3Handovers)
  const k = summarize(fromKept)
  const wrt = summarize(writeTrips)
  const idle = summarize(idleWriteTrips)
  const hop = summarize(hops)
  const hop2 = summarize(twoHops)
  return [
    timing(S, 'unlock -> other instance holds', h),
    timing(S, 'lock() of a key another instance keeps -> holds', k),
    timing(S, 'one etcd round trip (get)', rtt),
    timing(S, 'one etcd write round trip (put), right after a get', wrt),
    timing(S, 'one etcd write round trip (put), after 20 ms idle as the hand-overs', idle),
    timing(S, 'a put heard by a watch of another client, after 20 ms idle', hop),
    timing(S, 'that twice in a row, one each way, after 20 ms idle', hop2),
    timing(S, 'etcd3 client.lock(), 100 ms retry', peer),
    ratio(S, 'hand-over / round trip', h.median / rtt.median),
    ratio(S, 'hand-over from a kept key / round trip', k.median / rtt.median),
    // Both hand-overs wait for writes (the holder's delete; from a kept key also the waiter's
    // enqueue), which cost etcd more than a read: the same two in write round trips.
    ratio(S, 'hand-over / write round trip', h.median / wrt.median),
    ratio(S, 'hand-over from a kept key / write round trip', k.median / wrt.median),
    ratio(
      S,
      'hand-over from a kept key / two write round trips right after a get',
      k.median / (2 * wrt.median),
    ),
    // Its floor: the waiter's enqueue, then the keeper's delete, two writes in a row, each
    // timed as the hand-over starts: after 20 ms idle.
    ratio(
      S,
      'hand-over from a kept key / two write round trips after 20 ms idle',
      k.median / (2 * idle.median),
      {
        value: 1.2,
        higherIsBetter: false,
      },
    ),
    // The same against what etcd and the etcd3 client need for it: a put heard, each way.
    ratio(S, 'hand-over / a put heard', h.median / hop.median),
    ratio(S, 'hand-over from a kept key / a put heard each way', k.median / hop2.median),
    ratio(S, 'etcd3 retry hand-over / ours', peer.median / h.median),
  ]
}

/** Scenario 6: the KV store: cached and uncached reads, writes, a write that revokes. */
export async function kvStore(ctx: BenchContext): Promise<Result[]> {
  const owner = locker(ctx)
  const other = locker(ctx)
  const upload = { id: 'bench', size: 1_048_576, offset: 524_288, metadata: { filename: 'a.bin' } }
  const cached = owner.kvStore<typeof upload>({ revokeBackoff: 0 })
  const uncached = owner.kvStore<typeof upload>({ leasing: false })
  const foreign = other.kvStore<typeof upload>({ leasing: false })
  const memory = new MemoryKvStore<typeof upload>()
  for (const key of ['read', 'owned', 'contended']) await cached.set(key, upload)
  await memory.set('read', upload)
  await cached.get('owned')
  const quickOr = (quick: number, full: number) => (ctx.quick ? quick : full)
  const times = await interleaved(
    [
      { name: 'get, cached (leased)', op: () => cached.get('read') },
      { name: 'get, uncached (etcd read)', op: () => uncached.get('read') },
      { name: 'MemoryKvStore get', op: () => memory.get('read') },
      { name: 'set by the lease owner', op: () => cached.set('owned', upload) },
      { name: 'set without leasing', op: () => uncached.set('plain', upload) },
    ],
    quickOr(1, 10),
    quickOr(3, 200),
  )
  const revoking: number[] = []
  for (let i = 0; i < quickOr(3, 100); i++) {
    await cached.get('contended') // the owner leases the key again (revokeBackoff 0)
    revoking.push(await timed(() => foreign.set('contended', { ...upload, offset: i })))
  }
  times.set('set by another instance (revokes the lease)', revoking)
  const s = (name: string) => summarize(times.get(name) ?? [])
  const S = 'kv store'
  const plainSet = s('set without leasing').median
  return [
    ...[...times.keys()].map((name) => timing(S, name, s(name))),
    ratio(
      S,
      'uncached get / cached get',
      s('get, uncached (etcd read)').median / s('get, cached (leased)').median,
      {
        value: 50,
        higherIsBetter: true,
      },
    ),
    ratio(
      S,
      'cached get / MemoryKvStore get',
      s('get, cached (leased)').median / s('MemoryKvStore get').median,
    ),
    ratio(S, 'owner set / plain set', s('set by the lease owner').median / plainSet),
    ratio(
      S,
      'revoking set / plain set',
      s('set by another instance (revokes the lease)').median / plainSet,
    ),
  ]
}
