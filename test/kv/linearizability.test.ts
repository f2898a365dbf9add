import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import {
  deferCleanup,
  endpoints,
  newClient,
  newLocker,
  startProxy,
  uniquePrefix,
  WITHOUT_BREAKER,
} from '../harness/index.js'
import { findViolation, type Operation } from '../harness/linearizability.js'

const op = (
  kind: Operation['kind'],
  value: string | undefined,
  start: number,
  end: number,
): Operation => ({
  kind,
  key: 'k',
  value,
  start,
  end,
  who: `${kind}@${start}`,
})

describe('the linearizability checker', () => {
  it('accepts a sequential history and one with overlapping operations', () => {
    expect(
      findViolation([op('read', undefined, 0, 1), op('write', 'a', 2, 3), op('read', 'a', 4, 5)]),
    ).toBeUndefined()
    // A read overlapping a write may see either value.
    expect(
      findViolation([
        op('write', 'a', 0, 1),
        op('write', 'b', 2, 6),
        op('read', 'a', 3, 4),
        op('read', 'b', 3, 7),
      ]),
    ).toBeUndefined()
  })

  it('catches a stale read, a read from the future, and reads that disagree on order', () => {
    expect(
      findViolation([op('write', 'a', 0, 1), op('write', 'b', 2, 3), op('read', 'a', 4, 5)]),
    ).toMatch(/no order fits/)
    expect(findViolation([op('read', 'a', 0, 1), op('write', 'a', 2, 3)])).toMatch(
      /before .* began writing/,
    )
    expect(findViolation([op('write', 'a', 0, 1), op('read', undefined, 2, 3)])).toMatch(
      /no order fits/,
    )
    expect(
      findViolation([
        op('write', 'a', 0, 10),
        op('write', 'b', 0, 10),
        op('read', 'a', 1, 2),
        op('read', 'b', 3, 4),
        op('read', 'a', 5, 6),
      ]),
    ).toMatch(/no order fits/)
  })
})

