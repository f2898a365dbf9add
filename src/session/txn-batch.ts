import {
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  type IRequestOp,
  type ITxnRequest,
  type ITxnResponse,
  KVClient,
  type Namespace,
} from 'etcd3'
import { Fifo } from '../util/fifo.js'
import { perPool } from '../util/per-pool.js'
import { lockCallOptions } from './etcd-calls.js'

/**
 * Most txns nested in one batch. etcd counts a txn's ops against `--max-txn-ops` (128 by
 * default) at each level, a nested txn's against what its parent leaves: 48 nested txns, with up
 * to 96 checks beside them (see {@link TxnBatch}), leave 32 for each nested txn's own.
 */
export const TXNS_PER_BATCH = 48

/** Most checks in a batch's unused branch: two per lock-cycle txn. */
const CHECKS_PER_BATCH = 96

/**
 * Most bytes of keys and values in one batch, its checks counted. etcd refuses a request over
 * `--max-request-bytes` (1.5 MiB by default): a batch stays well under it, and a txn larger than
 * this goes alone, as it would unbatched.
 */
const BYTES_PER_BATCH = 256 * 1024

/**
 * Batch calls in flight at once; txns made meanwhile wait for one to end and go in the next. A
 * burst of thousands of lock() calls queues here, not inside etcd past the calls' deadlines: a
 * txn's deadline starts when its batch is sent.
 */
export const BATCHES_IN_FLIGHT = 4

interface PendingTxn {
  request: ITxnRequest
  queue: string
  checks: IRequestOp[]
  bytes: number
  /** Sent as a call of its own: its batch was refused for one txn's sake. */
  alone: boolean
  resolve(response: ITxnResponse): void
  reject(error: unknown): void
}

/** The txn batch of `client`'s connection pool (one per `Etcd3`, shared by its namespaces). */
export const txnBatchOf: (client: Namespace) => TxnBatch = perPool(
  (pool) => new TxnBatch(new KVClient(pool)),
)

/**
 * The lock cycle's writes (an enqueue, a delete) made in the same turn of the event loop go to
 * etcd as one txn whose success branch is their txns, nested (etcd >= 3.3), not one call each: one
 * call and one raft proposal for up to {@link TXNS_PER_BATCH} of them, where a call costs the
 * client far more CPU than a txn in a batch. etcd evaluates each nested txn's compares on the
 * state before the batch and runs its branch in turn (a range sees what the txns before it in
 * the batch wrote), all at the batch's one revision. A write with nothing in flight and nothing
 * waiting is sent at once, as it is.
 *
 * etcd before 3.4.42 / 3.5.28 checks a user's permissions, and before 3.5.33 the space quota,
 * on a txn's own operations only, not on those of the txns nested in it. So every batch also
 * carries, in its failure branch (never taken: the batch has no compare), each key and range
 * its nested txns touch, as a put, a range or a delete: etcd checks those as it would the writes
 * sent alone, and refuses the batch if one is not permitted or the backend is out of space.
 *
 * A batch etcd refuses for one txn's sake (a permission, a lease it does not know, one key written
 * twice, no space: deletes still pass) is sent again a call per txn, so that txn fails alone; a
 * member with a lower `--max-txn-ops` or `--max-request-bytes` gets smaller batches from then on.
 * Any other failure (a deadline, no leader) is every txn's, each of which its caller retries as it
 * would its own call.
 *
 * Keys are whole keys (with the client's namespace), as etcd has them, and so are the answers'.
 */
export class TxnBatch {
  private readonly pending = new Fifo<PendingTxn>()
  /** Txns that go before `pending`: left out of a batch for their queue, or refused with one. */
  private first: PendingTxn[] = []
  private scheduled = false
  private inFlight = 0
  private perBatch = TXNS_PER_BATCH
  private bytesPerBatch = BYTES_PER_BATCH

  constructor(private readonly kv: KVClient) {}

