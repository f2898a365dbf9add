import { describe, expect, it } from 'vitest'
import { type CheckInput, check } from './checker.js'
import type { Entry, Fault } from './ledger.js'

// Synthetic ledgers: the checker must flag a real violation, not only pass clean runs.
type Body = Entry extends infer E ? (E extends Entry ? Omit<E, 't' | 'w' | 'pid'> : never) : never
const A = { w: 'a', pid: 1 }
const B = { w: 'b', pid: 2 }
const at = (who: { w: string; pid: number }, t: number, body: Body) =>
  ({ ...who, t, ...body }) as Entry

/** A holds `x` (rev 10) from 0; B (rev 11) enters at `bEnters`. */
function handover(bEnters: number, aExtra: Entry[] = []): Entry[] {
  return [
    at(A, 0, { k: 'attempt', op: 'a1', id: 'x' }),
    at(A, 1, { k: 'acquired', op: 'a1', id: 'x', rev: '10', lease: 'la' }),
    at(A, 2, { k: 'read', op: 'a1', started: 1, value: null }),
    at(A, 5, { k: 'write', op: 'a1', step: 1 }),
    at(A, 8, { k: 'written', op: 'a1', step: 1 }),
    ...aExtra,
    at(B, 0, { k: 'attempt', op: 'b1', id: 'x' }),
    at(B, bEnters, { k: 'acquired', op: 'b1', id: 'x', rev: '11', lease: 'lb' }),
    at(B, bEnters + 1, {
      k: 'read',
      op: 'b1',
      started: bEnters + 0.5,
      value: { op: 'a1', rev: '10', step: 1 },
    }),
    at(B, bEnters + 2, { k: 'unlock', op: 'b1' }),
  ]
}

function run(entries: Entry[], more: Partial<CheckInput> = {}) {
  return check({
    entries,
    faults: [],
    killed: new Map(),
    ttlMs: 3_000,
    recoveryBoundMs: 10_000,
    lockKeysLeft: 0,
    stopAt: Number.POSITIVE_INFINITY,
    ...more,
  })
}

const kinds = (r: ReturnType<typeof run>) => r.violations.map((v) => v.kind).sort()