/** A small seeded generator, so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0
    return state / 2 ** 32
  }
}

describe('two leasing KV stores on two clients', () => {
  // revokeBackoff 0: every read re-leases and every foreign write revokes, the hardest case.
  it.each([0, 1_000])(
    '500 concurrent random gets and sets on a few keys form a linearizable history (revokeBackoff %i)',
    async (revokeBackoff) => {
      const seed = Number(process.env.LINEARIZABILITY_SEED ?? Date.now() % 100_000)
      console.log(`[figure] linearizability seed ${seed} (LINEARIZABILITY_SEED=${seed} repeats it)`)
      const next = random(seed)
      const prefix = uniquePrefix('linear')
      const stores = [0, 1].map(() => {
        const locker = newLocker({ prefix, ttl: 10 })
        return locker.kvStore<string>({ revokeBackoff })
      })
      const keys = ['k0', 'k1', 'k2']
      const history: Operation[] = []
      let written = 0
      // With revokeBackoff 0 a reader may lease a key again before a writer's txn, ten rounds in a
      // row on a loaded machine (the README says it can starve writers): such a write gives up,
      // having written nothing, and is no operation of the history.
      let starved = 0
      // Four workers (two per store), 125 operations each, reads twice as likely as writes.
      const worker = async (w: number) => {
        const store = stores[w % 2]
        if (!store) throw new Error('no store')
        for (let i = 0; i < 125; i++) {
          const key = keys[Math.floor(next() * keys.length)] ?? 'k0'
          const start = performance.now()
          if (next() < 1 / 3) {
            const value = `w${w}-${written++}`
            try {
              await store.set(key, value)
            } catch (error) {
              if (revokeBackoff > 0 || !/cache lease was taken again/.test(String(error)))
                throw error
              starved++
              continue
            }
            history.push({
              kind: 'write',
              key,
              value,
              start,
              end: performance.now(),
              who: `worker ${w}`,
            })
          } else {
            const value = await store.get(key)
            history.push({
              kind: 'read',
              key,
              value,
              start,
              end: performance.now(),
              who: `worker ${w}`,
            })
          }
        }
      }
      await Promise.all([0, 1, 2, 3].map(worker))
      expect(history).toHaveLength(500 - starved)
      expect(starved).toBeLessThan(25)
      expect(findViolation(history)).toBeUndefined()
      const [a, b] = stores.map((s) => s?.counters)
      // The cache was really exercised: local hits, and revokes by the other store's writes.
      expect((a?.hits ?? 0) + (b?.hits ?? 0)).toBeGreaterThan(0)
      expect((a?.revokes ?? 0) + (b?.revokes ?? 0)).toBeGreaterThan(0)
      console.log(
        `[figure] linearizability run (revokeBackoff ${revokeBackoff}): store A ${JSON.stringify(a)}, store B ${JSON.stringify(b)}, writes starved ${starved}`,
      )
    },
    60_000,
  )
})

describe('writers with and without the cache, and an owner whose answers are held back', () => {
  it('random gets and sets while answers to one instance are late form a linearizable history', async () => {
    const seed = Number(process.env.LINEARIZABILITY_SEED ?? Date.now() % 100_000)
    console.log(`[figure] linearizability seed ${seed} (LINEARIZABILITY_SEED=${seed} repeats it)`)
    const next = random(seed)
    const prefix = uniquePrefix('linear-mixed')
    // Instance A reaches etcd through a proxy that holds its answers back now and then.
    const proxy = await startProxy(endpoints()[0] ?? '')
    deferCleanup(() => proxy.close())
    const a = new Etcd3Locker(newClient([proxy.endpoint], WITHOUT_BREAKER), { prefix, ttl: 10 })
    deferCleanup(() => a.close())
    // Instance B has a caching store and one without the cache, side by side on one session.
    const b = newLocker({ prefix, ttl: 10 })
    const stores = [
      // Default revokeBackoff: with 0, a cache that rereads a key at once can starve its writers.
      { name: 'A cached', store: a.kvStore<string>() },
      { name: 'B cached', store: b.kvStore<string>() },
      { name: 'B uncached', store: b.kvStore<string>({ leasing: false }) },
    ]
    const keys = ['k0', 'k1', 'k2']
    const history: Operation[] = []
    let written = 0
    let failedOwnerWrites = 0
    let faultsDone = false
    // Two faults: A's answers held back past the 2 s call deadline, so A's calls time out with
    // their outcome unknown (written or not) while etcd applies them.
    const aStore = stores[0]?.store
    if (!aStore) throw new Error('no store')
    const record = (op: Operation) => history.push(op)
    const faults = (async () => {
      // A key only A writes (the workers' readers of B read it too), so A owns its lease: each
      // fault is an owner write whose answer comes too late.
      const key = 'owned-by-a'
      const reader = stores[2]?.store
      if (!reader) throw new Error('no store')
      const read = async (store: typeof aStore, who: string) => {
        const start = performance.now()
        const value = await store.get(key)
        record({ kind: 'read', key, value, start, end: performance.now(), who })
      }
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 400))
        await read(aStore, 'A fault')
        const hits = aStore.counters.hits
        await read(aStore, 'A fault')
        const owner = aStore.counters.hits > hits // served from memory: A holds the lease
        proxy.cut('hold-answers')
        const value = `fault-${i}`
        const start = performance.now()
        const writing = aStore.set(key, value).then(
          () => record({ kind: 'write', key, value, start, end: performance.now(), who: 'A' }),
          () => {
            const end = Number.POSITIVE_INFINITY
            record({ kind: 'write', key, value, start, end, who: 'A fault' })
            if (owner) failedOwnerWrites++
          },
        )
        await new Promise((resolve) => setTimeout(resolve, 2_300))
        proxy.restore()
        await writing
        await Promise.all([read(aStore, 'A fault'), read(reader, 'B uncached fault')])
      }
      await new Promise((resolve) => setTimeout(resolve, 400))
      faultsDone = true
    })()
    // Two workers per store, one operation every 10 ms or so until the faults are over (at most
    // 1 000 each): paced, so that cached reads do not finish before the first fault.
    const worker = async (w: number) => {
      const { name, store } = stores[w % stores.length] ?? { name: '', store: undefined }
      if (!store) throw new Error('no store')
      for (let i = 0; i < 1_000 && !faultsDone; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        const key = keys[Math.floor(next() * keys.length)] ?? 'k0'
        const who = `${name} worker ${w}`
        const start = performance.now()
        const roll = next()
        if (roll < 0.2) {
          const value = `w${w}-${written++}`
          try {
            await store.set(key, value)
            history.push({ kind: 'write', key, value, start, end: performance.now(), who })
          } catch {
            // Outcome unknown: it may take effect at any moment after it began.
            history.push({ kind: 'write', key, value, start, end: Number.POSITIVE_INFINITY, who })
          }
        } else {
          try {
            const value = await store.get(key)
            history.push({ kind: 'read', key, value, start, end: performance.now(), who })
          } catch {
            // A read that failed returned nothing to check.
          }
        }
      }
    }
    await Promise.all([faults, ...[0, 1, 2, 3, 4, 5].map(worker)])
    expect(findViolation(history)).toBeUndefined()
    const counters = Object.fromEntries(stores.map(({ name, store }) => [name, store.counters]))
    console.log(
      `[figure] mixed linearizability run: ${history.length} operations, ${history.filter((o) => o.end === Number.POSITIVE_INFINITY).length} writes of unknown outcome (${failedOwnerWrites} by A as the key's lease owner), counters ${JSON.stringify(counters)}`,
    )
    // The cases were really exercised: A served from memory, lost write answers, and revokes.
    expect(counters['A cached']?.hits ?? 0).toBeGreaterThan(0)
    expect(failedOwnerWrites).toBeGreaterThan(0)
    expect(counters['A cached']?.revokes ?? 0).toBeGreaterThan(0)
    expect(counters['B cached']?.revokes ?? 0).toBeGreaterThan(0)
    expect(
      history.filter((o) => o.who.startsWith('B uncached') && o.kind === 'write').length,
    ).toBeGreaterThan(0)
  }, 60_000)
})
