/**
 * Reads the chaos ledgers and the driver's fault log, and checks what a user relies on.
 *
 * Holders of one upload id are ordered by etcd, not by our clocks: by the create revision of
 * their lock key (etcd's FIFO queue). Holds of one key (one process, one session, one revision:
 * a key kept between unlock and the next lock, `retainLocks`) follow one another in the order
 * that process entered them. For two holds A before B:
 *
 * 1. Fencing. No write of A that etcd committed (acknowledged `written`) was sent after B
 *    entered. A committed fenced write proves A's key still existed when it committed, and B
 *    can only enter once A's key is gone; so a committed write sent after B entered means two
 *    holders wrote in the same time: a real lost-update bug, whatever A had been told.
 * 2. Exclusion. A's critical section (acquired until it calls `unlock()`, or until its process
 *    was SIGKILLed) ends before B enters, unless A had already been told its lock was lost
 *    (its `requestRelease` with the session-lost reason, a `sessionLost` event of its lease,
 *    or a fenced write) by the time B entered. The one exception is a holder that the driver
 *    froze with SIGSTOP around that time: a frozen process cannot hear anything, and its later
 *    writes are what check 1 covers. Those overlaps are counted, not excused silently.
 * 3. Reads. The metadata B reads on entering is not older than the last write any earlier
 *    holder had acknowledged before the read started (the leasing cache serves no stale value)
 *    and is not a write that the fence reported as rejected. It comes from no later holder
 *    either, unless (as in check 2) B had been told its lock was lost or had been frozen.
 * 4. Waiters. Every `lock()` of a process that was not SIGKILLed ended, acquired or rejected,
 *    and every rejection is `ERR_LOCK_TIMEOUT` or one of this package's error classes.
 * 5. Keys. No lock key is left once every worker stopped and dead sessions expired.
 * 6. Recovery. After each fault ended, a lock was acquired again within `recoveryBoundMs`.
 */
import type { Entry, Fault, FaultKind, Written } from './ledger.js'

/** Error names a `lock()` may reject with. */
export const KNOWN_REJECTIONS = new Set([
  'ERR_LOCK_TIMEOUT',
  'LockTimeoutError',
  'LockerClosedError',
  'SessionUnavailableError',
  'SessionLostError',
  'LockLostError',
])

// Every process reads the same monotonic clock (ledger.ts `clock()`); the slack covers the
// microseconds between a step and its ledger line. Real overlaps last far longer.
const CLOCK_SLACK_MS = 5

export interface CheckInput {
  entries: Entry[]
  faults: Fault[]
  /** Pids the driver SIGKILLed (their last step may be missing from the ledger). */
  killed: Map<number, number>
  ttlMs: number
  recoveryBoundMs: number
  /** Lock keys found after every worker stopped. */
  lockKeysLeft: number
  /** When the driver started stopping the workers (acquisitions after it are not counted). */
  stopAt: number
}

export interface Violation {
  kind:
    | 'fencing'
    | 'exclusion'
    | 'stale-read'
    | 'waiter'
    | 'rejection'
    | 'keys'
    | 'recovery'
    | 'process'
  detail: string
}

export interface Figures {
  attempts: number
  acquisitions: number
  rejections: Record<string, number>
  writesCommitted: number
  writesFenced: number
  /** Writes that failed otherwise (outcome unknown), by error name. */
  writeErrors: Record<string, number>
  readsChecked: number
  overlapsWhileFrozen: number
  overlapsAfterTold: number
  /** Reads by a holder whose lock had already passed on (told, or frozen), of a later value. */
  readsAfterLoss: number
  faults: Partial<Record<FaultKind, number>>
  longestUnavailabilityMs: number
  longestRecoveryMs: number
  /** How far the workers' wall-derived clocks (`performance.timeOrigin`) disagreed; the ledger does not use them. */
  wallClockSpreadMs: number
  violations: number
}

interface WriteStep {
  step: number
  sent: number
  outcome?: 'written' | 'fenced' | 'error'
  acked?: number
  error?: string
}