describe('chaos checker', () => {
  it('accepts a clean handover', () => {
    const r = run(handover(30, [at(A, 20, { k: 'unlock', op: 'a1' })]))
    expect(r.violations).toEqual([])
    expect(r.figures.acquisitions).toBe(2)
    expect(r.figures.readsChecked).toBe(2)
  })

  it('holds of one kept key (one session, one revision) follow one another by entry', () => {
    const kept = (secondEnters: number, read: { op: string; step: number }) => [
      at(A, 0, { k: 'attempt', op: 'a1', id: 'x' }),
      at(A, 1, { k: 'acquired', op: 'a1', id: 'x', rev: '10', lease: 'la' }),
      at(A, 5, { k: 'write', op: 'a1', step: 3 }),
      at(A, 8, { k: 'written', op: 'a1', step: 3 }),
      at(A, 20, { k: 'unlock', op: 'a1' }),
      at(A, secondEnters - 1, { k: 'attempt', op: 'a2', id: 'x' }),
      at(A, secondEnters, { k: 'acquired', op: 'a2', id: 'x', rev: '10', lease: 'la' }),
      at(A, secondEnters + 1, {
        k: 'read',
        op: 'a2',
        started: secondEnters + 0.5,
        value: { ...read, rev: '10' },
      }),
      at(A, secondEnters + 2, { k: 'unlock', op: 'a2' }),
    ]
    expect(run(kept(30, { op: 'a1', step: 3 })).violations).toEqual([])
    // The second hold must see the first one's write, and must not start before it ended.
    expect(kinds(run(kept(30, { op: 'a1', step: 1 })))).toEqual(['stale-read'])
    expect(kinds(run(kept(12, { op: 'a1', step: 3 })))).toEqual(['exclusion'])
    // One revision on two sessions is two holders.
    const twoSessions = kept(30, { op: 'a1', step: 3 }).map((e) =>
      e.k === 'acquired' && e.op === 'a2' ? { ...e, lease: 'lb' } : e,
    )
    expect(kinds(run(twoSessions))).toEqual(['exclusion'])
  })

  it('flags a holder entering while the earlier one still holds and writes, untold', () => {
    const r = run(
      handover(12, [
        at(A, 40, { k: 'write', op: 'a1', step: 2 }),
        at(A, 41, { k: 'written', op: 'a1', step: 2 }),
        at(A, 60, { k: 'unlock', op: 'a1' }),
      ]),
    )
    expect(kinds(r)).toEqual(['exclusion', 'fencing'])
  })

  it('accepts an overlap once the earlier holder was told its session was lost', () => {
    const r = run(
      handover(12, [
        at(A, 9, {
          k: 'release',
          op: 'a1',
          id: 'x',
          reason: 'the etcd session was lost',
          lost: true,
        }),
        at(A, 20, { k: 'unlock', op: 'a1' }),
      ]),
    )
    expect(r.violations).toEqual([])
    expect(r.figures.overlapsAfterTold).toBe(1)
  })

  it('a contention release request does not excuse an overlap', () => {
    const r = run(
      handover(12, [
        at(A, 9, { k: 'release', op: 'a1', id: 'x', reason: 'another client queued', lost: false }),
        at(A, 20, { k: 'unlock', op: 'a1' }),
      ]),
    )
    expect(kinds(r)).toEqual(['exclusion'])
  })

  it('for a frozen holder, accepts a fenced write after resuming but flags a committed one', () => {
    const pause: Fault = {
      kind: 'pause-worker',
      target: 'a',
      pid: 1,
      start: 9,
      end: 40,
      detail: '',
    }
    const resumed = (outcome: 'fenced' | 'written') => [
      at(A, 41, { k: 'write', op: 'a1', step: 2 }),
      at(A, 42, { k: outcome, op: 'a1', step: 2 }),
      at(A, 45, { k: 'unlock', op: 'a1' }),
      // Work goes on after the pause: no recovery violation.
      at(B, 60, { k: 'attempt', op: 'b2', id: 'x' }),
      at(B, 61, { k: 'acquired', op: 'b2', id: 'x', rev: '12', lease: 'lb' }),
    ]
    const fenced = run(handover(12, resumed('fenced')), { faults: [pause] })
    expect(fenced.violations).toEqual([])
    expect(fenced.figures.overlapsWhileFrozen).toBe(1)
    expect(kinds(run(handover(12, resumed('written')), { faults: [pause] }))).toEqual(['fencing'])
  })

  it('flags a read of a later holder value, unless the reader was frozen', () => {
    // A's lock() resolves after a pause, once B (a later revision) has entered and written.
    const entries = [
      at(B, 0, { k: 'attempt', op: 'b1', id: 'x' }),
      at(B, 10, { k: 'acquired', op: 'b1', id: 'x', rev: '11', lease: 'lb' }),
      at(B, 12, { k: 'write', op: 'b1', step: 1 }),
      at(B, 13, { k: 'written', op: 'b1', step: 1 }),
      at(B, 14, { k: 'unlock', op: 'b1' }),
      at(A, 0, { k: 'attempt', op: 'a1', id: 'x' }),
      at(A, 15, { k: 'acquired', op: 'a1', id: 'x', rev: '10', lease: 'la' }),
      at(A, 17, { k: 'read', op: 'a1', started: 16, value: { op: 'b1', rev: '11', step: 1 } }),
      at(A, 18, { k: 'unlock', op: 'a1' }),
      at(B, 30, { k: 'attempt', op: 'b2', id: 'x' }),
      at(B, 31, { k: 'acquired', op: 'b2', id: 'x', rev: '12', lease: 'lb' }),
    ]
    expect(kinds(run(entries))).toEqual(['exclusion', 'stale-read'])
    const pause: Fault = {
      kind: 'pause-worker',
      target: 'a',
      pid: 1,
      start: 1,
      end: 14,
      detail: '',
    }
    // Frozen excuses the overlap (the fence stops its writes), not reading the next holder's
    // value without having been told: lock() must not resolve with an expired session.
    const frozen = run(entries, { faults: [pause] })
    expect(kinds(frozen)).toEqual(['stale-read'])
  })

  it('accepts a read that a freeze interrupted, once the reader was told before it returned', () => {
    // A holds, starts its read, freezes past its TTL; B enters and writes; A wakes, hears its
    // session is lost, and its read (sent only now, on a new session) returns B's value.
    const entries = [
      at(A, 0, { k: 'attempt', op: 'a1', id: 'x' }),
      at(A, 1, { k: 'acquired', op: 'a1', id: 'x', rev: '10', lease: 'la' }),
      at(B, 0, { k: 'attempt', op: 'b1', id: 'x' }),
      at(B, 10, { k: 'acquired', op: 'b1', id: 'x', rev: '11', lease: 'lb' }),
      at(B, 12, { k: 'write', op: 'b1', step: 1 }),
      at(B, 13, { k: 'written', op: 'b1', step: 1 }),
      at(B, 14, { k: 'unlock', op: 'b1' }),
      at(A, 15, {
        k: 'release',
        op: 'a1',
        id: 'x',
        reason: 'the etcd session was lost',
        lost: true,
      }),
      at(A, 16, { k: 'read', op: 'a1', started: 2, value: { op: 'b1', rev: '11', step: 1 } }),
      at(A, 17, { k: 'unlock', op: 'a1' }),
      at(B, 30, { k: 'attempt', op: 'b2', id: 'x' }),
      at(B, 31, { k: 'acquired', op: 'b2', id: 'x', rev: '12', lease: 'lb' }),
    ]
    const pause: Fault = {
      kind: 'pause-worker',
      target: 'a',
      pid: 1,
      start: 3,
      end: 14,
      detail: '',
    }
    const result = run(entries, { faults: [pause] })
    expect(kinds(result)).toEqual([])
    expect(result.figures.readsAfterLoss).toBe(1)
    // Without the freeze in the read, the same ledger is a violation.
    expect(kinds(run(entries))).toContain('stale-read')
  })

  it('flags a stale read, and a read of a write the fence rejected', () => {
    const entries = handover(30, [at(A, 20, { k: 'unlock', op: 'a1' })])
    const stale = entries.map((e) => (e.k === 'read' && e.op === 'b1' ? { ...e, value: null } : e))
    expect(kinds(run(stale))).toEqual(['stale-read'])
    const ghost = [
      ...entries.filter((e) => !(e.k === 'read' && e.op === 'b1')),
      at(A, 9, { k: 'write', op: 'a1', step: 2 }),
      at(A, 10, { k: 'fenced', op: 'a1', step: 2 }),
      at(B, 31, { k: 'read', op: 'b1', started: 30.5, value: { op: 'a1', rev: '10', step: 2 } }),
    ]
    expect(kinds(run(ghost))).toEqual(['stale-read'])
  })

  it('flags a waiter left without an outcome, unless its process was killed, and odd rejections', () => {
    const entries = [
      at(A, 0, { k: 'attempt', op: 'a9', id: 'y' }),
      at(B, 0, { k: 'attempt', op: 'b9', id: 'y' }),
      at(B, 1, { k: 'rejected', op: 'b9', id: 'y', name: 'TypeError', message: 'boom' }),
    ]
    expect(kinds(run(entries))).toEqual(['rejection', 'waiter'])
    expect(kinds(run(entries, { killed: new Map([[1, 5]]) }))).toEqual(['rejection'])
  })

  it('flags lock keys left and a fault after which no lock is acquired', () => {
    const entries = handover(30, [at(A, 20, { k: 'unlock', op: 'a1' })])
    const fault: Fault = { kind: 'kill-leader', target: 'm0', start: 40, end: 50, detail: '' }
    expect(kinds(run(entries, { faults: [fault], lockKeysLeft: 1 }))).toEqual(['keys', 'recovery'])
  })
})
