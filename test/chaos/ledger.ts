/**
 * The chaos test's ledger: what each worker process did, one JSON object per line, appended
 * synchronously before and after each step so that a SIGKILL loses at most the step in flight.
 * Times are the machine's monotonic clock (`process.hrtime`) in ms: one clock that every process
 * of the machine reads alike.
 */
import { appendFileSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Milliseconds on the clock all processes of the run share. Not `performance.timeOrigin +
 * performance.now()`: each process takes its `timeOrigin` from the wall clock when it starts, so a
 * wall-clock step or a start preempted between the two clock reads puts one process's times
 * off the others' for its whole life (a CI run on etcd 3.4 saw one worker's clock about 10 ms
 * ahead: 19 "exclusion" overlaps of 5 to 9 ms, all with that worker leaving, none with a write
 * after the hand-over).
 */
export function clock(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

/** The value a critical section writes to its upload's metadata: which section, which step. */
export interface Written {
  op: string
  rev: string
  step: number
}

/**
 * One ledger line. `op` names one `lock()` call: `<worker>:<pid>:<n>`. `wallOffset` of `start`:
 * `performance.timeOrigin + performance.now()` minus `clock()`, to show how far the processes'
 * wall-derived clocks disagree.
 */
export type Entry = { t: number; w: string; pid: number } & (
  | { k: 'start'; wallOffset: number }
  | { k: 'session'; lease: string }
  | { k: 'sessionLost'; lease: string; reason: string }
  | { k: 'attempt'; op: string; id: string }
  /** `rev`: create revision of the lock key, etcd's order of the holders of `id`. */
  | { k: 'acquired'; op: string; id: string; rev: string; lease: string }
  | { k: 'rejected'; op: string; id: string; name: string; message: string }
  /** The locker called `requestRelease`; `lost` when the reason is the end of the session. */
  | { k: 'release'; op: string; id: string; reason: string; lost: boolean }
  | { k: 'read'; op: string; started: number; value: Written | null }
  | { k: 'readError'; op: string; name: string; message: string }
  /** A write was sent (`t`), then acknowledged, fenced off (LockLostError) or failed. */
  | { k: 'write'; op: string; step: number }
  | { k: 'written'; op: string; step: number }
  | { k: 'fenced'; op: string; step: number }
  | { k: 'writeError'; op: string; step: number; name: string; message: string }
  | { k: 'unlock'; op: string }
  | { k: 'unlocked'; op: string }
  | { k: 'stop' }
)

type Body = Entry extends infer E ? (E extends Entry ? Omit<E, 't' | 'w' | 'pid'> : never) : never

/** Appends entries to one worker process's ledger file. */
export class LedgerWriter {
  constructor(
    private readonly path: string,
    private readonly worker: string,
  ) {}

  /** Appends `body` stamped with the time, worker and pid; returns the time. */
  record(body: Body, t = clock()): number {
    const entry = { t, w: this.worker, pid: process.pid, ...body }
    appendFileSync(this.path, `${JSON.stringify(entry)}\n`)
    return t
  }
}

/** Every entry of every `*.jsonl` ledger in `dir`. A torn last line (killed mid-write) is skipped. */
export function readLedgers(dir: string): Entry[] {
  const entries: Entry[] = []
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()) {
    const lines = readFileSync(join(dir, file), 'utf8').split('\n')
    lines.forEach((line, i) => {
      if (line === '') return
      try {
        entries.push(JSON.parse(line) as Entry)
      } catch (error) {
        if (i < lines.length - 2) throw new Error(`${file}:${i + 1} is not JSON: ${error}`)
      }
    })
  }
  return entries
}

/** What the driver did to a process or member, for the checker. */
export interface Fault {
  kind: FaultKind
  /** Worker name or etcd member name. */
  target: string
  /** Worker pid the fault hit (worker faults). */
  pid?: number
  start: number
  end: number
  detail: string
}

export const FAULT_KINDS = [
  'kill-worker',
  'pause-worker',
  'cut-worker',
  'kill-member',
  'kill-leader',
] as const
export type FaultKind = (typeof FAULT_KINDS)[number]
