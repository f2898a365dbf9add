/**
 * One chaos worker process: an `Etcd3Locker` whose slots loop lock -> critical section -> unlock
 * over the run's upload ids, recording every step in its own ledger (see ledger.ts).
 *
 * A critical section reads the upload's metadata, then writes it in a few steps through the
 * locker's fenced KV store. Before each write it checks that it was not asked to release: once
 * told its session is lost (or that another request waits) it writes nothing more and unlocks,
 * as a tus request being aborted would. A frozen process cannot be told anything, so writes it
 * sends after resuming are stopped by the fence in etcd alone: the checker verifies that.
 *
 * argv[2]: the JSON of {@link WorkerConfig}. Prints "ready" once the session is granted (or
 * could not be). On SIGTERM it finishes its current steps, unlocks, closes the locker and exits 0.
 */
import { ERRORS } from '@tus/utils'
import { Etcd3 } from 'etcd3'
import { Etcd3Locker, LockLostError } from '../../src/index.js'
import { clock, LedgerWriter, type Written } from './ledger.js'
import { between, hash, pick, seededRandom } from './random.js'

export interface WorkerConfig {
  name: string
  /** This worker's proxies, one per etcd member. */
  hosts: string[]
  prefix: string
  ids: string[]
  ttl: number
  acquireLockTimeout: number
  /** Concurrent lock loops in this process. */
  slots: number
  /** Write steps per critical section. */
  steps: number
  ledger: string
  seed: number
}

const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig
const ledger = new LedgerWriter(config.ledger, config.name)
const random = seededRandom(config.seed ^ hash(config.name) ^ process.pid)
const client = new Etcd3({ hosts: config.hosts })
const locker = new Etcd3Locker(client, {
  prefix: config.prefix,
  ttl: config.ttl,
  acquireLockTimeout: config.acquireLockTimeout,
})
const store = locker.kvStore<Written>()
const never = new AbortController().signal
let stopping = false
let count = 0

/** What a held lock has been told, by upload id (a process holds an id at most once). */
interface Hold {
  op: string
  lease: string
  told: boolean
  asked: boolean
}
const holds = new Map<string, Hold>()
const lastReason = new Map<string, string>()

ledger.record({ k: 'start', wallOffset: performance.timeOrigin + performance.now() - clock() })
locker.on('sessionGranted', ({ lease }) => ledger.record({ k: 'session', lease }))
locker.on('sessionLost', ({ lease, reason }) => {
  ledger.record({ k: 'sessionLost', lease, reason })
  for (const hold of holds.values()) if (hold.lease === lease) hold.told = true
})
// Emitted just before the lock calls our requestRelease: keeps the reason for that call.
locker.on('releaseRequested', ({ id, reason }) => lastReason.set(id, reason))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function describeError(error: unknown): { name: string; message: string } {
  if (error === ERRORS.ERR_LOCK_TIMEOUT)
    return { name: 'ERR_LOCK_TIMEOUT', message: ERRORS.ERR_LOCK_TIMEOUT.body }
  if (error instanceof Error) return { name: error.name, message: error.message }
  return { name: typeof error, message: String(error) }
}

async function section(id: string, op: string, rev: string, hold: Hold): Promise<void> {
  const started = clock()
  try {
    const value = await store.get(id)
    ledger.record({ k: 'read', op, started, value: value ?? null })
  } catch (error) {
    ledger.record({ k: 'readError', op, ...describeError(error) })
    return
  }
  for (let step = 1; step <= config.steps; step++) {
    await sleep(between(random, 5, 25))
    if (hold.told || hold.asked || stopping) return
    ledger.record({ k: 'write', op, step })
    try {
      await store.set(id, { op, rev, step })
      ledger.record({ k: 'written', op, step })
    } catch (error) {
      if (error instanceof LockLostError) ledger.record({ k: 'fenced', op, step })
      else ledger.record({ k: 'writeError', op, step, ...describeError(error) })
      return
    }
  }
}

async function slot(): Promise<void> {
  while (!stopping) {
    const id = pick(random, config.ids)
    const op = `${config.name}:${process.pid}:${count++}`
    const lock = locker.newLock(id)
    let hold: Hold | undefined
    ledger.record({ k: 'attempt', op, id })
    try {
      await lock.lock(never, () => {
        const reason = lastReason.get(id) ?? 'unknown'
        const lost = /session/.test(reason)
        ledger.record({ k: 'release', op, id, reason, lost })
        if (hold === undefined) hold = { op, lease: '', told: lost, asked: !lost }
        else if (lost) hold.told = true
        else hold.asked = true
      })
    } catch (error) {
      const { name, message } = describeError(error)
      ledger.record({ k: 'rejected', op, id, name, message })
      await sleep(between(random, 20, 100))
      continue
    }
    const entry = lock.heldEntry()
    const lease = entry?.key.slice(entry.key.lastIndexOf('/') + 1) ?? ''
    const rev = String(entry?.revision ?? '')
    hold ??= { op, lease, told: false, asked: false }
    hold.lease = lease
    holds.set(id, hold)
    ledger.record({ k: 'acquired', op, id, rev, lease })
    await section(id, op, rev, hold)
    ledger.record({ k: 'unlock', op })
    holds.delete(id)
    await lock.unlock()
    ledger.record({ k: 'unlocked', op })
    await sleep(between(random, 0, 20))
  }
}

const slots = Array.from({ length: config.slots }, () => slot())
process.once('SIGTERM', () => {
  stopping = true
  Promise.allSettled(slots)
    .then(() => locker.close())
    .then(() => {
      client.close()
      ledger.record({ k: 'stop' })
      process.exit(0)
    })
})
await locker.ready().catch(() => undefined)
process.stdout.write('ready\n')
// Keeps the process alive between the slots' timers (they may all be waiting on etcd).
setInterval(() => {}, 60_000)
