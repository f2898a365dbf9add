/**
 * `release <id>`: ask the holder of an upload to let go, exactly as a waiting request of any
 * instance does. A new key in the id's queue is what every holder (Etcd3Locker, and waiters'
 * etcdctl/Mutex keys alike) listens for: the locker calls the holder's `requestRelease`, and
 * `@tus/server` then ends its request. We watch the holder's key, and whatever happens remove
 * our own key, so we never hold or block the upload ourselves for longer than needed.
 */
import type { Etcd3, IKeyValue } from 'etcd3'
import { leaseHex, lockQueuePrefix } from '../keys.js'
import { deletedOrInterrupted } from '../lock/watch.js'
import { bounded, rangeKeys } from './etcd.js'
import { ExitCode } from './exit-codes.js'
import type { Output } from './output.js'

/**
 * TTL of our queue key's lease, in seconds, kept alive while we wait. Short so that if this
 * process dies mid-wait its key (which may by then head the queue) goes within seconds.
 */
export const RELEASE_LEASE_TTL = 5

export async function release(
  client: Etcd3,
  prefix: string,
  id: string,
  timeoutMs: number,
): Promise<Output> {
  const queue = lockQueuePrefix(prefix, id)
  const read = await rangeKeys(client, queue, `${queue.slice(0, -1)}0`)
  const holder = read.kvs[0]
  if (!holder) {
    return {
      json: { id, released: false, holder: null, waitedMs: 0 },
      text: [],
      failure: {
        exitCode: ExitCode.noLock,
        message: `no lock on ${JSON.stringify(id)} under ${prefix}`,
      },
    }
  }
  const holderLease = holderLeaseHex(holder, queue)
  const lease = client.lease(RELEASE_LEASE_TTL, bounded())
  // Losing our lease only removes our key early; the holder has heard the request by then.
  lease.on('lost', () => {})
  let ourKey: string | undefined
  const started = performance.now()
  let released: boolean
  try {
    // With others already waiting, the holder has been asked once already (once per hold), and
    // a key of ours would only make the next holder, the request we want to go on, be asked too.
    if (read.kvs.length === 1) {
      ourKey = `${queue}${leaseHex(await lease.grant())}`
      await lease.put(ourKey).value('').options(bounded()).exec()
    }
    released = await holderKeyGone(
      client,
      holder,
      BigInt(read.header.revision) + 1n,
      AbortSignal.timeout(timeoutMs),
    )
  } finally {
    // Delete first: revoking alone would also remove the key, but only once etcd applies it.
    if (ourKey) {
      await client
        .delete()
        .key(ourKey)
        .options(bounded())
        .exec()
        .catch(() => undefined)
    }
    await lease.revoke(bounded()).catch(() => undefined)
  }
  const waitedMs = Math.round(performance.now() - started)
  const json = { id, released, holder: { lease: holderLease }, waitedMs }
  if (released) {
    return {
      json,
      text: [`released ${JSON.stringify(id)}: holder ${holderLease} let go after ${waitedMs} ms`],
    }
  }
  return {
    json,
    text: [],
    failure: {
      exitCode: ExitCode.notReleased,
      message: `holder ${holderLease} of ${JSON.stringify(id)} did not release within ${timeoutMs} ms`,
    },
  }
}

/**
 * Whether the holder's key is deleted (unlock, close, or its session expired) before `signal`
 * aborts. Watched from `fromRevision`, so a release right after our read counts. A broken watch
 * is not trusted: read the key again and watch on from there.
 */
async function holderKeyGone(
  client: Etcd3,
  holder: IKeyValue,
  fromRevision: bigint,
  signal: AbortSignal,
): Promise<boolean> {
  const key = holder.key.toString()
  let from = fromRevision
  while (!signal.aborted) {
    const outcome = await deletedOrInterrupted(client, key, from, signal).catch(() => 'timeout')
    if (outcome === 'deleted') return true
    if (outcome === 'timeout') return false
    const now = await client.get(key).options(bounded()).exec()
    const current = now.kvs[0]
    // Same key name but a new create revision: the holder let go and queued again.
    if (current?.create_revision !== holder.create_revision) return true
    from = BigInt(now.header.revision) + 1n
  }
  return false
}

function holderLeaseHex(holder: IKeyValue, queue: string): string {
  return holder.lease === '0' ? holder.key.toString().slice(queue.length) : leaseHex(holder.lease)
}