  /**
   * Sends `request` in the next batch that has no other txn of `queue` (the queue's whole
   * prefix, as etcd has it); the answer carries the batch's header. Keys a batch creates share
   * its revision, and a queue is ordered by its keys' create revisions: two enqueues of one
   * queue (two lockers of one client) must not tie.
   */
  txn(request: ITxnRequest, queue: string): Promise<ITxnResponse> {
    return new Promise((resolve, reject) => {
      // Nothing in flight and nothing waiting: a write alone (one lock cycle) goes at once, not
      // a turn later. The writes that follow it in this turn go together at its end.
      const idle = this.inFlight === 0 && this.waiting() === 0
      const checks = checksOf(request)
      const bytes = sizeOfTxn(request) + checks.reduce((sum, check) => sum + sizeOf(check), 0)
      this.pending.push({ request, queue, checks, bytes, alone: false, resolve, reject })
      if ((idle || this.waiting() >= this.perBatch) && this.inFlight < BATCHES_IN_FLIGHT) {
        this.send()
      } else this.schedule()
    })
  }

  private waiting(): number {
    return this.first.length + this.pending.length
  }

  /** Sends what waits at the end of this turn: the txns its callbacks make join the batch. */
  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      while (this.waiting() > 0 && this.inFlight < BATCHES_IN_FLIGHT) this.send()
    })
  }

  private send(): void {
    const txns = this.nextBatch()
    this.inFlight++
    const one = txns.length === 1 ? (txns[0] as PendingTxn) : undefined
    const sent = one
      ? // As it is: what etcd answers is this txn's alone.
        this.kv.txn(one.request, lockCallOptions()).then(one.resolve, one.reject)
      : this.kv
          .txn(
            {
              compare: [],
              success: txns.map(({ request }) => ({ request_txn: request })),
              failure: txns.flatMap(({ checks }) => checks),
            },
            lockCallOptions(),
          )
          .then(
            (res) => {
              txns.forEach((txn, i) => {
                const answer = res.responses[i]?.response_txn
                if (answer) {
                  txn.resolve({
                    header: res.header,
                    succeeded: answer.succeeded,
                    responses: answer.responses,
                  })
                } else txn.reject(new Error('etcd answered a batch without this txn'))
              })
            },
            (error: unknown) => this.refused(txns, error),
          )
    void sent.finally(() => {
      this.inFlight--
      if (this.waiting() > 0) this.schedule()
    })
  }

  /**
   * The next waiting txns in order, as many as fit in a batch, one per queue; the others wait
   * on, first. A txn to be sent alone, or too large to share a batch, goes in one of its own.
   */
  private nextBatch(): PendingTxn[] {
    const batch: PendingTxn[] = []
    const queues = new Set<string>()
    const left: PendingTxn[] = []
    let checks = 0
    let bytes = 0
    let full = false
    const take = (txn: PendingTxn) => {
      const single = txn.alone || txn.bytes > this.bytesPerBatch
      const fits =
        batch.length === 0 ||
        (!single &&
          checks + txn.checks.length <= CHECKS_PER_BATCH &&
          bytes + txn.bytes <= this.bytesPerBatch)
      if (full || queues.has(txn.queue) || !fits) {
        // Full once a txn does not fit: the rest waits, unlooked at, for the next batch.
        if (!fits) full = true
        left.push(txn)
        return
      }
      queues.add(txn.queue)
      batch.push(txn)
      checks += txn.checks.length
      bytes += txn.bytes
      full = single || batch.length === this.perBatch
    }
    for (const txn of this.first) take(txn)
    while (!full && this.pending.length > 0) take(this.pending.shift() as PendingTxn)
    this.first = left
    return batch
  }

  /** What a batch of several txns that etcd refused becomes. */
  private refused(txns: PendingTxn[], error: unknown): void {
    const why = String(error)
    if (why.includes('too many operations')) {
      // A member run with a --max-txn-ops below ours: smaller batches from now on, this one too.
      this.perBatch = Math.min(this.perBatch, Math.max(1, Math.floor(txns.length / 2)))
      this.first.unshift(...txns)
    } else if (/larger than max|request is too large/.test(why)) {
      // A member run with a --max-request-bytes below ours: the same, in bytes. (etcd's "no
      // space" and "too many requests" are RESOURCE_EXHAUSTED too, and not about the size.)
      const bytes = txns.reduce((sum, txn) => sum + txn.bytes, 0)
      this.bytesPerBatch = Math.min(this.bytesPerBatch, Math.max(1, Math.floor(bytes / 2)))
      this.first.unshift(...txns)
    } else if (
      // One txn's own: each on its own, so that it fails alone (no space: deletes still pass).
      error instanceof EtcdPermissionDeniedError ||
      error instanceof EtcdLeaseInvalidError ||
      /duplicate key|space exceeded/.test(why)
    ) {
      for (const txn of txns) txn.alone = true
      this.first.unshift(...txns)
    } else {
      for (const txn of txns) txn.reject(error)
    }
  }
}

