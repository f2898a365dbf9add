/**
 * Runs one chaos experiment: a three-member etcd cluster, worker processes locking through
 * proxies of their own, and a seeded schedule of faults (see schedule.ts). Then stops
 * everything, waits for dead sessions to expire, and hands ledgers and faults to the checker.
 * Every process it starts is stopped by pid in `finally`, on success or failure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import { type Child, runTs } from '../harness/child.js'
import { type EtcdCluster, type EtcdMember, startEtcd } from '../harness/etcd.js'
import { startProxy, type TcpProxy } from '../harness/proxy.js'
import { check, type Figures, type Violation } from './checker.js'
import { clock, type Fault, readLedgers } from './ledger.js'
import { seededRandom } from './random.js'
import { describePlan, type PlannedFault, planFaults } from './schedule.js'
import type { WorkerConfig } from './worker.js'

export interface ChaosOptions {
  seed: number
  /** How long faults are injected, ms. */
  durationMs: number
  workers?: number
  ids?: number
  /** Session TTL of the workers, s. */
  ttl?: number
  log?: (line: string) => void
}

export interface ChaosResult {
  seed: number
  figures: Figures
  violations: Violation[]
  faults: Fault[]
  lockKeysLeft: number
  leasingKeysLeft: number
  /** Kept when there are violations, for inspection. */
  ledgerDir: string
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves with `promise`, or rejects naming `what` after `ms`. */
function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

interface Worker {
  name: string
  proxies: TcpProxy[]
  child: Child
  generation: number
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const { seed, durationMs, workers: workerCount = 4, ids: idCount = 20, ttl = 3 } = options
  const log = options.log ?? ((line: string) => console.log(line))
  const ttlMs = ttl * 1_000
  const acquireLockTimeout = 10_000
  const recoveryBoundMs = 2 * ttlMs + 5_000
  const random = seededRandom(seed)
  const prefix = `/chaos-${seed}-${process.pid}`
  const ids = Array.from({ length: idCount }, (_, i) => `u${String(i).padStart(2, '0')}`)
  const ledgerDir = mkdtempSync(join(tmpdir(), 'tus-etcd3-locker-chaos-'))
  const faults: Fault[] = []
  const killed = new Map<number, number>()
  const unexpectedExits: Violation[] = []
  const workers: Worker[] = []
  const children: Child[] = []
  const proxies: TcpProxy[] = []
  let stopping = false
  let cluster: EtcdCluster | undefined
  let client: Etcd3 | undefined

  const names = Array.from({ length: workerCount }, (_, i) => `w${i}`)
  const plan = planFaults(random, {
    durationMs,
    workers: names,
    members: ['m0', 'm1', 'm2'],
    ttlMs,
  })
  log(
    `chaos: seed ${seed}, ${durationMs / 1_000} s of faults, ${workerCount} workers, ${idCount} ids, ttl ${ttl} s`,
  )
  log(`chaos: ledgers in ${ledgerDir}`)
  for (const [i, fault] of plan.entries()) log(`chaos: plan ${describePlan(fault, i)}`)

  const spawn = async (worker: Omit<Worker, 'child'>): Promise<Child> => {
    const config: WorkerConfig = {
      name: worker.name,
      hosts: worker.proxies.map((p) => p.endpoint),
      prefix,
      ids,
      ttl,
      acquireLockTimeout,
      slots: 3,
      steps: 3,
      ledger: join(ledgerDir, `${worker.name}-${worker.generation}.jsonl`),
      seed,
    }
    const child = runTs('../chaos/worker.ts', [JSON.stringify(config)])
    children.push(child) // stopped in `finally` even if it never gets ready
    child.process.once('exit', (code, signal) => {
      const pid = child.process.pid ?? 0
      if (!killed.has(pid) && !(stopping && code === 0)) {
        unexpectedExits.push({
          kind: 'process',
          detail: `worker ${worker.name} (pid ${pid}) exited on its own (${code ?? signal})`,
        })
      }
    })
    await bounded(child.waitForLine('ready'), 30_000, `worker ${worker.name} ready`)
    return child
  }

  const killByPid = async (child: Child) => {
    const pid = child.process.pid
    if (pid !== undefined && child.process.exitCode === null && child.process.signalCode === null) {
      killed.set(pid, clock())
      child.process.kill('SIGCONT') // a frozen process dies of SIGKILL too, but be explicit
      await child.kill('SIGKILL')
    }
  }

