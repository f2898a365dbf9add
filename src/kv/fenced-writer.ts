import { EtcdLeaseInvalidError, type IKeyValue, type Namespace } from 'etcd3'
import { LockLostError } from '../errors.js'
import { kvLeasePrefix, kvValuePrefix, quote } from '../keys.js'
import { deletedOrInterrupted } from '../lock/watch.js'
import { CALL_TIMEOUT_MS, callOptions } from '../session/etcd-calls.js'
import type { SessionKeeper } from '../session/session-keeper.js'
import { LinkedAbort, settledWithin } from '../util/abort.js'
import { timerDelay } from '../util/timers.js'
import { type LeasingCache, REVOKE } from './leasing-cache.js'

/** The lock key that fences writes to a KV key while this process holds that upload's lock. */
export interface Fence {
  key: string
  revision: bigint
}

// A foreign write gives up after asking this many owners in a row to release the key.
const MAX_REVOKE_ROUNDS = 10

/**
 * The write side of the leasing protocol: an owner's write guarded by its leasing key, every
 * other writer's revoke-wait-write, and the fence of the upload's lock in the same txn.
 */
export class FencedWriter {
  constructor(
    private readonly client: Namespace,
    private readonly keeper: SessionKeeper,
    private readonly prefix: string,
    private readonly cache: LeasingCache | undefined,
    /** Whether a cache of any store on this session serves `key` (or is about to). */
    private readonly cachedOnSession: (key: string) => boolean,
    private readonly fence: (key: string) => Fence | undefined,
  ) {}

  /**
   * The write of `raw` to `key` (a delete for `undefined`), fenced by the lock key this process
   * holds or keeps for the upload `key` now, at the call: run later, in its turn behind other
   * operations on the key, it commits only while that very key still exists. A fence looked up
   * when the write runs would find none once the lock has passed on, and write unfenced.
   */
  fencedAtCall(key: string, raw: string | undefined): () => Promise<void> {
    const fence = this.fence(key)
    return () => this.write(key, raw, fence)
  }

  /**
   * Writes `raw` (or deletes, for `undefined`): as the lease owner if this store caches the key,
   * else as every other writer, with or without a cache of its own, must: revoke, wait, write.
   */
  private async write(
    key: string,
    raw: string | undefined,
    fence: Fence | undefined,
  ): Promise<void> {
    const valueKey = kvValuePrefix(this.prefix) + key
    const op = () =>
      raw === undefined ? this.client.delete().key(valueKey) : this.client.put(valueKey).value(raw)
    const leaseKey = kvLeasePrefix(this.prefix) + key

    const cache = this.cache
    const entry = cache?.lookup(key)
    if (cache !== undefined && entry !== undefined) {
      let res: Awaited<ReturnType<typeof this.guarded>>
      // Deleting the key gives its lease up in the same txn: nothing is left to cache.
      const deleteLease = raw === undefined
      try {
        res = await this.guarded(fence, leaseKey, entry.leaseKeyRevision, op, deleteLease)
      } catch (error) {
        // Outcome unknown (deadline, lost answer): etcd may hold the new value by now.
        cache.abandon(key, 'a write of it failed with its outcome unknown')
        throw error
      }
      if (res.succeeded) {
        if (deleteLease) cache.evictDeleted(key)
        else entry.raw = raw
        return
      }
      this.throwIfFenceBroken(fence, res.fenceKv)
      cache.forget(key) // our lease on the key is gone: write as anyone else would
    }

    for (let round = 0; round < MAX_REVOKE_ROUNDS; round++) {
      // A caching store that writes a key nobody leases leases it in the same txn.
      const leaseTo = raw === undefined ? undefined : cache?.beginLeaseOnWrite(key)
      let res: Awaited<ReturnType<typeof this.guarded>>
      try {
        res = await this.guarded(fence, leaseKey, 0n, op, false, leaseTo?.leaseId)
      } catch (error) {
        if (cache === undefined || leaseTo === undefined) throw error
        if (error instanceof EtcdLeaseInvalidError) {
          // Not applied: the session is over. Write again, without a lease.
          cache.endLeaseOnWrite(key, leaseTo, 'not-leased')
          leaseTo.markLost('etcd says the lease is gone')
          continue
        }
        cache.endLeaseOnWrite(key, leaseTo, 'unknown')
        throw error
      }
      if (cache !== undefined && leaseTo !== undefined && raw !== undefined) {
        const leased = res.succeeded ? { revision: res.revision, raw } : 'not-leased'
        cache.endLeaseOnWrite(key, leaseTo, leased)
      }
      if (res.succeeded) return
      this.throwIfFenceBroken(fence, res.fenceKv)
      const leasing = res.leaseKv
      if (leasing === undefined) continue // given up between our reads: try again
      await this.revokeAndWait(key, leaseKey, leasing)
    }
    throw new Error(
      `Etcd3KvStore could not write ${quote(key)}: its cache lease was taken again ${MAX_REVOKE_ROUNDS} times`,
    )
  }

