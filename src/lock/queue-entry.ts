import { type IKeyValue, type IRangeRequest, type ITxnResponse, type Namespace, Range } from 'etcd3'
import { LockLostError } from '../errors.js'
import { lockCallOptions, retryWhileSessionLives } from '../session/etcd-calls.js'
import { readBatchOf } from '../session/read-batch.js'
import type { Session } from '../session/session.js'
import { txnBatchOf } from '../session/txn-batch.js'
import { abortable, type StopSignal } from '../util/abort.js'
import type { InFlightLimit } from '../util/in-flight-limit.js'
import { type Predecessor, type TurnListener, TurnWait } from './turn-wait.js'

/**
 * This session's entry in the etcd queue of one upload: the key `P/<id>/<leaseHex>`, exactly as
 * etcd's `concurrency.Mutex` writes it, so `etcdctl lock` and Go clients queue with us. The entry
 * with the oldest create revision holds the lock.
 */
export class QueueEntry {
  /** The predecessor the enqueue txn saw, for the first wait (no read needed for it). */
  private seenAtEnqueue: Predecessor | undefined
  /** The enqueue's txn while it is in flight: what a release waits for. */
  private enqueuing: Promise<ITxnResponse> | undefined
  /** An enqueue was sent: our key may be in etcd (a release deletes it). */
  private sent = false
  private rev: bigint | undefined

  constructor(
    private readonly client: Namespace,
    readonly queuePrefix: string,
    readonly session: Session,
    private readonly limit: InFlightLimit,
  ) {}

  /** Our key, `P/<id>/<leaseHex>` (made when asked: not kept by every held lock and waiter). */
  get key(): string {
    return this.queuePrefix + this.session.leaseHex
  }

  /**
   * Our key as etcd sees it (with the client's namespace), made when a call needs it, not kept:
   * a held lock or a waiter keeps only what it needs later. The two txns of every lock cycle go
   * to the KV service directly (in batches): the query builders cost a cycle about 20% more
   * client CPU (bench/throughput).
   */
  private keyBytes(): Buffer {
    return Buffer.concat([this.client.prefix, Buffer.from(this.key)])
  }

  /** Create revision of our key: our place in the queue. */
  get revision(): bigint | undefined {
    return this.rev
  }

  /**
   * Protocol step 2, one txn: create our key on the session lease unless it exists, and read the
   * queue's first entry. Safe to repeat. Resolves `true` when we hold the lock already. When the
   * txn created our key, it also read the entry just before ours: the first wait needs no read
   * (see {@link predecessor}), so a waiter starts watching one round trip sooner.
   */
  async enqueue(): Promise<boolean> {
    const key = this.keyBytes()
    const { start, end } = this.queueRange()
    // Created: ours is the newest key, so the newest three (ours, the predecessor, whether
    // anything is older still) tell whether ours is first and who is just before it.
    const newestEntries: IRangeRequest = {
      key: start,
      range_end: end,
      sort_order: 'Descend',
      sort_target: 'Create',
      limit: 3,
    }
    const firstEntry: IRangeRequest = {
      key: start,
      range_end: end,
      sort_order: 'Ascend',
      sort_target: 'Create',
      limit: 1,
    }
    // In a batch with the other writes of this turn: its own compare and branch, one call.
    const txn = txnBatchOf(this.client).txn(
      {
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        // Not found: read ours and the first entry.
        success: [
          { request_put: { key, value: EMPTY, lease: this.session.leaseId } },
          { request_range: newestEntries },
        ],
        failure: [{ request_range: { key } }, { request_range: firstEntry }],
      },
      start.toString(LATIN1),
    )
    this.enqueuing = txn
    this.sent = true
    let res: ITxnResponse
    try {
      res = await txn
    } finally {
      if (this.enqueuing === txn) this.enqueuing = undefined
    }
    const rev = enqueuedRevision(res)
    this.rev = rev
    this.seenAtEnqueue = undefined
    const found = res.responses[1]?.response_range?.kvs ?? []
    if (!res.succeeded) {
      // Our key was there already (a retry after a lost answer): it may be old, so whether it
      // is first says nothing about when the hold began.
      const owner = found[0]
      return owner !== undefined && createRevision(owner) === rev
    }
    // [ours, the one before it, anything older]
    const [, before, older] = found
    if (before === undefined) return true
    this.seenAtEnqueue = {
      key: before.key.subarray(this.client.prefix.length).toString(),
      revision: rev,
      last: older === undefined,
    }
    return false
  }