  const leader = async (members: EtcdMember[]): Promise<EtcdMember> => {
    const until = Date.now() + 20_000
    while (Date.now() < until) {
      try {
        const status = await (client as Etcd3).maintenance.status()
        const list = await (client as Etcd3).cluster.memberList({ linearizable: false })
        const name = list.members.find((m) => m.ID === status.leader)?.name
        const member = members.find((m) => m.name === name)
        if (member) return member
      } catch {
        // mid-election: ask again
      }
      await sleep(200)
    }
    throw new Error('no etcd leader within 20 s')
  }

  const inject = async (planned: PlannedFault, members: EtcdMember[]): Promise<Fault> => {
    const start = clock()
    const worker = workers.find((w) => w.name === planned.target)
    switch (planned.kind) {
      case 'kill-worker': {
        const w = worker as Worker
        const pid = w.child.process.pid
        await killByPid(w.child)
        await sleep(planned.holdMs)
        w.generation++
        w.child = await spawn(w)
        return {
          kind: planned.kind,
          target: w.name,
          pid,
          start,
          end: clock(),
          detail: `down ${planned.holdMs} ms`,
        }
      }
      case 'pause-worker': {
        const w = worker as Worker
        const pid = w.child.process.pid
        w.child.process.kill('SIGSTOP')
        await sleep(planned.holdMs)
        w.child.process.kill('SIGCONT')
        return {
          kind: planned.kind,
          target: w.name,
          pid,
          start,
          end: clock(),
          detail: `frozen ${planned.holdMs} ms`,
        }
      }
      case 'cut-worker': {
        const w = worker as Worker
        for (const proxy of w.proxies) proxy.cut(planned.mode)
        await sleep(planned.holdMs)
        for (const proxy of w.proxies) proxy.restore()
        return {
          kind: planned.kind,
          target: w.name,
          pid: w.child.process.pid,
          start,
          end: clock(),
          detail: `${planned.mode} ${planned.holdMs} ms`,
        }
      }
      case 'kill-member':
      case 'kill-leader': {
        const current = await leader(members)
        let member = members.find((m) => m.name === planned.target) ?? current
        if (planned.kind === 'kill-member' && member === current)
          member = members[(members.indexOf(member) + 1) % members.length] as EtcdMember
        if (planned.kind === 'kill-leader') member = current
        await member.kill()
        await sleep(planned.holdMs)
        await member.restart()
        return {
          kind: planned.kind,
          target: member.name,
          start,
          end: clock(),
          detail: `down ${planned.holdMs} ms${member === current ? ' (was leader)' : ''}`,
        }
      }
    }
  }