  /**
   * One txn: `op` if the leasing key's create revision is `leaseRevision` (0: no leasing key) and
   * the fence holds; otherwise read both, to tell the caller why not.
   */
  private async guarded(
    fence: Fence | undefined,
    leaseKey: string,
    leaseRevision: bigint,
    op: () => ReturnType<Namespace['put']> | ReturnType<Namespace['delete']>,
    deleteLease = false,
    /** A lease to put the leasing key on, in the same txn (this process becomes its owner). */
    leaseTo?: string,
  ): Promise<{ succeeded: boolean; revision: bigint; leaseKv?: IKeyValue; fenceKv?: IKeyValue }> {
    let txn = this.client.if(leaseKey, 'Create', '==', leaseRevision.toString())
    if (fence) txn = txn.and(fence.key, 'Create', '==', fence.revision.toString())
    const ops = deleteLease ? [op(), this.client.delete().key(leaseKey)] : [op()]
    if (leaseTo !== undefined) ops.push(this.client.put(leaseKey).value('').lease(leaseTo))
    const res = await txn
      .then(...ops)
      .else(this.client.get(leaseKey), this.client.get(fence?.key ?? leaseKey))
      .options(callOptions())
      .commit()
    return {
      succeeded: res.succeeded,
      revision: BigInt(res.header.revision),
      leaseKv: res.responses[0]?.response_range?.kvs[0],
      fenceKv: fence ? res.responses[1]?.response_range?.kvs[0] : undefined,
    }
  }

  private throwIfFenceBroken(fence: Fence | undefined, fenceKv: IKeyValue | undefined): void {
    if (fence === undefined) return
    if (fenceKv === undefined || BigInt(fenceKv.create_revision) !== fence.revision) {
      throw new LockLostError(fence.key)
    }
  }

  /**
   * Asks the owner of `leasing` to give the key up (its lease stays on the key), then waits for
   * the leasing key's delete: the owner deletes it, or etcd does when the owner's session expires,
   * so the wait is bounded by the owner's remaining TTL.
   */
  private async revokeAndWait(key: string, leaseKey: string, leasing: IKeyValue): Promise<void> {
    const own = this.keeper.live
    if (own !== undefined && leasing.lease === own.leaseId && !this.cachedOnSession(key)) {
      // Our own leftover leasing key (no cache of this process serves it): nobody else would
      // delete it. One that another store of this process caches is revoked like any other.
      await this.client
        .if(leaseKey, 'Create', '==', leasing.create_revision)
        .then(this.client.delete().key(leaseKey))
        .options(callOptions())
        .commit()
      return
    }
    // Watch first, from etcd's revision then (a watch from an older one would be served by
    // etcd's catch-up loop, up to 100 ms after the owner's delete), then revoke, guarded by the
    // leasing key's create revision: if that fails, the key went before the watch began.
    const stop = new LinkedAbort()
    let created!: () => void
    const watching = new Promise<void>((resolve) => {
      created = resolve
    })
    const deleted = deletedOrInterrupted(this.client, leaseKey, 'now', stop.signal, () => created())
    deleted.catch(() => undefined)
    try {
      const [ttl] = await Promise.all([
        this.client.leaseClient
          .leaseTimeToLive({ ID: leasing.lease }, callOptions())
          .then((res) => Number(res.TTL))
          .catch(() => 1),
        settledWithin(watching, CALL_TIMEOUT_MS),
      ])
      const still = await this.client
        .if(leaseKey, 'Create', '==', leasing.create_revision)
        .then(
          ...(leasing.value.toString() === REVOKE
            ? []
            : [this.client.put(leaseKey).value(REVOKE).ignoreLease()]),
        )
        .options(callOptions())
        .commit()
      if (!still.succeeded) return // given up (or taken again) already: write again
      const bound = setTimeout(
        () => stop.abort('the owner did not answer'),
        timerDelay((Math.max(ttl, 0) + 1) * 1_000),
      )
      await deleted.catch(() => undefined)
      clearTimeout(bound)
    } finally {
      stop.abort('done')
    }
  }
}