  /**
   * Protocol step 3: the newest entry created before ours, or `undefined` when ours is first.
   * The first call after an enqueue txn that created our key answers from that txn (which saw
   * our key, just created); every later call reads etcd.
   * @throws LockLostError when our own key is gone (session expired, or deleted by hand).
   */
  async predecessor(): Promise<Predecessor | undefined> {
    const rev = this.mustHaveRevision()
    // Right after the txn that created our key: it saw the queue as this read would.
    const seen = this.seenAtEnqueue
    this.seenAtEnqueue = undefined
    if (seen !== undefined) return seen
    const { start, end } = this.queueRange()
    const res = await this.limit.run(() =>
      readBatchOf(this.client).range({
        key: start,
        range_end: end,
        max_create_revision: rev.toString(),
        sort_order: 'Descend',
        sort_target: 'Create',
        limit: 3, // ours, the predecessor, and whether anything is older still
      }),
    )
    const [mine, before, older] = res.kvs
    if (mine === undefined || createRevision(mine) !== rev || !this.keyBytes().equals(mine.key)) {
      throw new LockLostError(this.key)
    }
    if (before === undefined) return undefined
    return {
      key: before.key.subarray(this.client.prefix.length).toString(),
      revision: BigInt(res.header.revision),
      last: older === undefined,
    }
  }

  /**
   * Waits for `predecessor`'s delete (see {@link TurnWait}). Resolves `'first'` when that makes
   * our entry the first one and our own key was still there then, or `'look-again'` when the
   * caller must read the queue (an older entry remains, or the watch was interrupted). Rejects
   * with `signal.reason` when the signal aborts.
   * @throws LockLostError when our own key is deleted first (by hand, or its lease revoked):
   *   holding on the predecessor's delete alone would make two holders.
   */
  waitForTurn(predecessor: Predecessor, signal: StopSignal): Promise<'first' | 'look-again'> {
    return new Promise((resolve, reject) => {
      this.waitForTurnThen(predecessor, signal, { turnCame: resolve, turnFailed: reject })
    })
  }

  /**
   * {@link waitForTurn}, telling `listener` instead of settling a promise: a lock request hears
   * it itself, and keeps no promise, closures or suspended function while it waits.
   */
  waitForTurnThen(predecessor: Predecessor, signal: StopSignal, listener: TurnListener): void {
    new TurnWait(this.client, this, predecessor, signal, listener).start()
  }

  /**
   * Protocol steps 5 and 6: deletes our key if it is still the one we created, retrying until etcd
   * answers or the session ends (its keys then go with the lease). Waits for an enqueue still in
   * flight, so a request that gives up mid-enqueue leaves no key behind. Never rejects.
   */
  async release(): Promise<void> {
    if (!this.sent) return
    // An enqueue answered after the session ended needs no delete: the lease took its key.
    const rev =
      this.enqueuing === undefined
        ? this.rev
        : await abortable(this.enqueuing, this.session.signal)
            .then(enqueuedRevision)
            .catch(() => undefined)
    // When the enqueue's answer was lost, the key (if any) is still ours: only one request of
    // this process uses this session's key for this upload at a time (the local queue). Read its
    // create revision first and delete only that key: an attempt of ours that etcd applies late
    // must not delete the key of the next request of this process.
    await retryWhileSessionLives(
      this.session,
      async () => {
        const known = rev ?? (await this.limit.run(() => this.currentRevision()))
        if (known !== undefined) await this.deleteIfCreatedAt(known)
      },
      `delete ${this.key}`,
    )
  }

  /** Whether our key is in etcd now with the create revision we hold it by. */
  async stillOurs(): Promise<boolean> {
    const rev = this.rev
    return rev !== undefined && (await this.currentRevision()) === rev
  }

  /** Create revision of our key in etcd now, `undefined` when there is none. */
  private async currentRevision(): Promise<bigint | undefined> {
    const res = await this.client.kv.range({ key: this.keyBytes() }, lockCallOptions())
    const mine = res.kvs[0]
    return mine === undefined ? undefined : createRevision(mine)
  }

  /** Deletes our key if its create revision is `rev`: never a newer key of the same name. */
  private async deleteIfCreatedAt(rev: bigint): Promise<void> {
    const key = this.keyBytes()
    await txnBatchOf(this.client).txn(
      {
        compare: [
          {
            key,
            target: 'Create',
            result: 'Equal',
            create_revision: rev.toString(),
          },
        ],
        success: [{ request_delete_range: { key } }],
        failure: [],
      },
      this.queueRange().start.toString(LATIN1),
    )
  }

  /**
   * The queue's keys as etcd has them (with the client's namespace). Built per call, not kept:
   * a held lock or a waiter keeps only what it needs later.
   */
  private queueRange(): { start: Buffer; end: Buffer } {
    const start = Buffer.concat([this.client.prefix, Buffer.from(this.queuePrefix)])
    return { start, end: Range.prefix(start).end }
  }

  private mustHaveRevision(): bigint {
    if (this.rev === undefined) throw new Error(`${this.key} is not enqueued yet`)
    return this.rev
  }
}

/** The create revision of our key, from the enqueue txn's answer. */
function enqueuedRevision(res: ITxnResponse): bigint {
  return res.succeeded
    ? BigInt(res.header.revision)
    : createRevision(res.responses[0]?.response_range?.kvs[0])
}

function createRevision(kv: IKeyValue | undefined): bigint {
  if (kv === undefined) throw new Error('etcd answered without the expected key')
  return BigInt(kv.create_revision)
}

const EMPTY = Buffer.alloc(0)

/** Byte for byte: the queue's whole prefix as a string, for the txn batch's one write per queue. */
const LATIN1 = 'latin1'