interface Hold {
  op: string
  pid: number
  id: string
  rev: bigint
  lease: string
  enter: number
  end: number
  told: number
  writes: WriteStep[]
  read?: { started: number; ended: number; value: Written | null }
}

export function check(input: CheckInput): { figures: Figures; violations: Violation[] } {
  const violations: Violation[] = []
  const { entries, faults, killed } = input
  const figures: Figures = {
    attempts: 0,
    acquisitions: 0,
    rejections: {},
    writesCommitted: 0,
    writesFenced: 0,
    writeErrors: {},
    readsChecked: 0,
    overlapsWhileFrozen: 0,
    overlapsAfterTold: 0,
    readsAfterLoss: 0,
    faults: {},
    longestUnavailabilityMs: 0,
    longestRecoveryMs: 0,
    wallClockSpreadMs: 0,
    violations: 0,
  }
  for (const fault of faults) figures.faults[fault.kind] = (figures.faults[fault.kind] ?? 0) + 1

  // Per op: the attempt, its outcome, and (when acquired) the hold.
  const attempts = new Map<string, { pid: number; id: string; outcome?: string }>()
  const holds = new Map<string, Hold>()
  const toldAt = new Map<string, number>()
  const sessionLostAt = new Map<string, number>() // `${pid}/${lease}`
  const unlockAt = new Map<string, number>()
  const writes = new Map<string, Map<number, WriteStep>>()
  const reads = new Map<string, { started: number; ended: number; value: Written | null }>()
  const stopped = new Set<number>()
  const earliest = (map: Map<string, number>, key: string, t: number) =>
    map.set(key, Math.min(map.get(key) ?? Number.POSITIVE_INFINITY, t))
  const stepOf = (op: string, step: number) => {
    const byStep = writes.get(op) ?? new Map<number, WriteStep>()
    writes.set(op, byStep)
    const w = byStep.get(step) ?? { step, sent: Number.NaN }
    byStep.set(step, w)
    return w
  }

  let wallOffsetMin = Number.POSITIVE_INFINITY
  let wallOffsetMax = Number.NEGATIVE_INFINITY
  for (const e of entries) {
    switch (e.k) {
      case 'start':
        wallOffsetMin = Math.min(wallOffsetMin, e.wallOffset)
        wallOffsetMax = Math.max(wallOffsetMax, e.wallOffset)
        figures.wallClockSpreadMs = wallOffsetMax - wallOffsetMin
        break
      case 'attempt':
        attempts.set(e.op, { pid: e.pid, id: e.id })
        break
      case 'acquired': {
        const attempt = attempts.get(e.op)
        if (attempt) attempt.outcome = 'acquired'
        holds.set(e.op, {
          op: e.op,
          pid: e.pid,
          id: e.id,
          rev: BigInt(e.rev),
          lease: e.lease,
          enter: e.t,
          end: Number.POSITIVE_INFINITY,
          told: Number.POSITIVE_INFINITY,
          writes: [],
        })
        break
      }
      case 'rejected': {
        const attempt = attempts.get(e.op)
        if (attempt) attempt.outcome = 'rejected'
        figures.rejections[e.name] = (figures.rejections[e.name] ?? 0) + 1
        if (!KNOWN_REJECTIONS.has(e.name)) {
          violations.push({
            kind: 'rejection',
            detail: `${e.op} (${e.id}) rejected with an unexpected ${e.name}: ${e.message}`,
          })
        }
        break
      }
      case 'release':
        if (e.lost) earliest(toldAt, e.op, e.t)
        break
      case 'sessionLost':
        earliest(sessionLostAt, `${e.pid}/${e.lease}`, e.t)
        break
      case 'read':
        reads.set(e.op, { started: e.started, ended: e.t, value: e.value })
        break
      case 'write':
        stepOf(e.op, e.step).sent = e.t
        break
      case 'written':
        Object.assign(stepOf(e.op, e.step), { outcome: 'written', acked: e.t })
        break
      case 'fenced':
        Object.assign(stepOf(e.op, e.step), { outcome: 'fenced', acked: e.t })
        earliest(toldAt, e.op, e.t)
        break
      case 'writeError':
        Object.assign(stepOf(e.op, e.step), { outcome: 'error', acked: e.t, error: e.name })
        break
      case 'unlock':
        unlockAt.set(e.op, e.t)
        break
      case 'stop':
        stopped.add(e.pid)
        break
    }
  }

  for (const hold of holds.values()) {
    hold.told = Math.min(
      toldAt.get(hold.op) ?? Number.POSITIVE_INFINITY,
      sessionLostAt.get(`${hold.pid}/${hold.lease}`) ?? Number.POSITIVE_INFINITY,
    )
    hold.end = unlockAt.get(hold.op) ?? killed.get(hold.pid) ?? Number.POSITIVE_INFINITY
    hold.writes = [...(writes.get(hold.op)?.values() ?? [])].sort((a, b) => a.step - b.step)
    hold.read = reads.get(hold.op)
    for (const w of hold.writes) {
      if (w.outcome === 'written') figures.writesCommitted++
      else if (w.outcome === 'fenced') figures.writesFenced++
      else if (w.outcome === 'error') {
        const name = w.error ?? 'unknown'
        figures.writeErrors[name] = (figures.writeErrors[name] ?? 0) + 1
      }
    }
  }
  figures.acquisitions = holds.size
  figures.attempts = attempts.size

  const pauses = faults.filter((f) => f.kind === 'pause-worker')
  const frozenDuring = (pid: number, from: number, to: number) =>
    pauses.some((p) => p.pid === pid && p.start <= to && p.end >= from)

  const byId = new Map<string, Hold[]>()
  for (const hold of holds.values()) {
    const list = byId.get(hold.id) ?? []
    list.push(hold)
    byId.set(hold.id, list)
  }
  // A hold's place among the holds of its id: by revision, then (one kept key) by entry.
  const rankOf = new Map<string, number>()
  for (const list of byId.values()) {
    list.sort((a, b) => (a.rev < b.rev ? -1 : a.rev > b.rev ? 1 : a.enter - b.enter))
    list.forEach((hold, rank) => {
      rankOf.set(hold.op, rank)
    })
  }
  const writeOutcome = new Map<string, string | undefined>()
  for (const hold of holds.values())
    for (const w of hold.writes) writeOutcome.set(`${hold.op}#${w.step}`, w.outcome)

  for (const [id, list] of byId) {
    for (let i = 0; i < list.length; i++) {
      const a = list[i] as Hold
      for (let j = i + 1; j < list.length; j++) {
        const b = list[j] as Hold
        if (a.rev === b.rev && (a.pid !== b.pid || a.lease !== b.lease)) {
          violations.push({
            kind: 'exclusion',
            detail: `${a.op} and ${b.op} hold ${id} at one revision on two sessions`,
          })
          continue
        }
        // 1. Fencing: a committed write of A sent after B entered.
        for (const w of a.writes) {
          if (w.outcome === 'written' && w.sent > b.enter + CLOCK_SLACK_MS) {
            violations.push({
              kind: 'fencing',
              detail: `${id}: ${a.op} (rev ${a.rev}) wrote step ${w.step} ${(w.sent - b.enter).toFixed(1)} ms after ${b.op} (rev ${b.rev}) entered, and etcd committed it`,
            })
          }
        }
        // 2. Exclusion: A still in its section when B entered.
        if (b.enter < a.end - CLOCK_SLACK_MS) {
          const from = Math.min(a.enter, b.enter) - input.ttlMs
          const to = Math.max(a.enter, b.enter)
          if (a.told <= b.enter + CLOCK_SLACK_MS) figures.overlapsAfterTold++
          else if (frozenDuring(a.pid, from, to)) figures.overlapsWhileFrozen++
          else {
            violations.push({
              kind: 'exclusion',
              detail: `${id}: ${b.op} (rev ${b.rev}) entered ${(a.end - b.enter).toFixed(1)} ms before ${a.op} (rev ${a.rev}) left, and ${a.op} had not been told its lock was lost${Number.isFinite(a.told) ? ` (told ${(a.told - b.enter).toFixed(1)} ms later)` : ''}`,
            })
          }
        }
      }
      // 3. Reads: not older than the latest write acknowledged before the read began.
      if (a.read === undefined) continue
      figures.readsChecked++
      let latest: { rank: number; step: number; op: string } | undefined
      for (let k = 0; k < i; k++) {
        const earlier = list[k] as Hold
        for (const w of earlier.writes) {
          if (w.outcome !== 'written' || (w.acked ?? Number.POSITIVE_INFINITY) >= a.read.started)
            continue
          if (!latest || k > latest.rank || (k === latest.rank && w.step > latest.step))
            latest = { rank: k, step: w.step, op: earlier.op }
        }
      }
      const seen = a.read.value
      const seenOutcome = seen ? writeOutcome.get(`${seen.op}#${seen.step}`) : undefined
      const seenRank = seen ? (rankOf.get(seen.op) ?? rankByRevision(list, BigInt(seen.rev))) : -1
      if (seen && seenRank >= i) {
        // Only possible once A's lock had passed on: excused when A had been told so before it
        // read, or when a freeze interrupted the read itself and A was told before it returned
        // (the read then ran after the loss, on a new session). Not when A was merely frozen
        // before: lock() must not resolve with a session whose deadline passed while it waited
        // (it did once, before lock.ts checked it).
        const interrupted =
          frozenDuring(a.pid, a.read.started, a.read.ended) &&
          a.told <= a.read.ended + CLOCK_SLACK_MS
        if (a.told <= a.read.started + CLOCK_SLACK_MS || interrupted) {
          figures.readsAfterLoss++
          continue
        }
      }
      const problem =
        seen && seenRank >= i
          ? `a value of a later holder (${seen.op}) without being told or frozen`
          : seenOutcome === 'fenced'
            ? `a write the fence rejected (${seen?.op} step ${seen?.step})`
            : latest &&
                (seenRank < latest.rank ||
                  (seenRank === latest.rank && (seen?.step ?? 0) < latest.step))
              ? `${seen ? `${seen.op} step ${seen.step}` : 'nothing'} although ${latest.op} step ${latest.step} was acknowledged before the read`
              : undefined
      if (problem) violations.push({ kind: 'stale-read', detail: `${id}: ${a.op} read ${problem}` })
    }
  }

  // 4. Waiters: every lock() of a process that was not SIGKILLed has an outcome.
  for (const [op, attempt] of attempts) {
    if (attempt.outcome === undefined && !killed.has(attempt.pid)) {
      violations.push({
        kind: 'waiter',
        detail: `${op} (${attempt.id}) never acquired nor rejected${stopped.has(attempt.pid) ? ' although its process stopped cleanly' : ''}`,
      })
    }
  }

  // 5. Keys.
  if (input.lockKeysLeft !== 0)
    violations.push({ kind: 'keys', detail: `${input.lockKeysLeft} lock keys left in etcd` })

  // 6. Recovery and the longest time without any acquisition.
  const enters = [...holds.values()]
    .map((h) => h.enter)
    .filter((t) => t <= input.stopAt)
    .sort((a, b) => a - b)
  for (let i = 1; i < enters.length; i++) {
    const gap = (enters[i] as number) - (enters[i - 1] as number)
    figures.longestUnavailabilityMs = Math.max(figures.longestUnavailabilityMs, gap)
  }
  for (const fault of faults) {
    const next = enters.find((t) => t >= fault.end)
    const took = next === undefined ? Number.POSITIVE_INFINITY : next - fault.end
    figures.longestRecoveryMs = Math.max(figures.longestRecoveryMs, took)
    if (took > input.recoveryBoundMs) {
      violations.push({
        kind: 'recovery',
        detail: `no lock acquired within ${input.recoveryBoundMs} ms after ${fault.kind} of ${fault.target} ended (${Number.isFinite(took) ? `${Math.round(took)} ms` : 'none before the stop'})`,
      })
    }
  }
  figures.violations = violations.length
  return { figures, violations }
}

/** The place of the last hold at or below `rev`: for a value whose writer has no hold entry. */
function rankByRevision(list: Hold[], rev: bigint): number {
  let rank = -1
  list.forEach((hold, k) => {
    if (hold.rev <= rev) rank = k
  })
  return rank
}
