/**
 * The driver's fault schedule, drawn up front from a seed so that a failing run can be replayed:
 * the first faults cover every kind once (in a seeded order), later ones are drawn at random.
 */
import { FAULT_KINDS, type FaultKind } from './ledger.js'
import { between, pick, type Random } from './random.js'

export interface PlannedFault {
  kind: FaultKind
  /** Worker name for worker faults; unused for `kill-leader`; for `kill-member`, the member to
   * kill unless it is the leader at that moment (then the next one). */
  target: string
  /** How long the fault lasts, ms. */
  holdMs: number
  /** `cut-worker` only. */
  mode?: 'blackhole' | 'reset'
  /** Quiet time after the fault ends, ms. */
  quietMs: number
}

export function planFaults(
  random: Random,
  options: { durationMs: number; workers: string[]; members: string[]; ttlMs: number },
): PlannedFault[] {
  const { durationMs, workers, members, ttlMs } = options
  const firstKinds = [...FAULT_KINDS]
  for (let i = firstKinds.length - 1; i > 0; i--) {
    const j = between(random, 0, i)
    ;[firstKinds[i], firstKinds[j]] = [firstKinds[j] as FaultKind, firstKinds[i] as FaultKind]
  }
  const plan: PlannedFault[] = []
  for (let planned = 0; planned < durationMs; ) {
    const kind = firstKinds.shift() ?? pick(random, FAULT_KINDS)
    const fault: PlannedFault = {
      kind,
      target: kind === 'kill-member' ? pick(random, members) : pick(random, workers),
      holdMs: 0,
      quietMs: between(random, 2_000, 5_000),
    }
    if (kind === 'kill-leader') fault.target = 'leader'
    if (kind === 'kill-worker') fault.holdMs = between(random, 300, 3_000)
    // Frozen longer than the TTL: the session expires in etcd while the process cannot know.
    if (kind === 'pause-worker') fault.holdMs = ttlMs + between(random, 1_000, 3_000)
    // Either shorter than the TTL (the session should survive) or well past it.
    if (kind === 'cut-worker') {
      fault.holdMs =
        random() < 0.3 ? between(random, 300, ttlMs / 2) : ttlMs + between(random, 500, 3_000)
      fault.mode = random() < 0.5 ? 'blackhole' : 'reset'
    }
    if (kind === 'kill-member' || kind === 'kill-leader')
      fault.holdMs = between(random, 1_000, 4_000)
    plan.push(fault)
    planned += fault.holdMs + fault.quietMs
  }
  return plan
}

export function describePlan(fault: PlannedFault, index: number): string {
  const what = fault.mode
    ? `${fault.kind} ${fault.target} (${fault.mode})`
    : `${fault.kind} ${fault.target}`
  return `#${index + 1} ${what} for ${fault.holdMs} ms, then ${fault.quietMs} ms quiet`
}
