/** `locks`: every upload id with a queue, its holder and waiters in queue order. */
import type { Etcd3 } from 'etcd3'
import { cell, seconds, table } from './format.js'
import type { Output } from './output.js'
import { type QueueEntry, readSnapshot, type Snapshot } from './snapshot.js'

/** One queue entry in the `--json` document. */
export interface EntryJson {
  lease: string
  /** Seconds left on the lease; null when it expired (the key goes with it). */
  ttl: number | null
  key: string
  createRevision: string
}

/** One upload id in the `--json` document of `locks`. */
export interface LockJson {
  id: string
  holder: EntryJson
  waiters: EntryJson[]
}

export async function locks(client: Etcd3, prefix: string): Promise<Output> {
  return locksOutput(await readSnapshot(client, prefix), prefix)
}

export function locksOutput(snapshot: Snapshot, prefix: string): Output {
  const entry = (e: QueueEntry): EntryJson => ({
    lease: e.lease,
    ttl: snapshot.leases.get(e.leaseId)?.ttl ?? null,
    key: e.key,
    createRevision: e.createRevision.toString(),
  })
  const list: LockJson[] = []
  for (const [id, [holder, ...waiters]] of snapshot.queues) {
    if (holder) list.push({ id, holder: entry(holder), waiters: waiters.map(entry) })
  }
  const rows = [['ID', 'ROLE', 'LEASE', 'TTL']]
  for (const lock of list) {
    rows.push([cell(lock.id), 'holder', lock.holder.lease, seconds(lock.holder.ttl)])
    lock.waiters.forEach((w, i) => {
      rows.push([cell(lock.id), `waiter ${i + 1}`, w.lease, seconds(w.ttl)])
    })
  }
  return {
    json: { prefix, revision: snapshot.revision, locks: list },
    text: list.length === 0 ? [`no locks under ${prefix}`] : table(rows),
  }
}
