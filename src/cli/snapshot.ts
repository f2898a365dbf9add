/**
 * One consistent read of the lock queues and KV cache leases under the prefix (at one revision), plus what etcd says of each lease seen. `locks` and
 * `sessions` are two views of it.
 */
import type { Etcd3 } from 'etcd3'
import { kvLeasePrefix, leaseHex, unescapeId } from '../keys.js'
import { InFlightLimit } from '../util/in-flight-limit.js'
import { type LeaseState, leaseState, rangeKeys } from './etcd.js'

const LEASE_QUERIES_IN_FLIGHT = 32

/** One queue entry `P/<id>/<leaseHex>`. */
export interface QueueEntry {
  /** The upload id, un-escaped: what the user passed to `newLock(id)`. */
  id: string
  key: string
  /** Decimal lease id the key is attached to (`'0'` for none). */
  leaseId: string
  /** Lease in lower-case hex, as in the key (from the key itself when it has no lease). */
  lease: string
  createRevision: bigint
}

/** A KV store key cached by a session: `P/.kvlease/<key>`. */
export interface KvLease {
  key: string
  leaseId: string
  lease: string
}

export interface Snapshot {
  /** etcd revision of the read. */
  revision: string
  /** Queue entries per upload id, oldest create revision (the holder) first; ids sorted. */
  queues: Map<string, QueueEntry[]>
  kvLeases: KvLease[]
  /** State of every lease seen, by decimal lease id. */
  leases: Map<string, LeaseState>
}

/** Reads the prefix and the TTL of each lease found there. */
export async function readSnapshot(client: Etcd3, prefix: string): Promise<Snapshot> {
  // Three ranges at one revision, leaving out the KV store's values under `P/.kv/` (one per
  // upload: a single range over everything could outgrow gRPC's 4 MiB answer). An escaped id
  // never starts with '.', so queue keys sort before `P/.` or after `P//` ('/' follows '.').
  const kvLeaseRoot = kvLeasePrefix(prefix)
  const low = await rangeKeys(client, `${prefix}/`, `${prefix}/.`)
  const revision = low.header.revision
  const [high, leasing] = await Promise.all([
    rangeKeys(client, `${prefix}//`, `${prefix}0`, revision),
    rangeKeys(client, kvLeaseRoot, `${kvLeaseRoot.slice(0, -1)}0`, revision),
  ])
  const kvs = [...low.kvs, ...high.kvs, ...leasing.kvs]
  const entries: QueueEntry[] = []
  const kvLeases: KvLease[] = []
  for (const kv of kvs) {
    const key = kv.key.toString()
    if (key.startsWith(kvLeaseRoot)) {
      const kvKey = key.slice(kvLeaseRoot.length)
      kvLeases.push({ key: kvKey, leaseId: kv.lease, lease: hexOf(kv.lease, '') })
      continue
    }
    const rel = key.slice(prefix.length + 1)
    const cut = rel.lastIndexOf('/')
    // An escaped id never starts with '.', so '.kv/', '.kvlease/' and any other dot-key are the
    // KV store's, not locks; a key without a lease segment is not a queue entry either.
    if (rel.startsWith('.') || cut <= 0 || cut === rel.length - 1) continue
    entries.push({
      id: unescapeId(rel.slice(0, cut)),
      key,
      leaseId: kv.lease,
      lease: hexOf(kv.lease, rel.slice(cut + 1)),
      createRevision: BigInt(kv.create_revision),
    })
  }
  // Oldest first within each queue: the lock order.
  entries.sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1))
  const queues = new Map<string, QueueEntry[]>()
  for (const entry of [...entries].sort((a, b) => compare(a.id, b.id))) {
    queues.set(entry.id, [])
  }
  for (const entry of entries) queues.get(entry.id)?.push(entry)
  kvLeases.sort((a, b) => compare(a.key, b.key))

  const leaseIds = new Set([...entries, ...kvLeases].map((e) => e.leaseId))
  // Bounded parallelism: thousands of sessions must not queue inside etcd past each deadline.
  const limit = new InFlightLimit(LEASE_QUERIES_IN_FLIGHT)
  const states = await Promise.all(
    [...leaseIds].map((id) => limit.run(() => leaseState(client, id))),
  )
  const leases = new Map([...leaseIds].map((id, i) => [id, states[i] as LeaseState]))
  return { revision, queues, kvLeases, leases }
}

function hexOf(leaseId: string, fallback: string): string {
  return leaseId === '0' ? fallback : leaseHex(leaseId)
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
