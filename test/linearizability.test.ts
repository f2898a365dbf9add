import { describe, expect, it } from 'vitest'
import { newLocker, uniquePrefix } from './harness/index.js'
import { findViolation, type Operation } from './harness/linearizability.js'

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
      // Four workers (two per store), 125 operations each, reads twice as likely as writes.
      const worker = async (w: number) => {
        const store = stores[w % 2]
        if (!store) throw new Error('no store')
        for (let i = 0; i < 125; i++) {
          const key = keys[Math.floor(next() * keys.length)] ?? 'k0'
          const start = performance.now()
          if (next() < 1 / 3) {
            const value = `w${w}-${written++}`
            await store.set(key, value)
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
      expect(history).toHaveLength(500)
      expect(findViolation(history)).toBeUndefined()
      const [a, b] = stores.map((s) => s?.counters)
      // The cache was really exercised: local hits, and revokes by the other store's writes.
      expect((a?.hits ?? 0) + (b?.hits ?? 0)).toBeGreaterThan(0)
      expect((a?.revokes ?? 0) + (b?.revokes ?? 0)).toBeGreaterThan(0)
      console.log(
        `[figure] linearizability run (revokeBackoff ${revokeBackoff}): store A ${JSON.stringify(a)}, store B ${JSON.stringify(b)}`,
      )
    },
    60_000,
  )
})
