import type { IKeyValue, Namespace } from 'etcd3'
import { abortable } from './abort.js'
import { LockLostError } from './errors.js'
import { callOptions, retryWhileSessionLives } from './etcd-calls.js'
import type { InFlightLimit } from './in-flight-limit.js'
import type { Session } from './session.js'
import { deletedOrInterrupted } from './watch.js'

/** The entry that must be deleted before ours may hold, as seen at `revision`. */
export interface Predecessor {
  key: string
  revision: bigint
  /** No other entry is older: once this one is deleted, ours holds the lock. */
  last: boolean
}

/**
 * This session's entry in the etcd queue of one upload: the key `P/<id>/<leaseHex>`, exactly as
 * etcd's `concurrency.Mutex` writes it, so `etcdctl lock` and Go clients queue with us. The entry
 * with the oldest create revision holds the lock.
 */
export class QueueEntry {
  readonly key: string
  private enqueued: Promise<bigint> | undefined
  private rev: bigint | undefined

  constructor(
    private readonly client: Namespace,
    readonly queuePrefix: string,
    readonly session: Session,
    private readonly limit: InFlightLimit,
  ) {
    this.key = queuePrefix + session.leaseHex
  }

  /** Create revision of our key: our place in the queue. */
  get revision(): bigint | undefined {
    return this.rev
  }

  /**
   * Protocol step 2, one txn: create our key on the session lease unless it exists, and read the
   * queue's first entry. Safe to repeat. Resolves `true` when we hold the lock already.
   */
  async enqueue(): Promise<boolean> {
    const first = () =>
      this.client.getAll().prefix(this.queuePrefix).sort('Create', 'Ascend').limit(1)
    const txn = this.limit.run(() =>
      this.client
        .if(this.key, 'Create', '==', 0)
        .then(this.client.put(this.key).value('').lease(this.session.leaseId), first())
        .else(this.client.get(this.key), first())
        .options(callOptions())
        .commit(),
    )
    const enqueued = txn.then((res) => {
      const mine = res.responses[0]?.response_range?.kvs[0]
      return res.succeeded ? BigInt(res.header.revision) : createRevision(mine)
    })
    this.enqueued = enqueued
    const [res, rev] = await Promise.all([txn, enqueued])
    this.rev = rev
    const owner = res.responses[1]?.response_range?.kvs[0]
    return owner !== undefined && createRevision(owner) === rev
  }

  /**
   * Protocol step 3: the newest entry created before ours, or `undefined` when ours is first.
   * @throws LockLostError when our own key is gone (session expired, or deleted by hand).
   */
  async predecessor(): Promise<Predecessor | undefined> {
    const rev = this.mustHaveRevision()
    const res = await this.limit.run(() =>
      this.client
        .getAll()
        .prefix(this.queuePrefix)
        .maxCreateRevision(rev.toString())
        .sort('Create', 'Descend')
        .limit(3) // ours, the predecessor, and whether anything is older still
        .options(callOptions())
        .exec(),
    )
    const [mine, before, older] = res.kvs
    if (mine === undefined || createRevision(mine) !== rev) throw new LockLostError(this.key)
    if (before === undefined) return undefined
    return {
      key: before.key.toString(),
      revision: BigInt(res.header.revision),
      last: older === undefined,
    }
  }

  /**
   * Waits until `predecessor` is deleted (`'deleted'`), or its watch is interrupted
   * (`'interrupted'`: the caller looks again). Rejects with `signal.reason` when the signal aborts.
   */
  waitForDelete(predecessor: Predecessor, signal: AbortSignal): Promise<'deleted' | 'interrupted'> {
    return deletedOrInterrupted(this.client, predecessor.key, predecessor.revision + 1n, signal)
  }

  /**
   * Protocol steps 5 and 6: deletes our key if it is still the one we created, retrying until etcd
   * answers or the session ends (its keys then go with the lease). Waits for an enqueue still in
   * flight, so a request that gives up mid-enqueue leaves no key behind. Never rejects.
   */
  async release(): Promise<void> {
    if (this.enqueued === undefined) return
    // An enqueue answered after the session ended needs no delete: the lease took its key.
    const rev = await abortable(this.enqueued, this.session.signal).catch(() => undefined)
    // When the enqueue's answer was lost, the key (if any) is still ours: only one request of
    // this process uses this session's key for this upload at a time (the local queue).
    await retryWhileSessionLives(
      this.session,
      () =>
        this.limit.run<unknown>(() =>
          rev === undefined
            ? this.client.delete().key(this.key).options(callOptions()).exec()
            : this.client
                .if(this.key, 'Create', '==', rev.toString())
                .then(this.client.delete().key(this.key))
                .options(callOptions())
                .commit(),
        ),
      `delete ${this.key}`,
    )
  }

  private mustHaveRevision(): bigint {
    if (this.rev === undefined) throw new Error(`${this.key} is not enqueued yet`)
    return this.rev
  }
}

function createRevision(kv: IKeyValue | undefined): bigint {
  if (kv === undefined) throw new Error('etcd answered without the expected key')
  return BigInt(kv.create_revision)
}