/**
 * What `request` touches, in a form etcd checks as it would the request itself (permissions,
 * space quota) when it sits in a batch's unused branch: each put as a put of the same key and
 * value, each delete as a delete of the same range, each read and each compare as a read of its
 * range, leaving out a read within another read.
 */
export function checksOf(request: ITxnRequest): IRequestOp[] {
  const reads: Array<{ key: Buffer; end: Buffer | undefined }> = []
  const writes: IRequestOp[] = []
  const puts: Buffer[] = []
  const read = (key: KeyBytes, end: KeyBytes) => {
    if (key === undefined) return
    if (reads.some((other) => within(key, end, other.key, other.end))) return
    // A wider read found later replaces the ones within it.
    for (let i = reads.length - 1; i >= 0; i--) {
      const other = reads[i] as { key: Buffer; end: Buffer | undefined }
      if (within(other.key, other.end, key, end)) reads.splice(i, 1)
    }
    reads.push({ key, end })
  }
  for (const compare of request.compare ?? []) read(compare.key, compare.range_end)
  for (const op of [...(request.success ?? []), ...(request.failure ?? [])]) {
    const { request_put: put, request_range: range, request_delete_range: del } = op
    if (put) {
      // Once per key: a put in each branch would be the same key twice in the batch's.
      if (!puts.some((key) => put.key !== undefined && key.equals(put.key))) {
        if (put.key !== undefined) puts.push(put.key)
        writes.push({ request_put: { key: put.key, value: put.value, prev_kv: put.prev_kv } })
      }
    } else if (range) read(range.key, range.range_end)
    else if (del) {
      writes.push({
        request_delete_range: { key: del.key, range_end: del.range_end, prev_kv: del.prev_kv },
      })
    } else throw new Error('TxnBatch: only puts, ranges and deletes are batched')
  }
  return [
    ...writes,
    ...reads.map(({ key, end }) => ({ request_range: { key, range_end: end, keys_only: true } })),
  ]
}

type KeyBytes = Buffer | undefined

/**
 * Whether etcd's range `[key, end)` lies within `[outerKey, outerEnd)` (an absent end: the one
 * key; `\0`: every key from there on).
 */
function within(key: Buffer, end: KeyBytes, outerKey: Buffer, outerEnd: KeyBytes): boolean {
  if (Buffer.compare(key, outerKey) < 0) return false
  if (outerEnd === undefined || outerEnd.length === 0) {
    return (end === undefined || end.length === 0) && key.equals(outerKey)
  }
  const toEnd = (value: Buffer) => value.length === 1 && value[0] === 0
  if (toEnd(outerEnd)) return true
  if (end !== undefined && end.length > 0) return !toEnd(end) && Buffer.compare(end, outerEnd) <= 0
  return Buffer.compare(key, outerEnd) < 0
}

/** Bytes of the keys, range ends and values of `op`, and a little for the rest of it. */
function sizeOf(op: IRequestOp): number {
  const length = (value: KeyBytes) => (value === undefined ? 0 : value.length)
  const { request_put: put, request_range: range, request_delete_range: del } = op
  const bytes = put
    ? length(put.key) + length(put.value)
    : length(range?.key ?? del?.key) + length(range?.range_end ?? del?.range_end)
  return bytes + 32
}

/** Bytes of `request` as {@link sizeOf} counts them, its compares' keys too. */
function sizeOfTxn(request: ITxnRequest): number {
  let bytes = 0
  for (const compare of request.compare ?? []) bytes += (compare.key?.length ?? 0) + 32
  for (const op of [...(request.success ?? []), ...(request.failure ?? [])]) bytes += sizeOf(op)
  return bytes
}
