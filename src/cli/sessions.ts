/** `sessions`: every lease with a key under the prefix, and what it holds, waits for, caches. */
import type { Etcd3 } from 'etcd3'
import { leaseHex } from '../keys.js'
import { seconds, table } from './format.js'
import type { Output } from './output.js'
import { readSnapshot, type Snapshot } from './snapshot.js'

/** One session in the `--json` document of `sessions`. */
export interface SessionJson {
  lease: string
  /** Seconds left; null when it expired between the read of the keys and the TTL query. */
  ttl: number | null
  grantedTtl: number | null
  /** Upload ids whose queue this session heads. */
  holds: string[]
  /** Upload ids this session waits for (queued behind a holder). */
  waits: string[]
  /** KV store keys this session caches (owns the leasing key of). */
  kvLeases: string[]
}

export async function sessions(client: Etcd3, prefix: string): Promise<Output> {
  return sessionsOutput(await readSnapshot(client, prefix), prefix)
}

export function sessionsOutput(snapshot: Snapshot, prefix: string): Output {
  const byLease = new Map<string, SessionJson>()
  const session = (leaseId: string): SessionJson | undefined => {
    if (leaseId === '0') return undefined // a key without a lease belongs to no session
    let found = byLease.get(leaseId)
    if (!found) {
      const state = snapshot.leases.get(leaseId)
      found = {
        lease: leaseHex(leaseId),
        ttl: state?.ttl ?? null,
        grantedTtl: state?.grantedTtl ?? null,
        holds: [],
        waits: [],
        kvLeases: [],
      }
      byLease.set(leaseId, found)
    }
    return found
  }
  for (const [id, queue] of snapshot.queues) {
    queue.forEach((entry, position) => {
      session(entry.leaseId)?.[position === 0 ? 'holds' : 'waits'].push(id)
    })
  }
  for (const kvLease of snapshot.kvLeases) session(kvLease.leaseId)?.kvLeases.push(kvLease.key)

  const list = [...byLease.values()].sort((a, b) => (a.lease < b.lease ? -1 : 1))
  const rows = [['LEASE', 'TTL', 'GRANTED', 'HOLDS', 'WAITS', 'KV-LEASES']]
  for (const s of list) {
    rows.push([
      s.lease,
      seconds(s.ttl),
      s.grantedTtl === null ? '-' : `${s.grantedTtl}s`,
      String(s.holds.length),
      String(s.waits.length),
      String(s.kvLeases.length),
    ])
  }
  return {
    json: { prefix, revision: snapshot.revision, sessions: list },
    text: list.length === 0 ? [`no sessions under ${prefix}`] : table(rows),
  }
}