  try {
    // A member that does not come up (a port taken between picking and binding it, a very busy
    // machine) is the harness's trouble, not a finding: start a fresh cluster once more.
    cluster = await startEtcd(3).catch((error: unknown) => {
      log(`chaos: etcd cluster did not start (${error}), trying once more`)
      return startEtcd(3)
    })
    const members = cluster.members
    client = new Etcd3({ hosts: cluster.endpoints })
    for (const [i, name] of names.entries()) {
      const own = await Promise.all(members.map((m) => startProxy(m.endpoint)))
      proxies.push(...own)
      const worker = { name, proxies: own, generation: 0 }
      workers[i] = { ...worker, child: await spawn(worker) }
    }
    log(`chaos: etcd ${cluster.endpoints.join(',')}, ${workerCount} workers ready`)
    await sleep(2_000)

    // Faults, one at a time, until the duration is spent.
    const startedAt = clock()
    for (const [i, planned] of plan.entries()) {
      if (clock() - startedAt >= durationMs) break
      const fault = await inject(planned, members)
      faults.push(fault)
      log(
        `chaos: fault ${describePlan(planned, i)}: ${fault.target} ${fault.detail}, took ${Math.round(fault.end - fault.start)} ms`,
      )
      // After the last fault, wait until work resumes (a committed write), bounded.
      if (i === plan.length - 1 || clock() - startedAt + planned.quietMs >= durationMs) {
        await untilWrite(client, prefix, recoveryBoundMs).catch(() => undefined)
      }
      await sleep(planned.quietMs)
    }

    // Graceful stop: each worker finishes its step, unlocks and revokes its session.
    stopping = true
    const stopAt = clock()
    const stopLimit = acquireLockTimeout + 15_000
    await Promise.all(
      workers.map(async (w) => {
        const exited = w.child.kill('SIGTERM')
        await bounded(exited, stopLimit, `worker ${w.name} stops on SIGTERM`).catch(
          async (error) => {
            unexpectedExits.push({ kind: 'process', detail: String(error) })
            await killByPid(w.child)
          },
        )
      }),
    )
    // SIGKILLed workers' sessions expire within their TTL: then nothing may be left.
    const lockKeysLeft = await untilNoLockKeys(client, prefix, ttlMs + 10_000)
    const leasingKeysLeft = (await client.getAll().prefix(`${prefix}/.kvlease/`).keys()).length
    log(
      `chaos: workers stopped; ${lockKeysLeft} lock keys and ${leasingKeysLeft} leasing keys left`,
    )

    // Kept with the ledgers when a run fails, to re-check or read them later.
    writeFileSync(
      join(ledgerDir, 'faults.json'),
      JSON.stringify({ faults, killed: [...killed], stopAt, ttlMs }, null, 1),
    )
    const result = check({
      entries: readLedgers(ledgerDir),
      faults,
      killed,
      ttlMs,
      recoveryBoundMs,
      lockKeysLeft,
      stopAt,
    })
    const violations = [...unexpectedExits, ...result.violations]
    result.figures.violations = violations.length
    if (violations.length === 0) rmSync(ledgerDir, { recursive: true, force: true })
    return {
      seed,
      figures: result.figures,
      violations,
      faults,
      lockKeysLeft,
      leasingKeysLeft,
      ledgerDir,
    }
  } finally {
    stopping = true
    for (const child of children) await killByPid(child)
    await Promise.all(proxies.map((p) => p.close()))
    client?.close()
    await cluster?.stop()
  }
}

/** Resolves at the next committed metadata write under `prefix` (a section made progress). */
async function untilWrite(client: Etcd3, prefix: string, ms: number): Promise<void> {
  const watcher = await client.watch().prefix(`${prefix}/.kv/`).create()
  try {
    await bounded(
      new Promise((resolve) => watcher.once('put', resolve)),
      ms,
      'a write after the last fault',
    )
  } finally {
    await watcher.cancel()
  }
}

/** Waits (on deletes, bounded) until no lock key is under `prefix`; returns how many are left. */
async function untilNoLockKeys(client: Etcd3, prefix: string, ms: number): Promise<number> {
  const count = async () =>
    (await client.getAll().prefix(`${prefix}/`).keys()).filter((k) => !k.startsWith(`${prefix}/.`))
      .length
  const watcher = await client.watch().prefix(`${prefix}/`).create()
  try {
    await bounded(
      new Promise<void>((resolve, reject) => {
        const recount = () => count().then((n) => n === 0 && resolve(), reject)
        watcher.on('delete', recount)
        recount()
      }),
      ms,
      'lock keys gone',
    )
  } catch {
    // reported as a count below
  } finally {
    await watcher.cancel()
  }
  return count()
}

/** The figures as the lines `npm run test:chaos` prints. */
export function describeResult(result: ChaosResult): string[] {
  const f = result.figures
  const counts = (byName: Record<string, number | undefined>) =>
    Object.entries(byName)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || 'none'
  const kinds = counts(f.faults)
  const rejections = counts(f.rejections)
  const writeErrors = counts(f.writeErrors)
  return [
    `seed: ${result.seed}`,
    `operations: ${f.acquisitions} locks acquired of ${f.attempts} lock() calls; ${f.writesCommitted} fenced writes committed, ${f.writesFenced} rejected by the fence, failed (outcome unknown): ${writeErrors}; ${f.readsChecked} reads checked`,
    `rejections: ${rejections}`,
    `faults injected: ${result.faults.length} (${kinds})`,
    `overlaps: ${f.overlapsAfterTold} after the earlier holder was told its lock was lost, ${f.overlapsWhileFrozen} while it was frozen (its writes stopped by the fence); ${f.readsAfterLoss} reads by such a holder saw the next holder's value`,
    `lock keys left: ${result.lockKeysLeft}, leasing keys left: ${result.leasingKeysLeft}`,
    `longest unavailability: ${Math.round(f.longestUnavailabilityMs)} ms without any lock acquired; longest recovery after a fault: ${Math.round(f.longestRecoveryMs)} ms`,
    `clocks: the workers' wall-derived clocks disagreed by up to ${f.wallClockSpreadMs.toFixed(2)} ms (the ledger uses the shared monotonic clock)`,
    `violations: ${result.violations.length}`,
    ...result.violations.slice(0, 20).map((v) => `  ${v.kind}: ${v.detail}`),
  ]
}
