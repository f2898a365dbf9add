/**
 * Which uploads are complete, from their records in the KV store (`P/.kv/<id>`: the `Upload` of
 * `@tus/server`, written through `locker.kvStore()`). A complete upload is written by nobody, so
 * its lock key is the one the locker keeps after its last unlock (`retainLocks`), not a writer.
 */
import type { Etcd3 } from 'etcd3'
import { kvValuePrefix } from '../keys.js'
import { InFlightLimit } from '../util/in-flight-limit.js'
import { bounded } from './etcd.js'

const RECORD_READS_IN_FLIGHT = 32

/** The ids among `ids` whose record says `offset === size`; ids without a record are not. */
export async function completeUploads(
  client: Etcd3,
  prefix: string,
  ids: string[],
  revision: string,
): Promise<Set<string>> {
  const limit = new InFlightLimit(RECORD_READS_IN_FLIGHT)
  const root = kvValuePrefix(prefix)
  const complete = await Promise.all(
    ids.map((id) =>
      limit.run(async () => {
        const answer = await client.kv.range(
          { key: Buffer.from(`${root}${id}`), revision },
          bounded(),
        )
        return isComplete(answer.kvs[0]?.value.toString())
      }),
    ),
  )
  return new Set(ids.filter((_, i) => complete[i]))
}

function isComplete(json: string | undefined): boolean {
  if (json === undefined) return false
  try {
    const record = JSON.parse(json) as { size?: unknown; offset?: unknown }
    return typeof record.size === 'number' && record.offset === record.size
  } catch {
    return false // not an Upload record: say nothing about it
  }
}
