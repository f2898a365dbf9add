import {
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  type ITxnRequest,
  type ITxnResponse,
  KVClient,
  type Namespace,
} from 'etcd3'
import { Fifo } from '../util/fifo.js'
import { perPool } from '../util/per-pool.js'
import { lockCallOptions } from './etcd-calls.js'

/**
 * Most txns nested in one. etcd counts a txn's ops against `--max-txn-ops` (128 by default) at
 * each level, a nested txn's against what its parent leaves: 64 nested txns of up to 2 ops each
 * leave room to spare.
 */
export const TXNS_PER_BATCH = 64

/**
 * Batch calls in flight at once; txns made meanwhile wait for one to end and go in the next. A
 * burst of thousands of lock() calls queues here, not inside etcd past the calls' deadlines: a
 * txn's deadline starts when its batch is sent.
 */
export const BATCHES_IN_FLIGHT = 4

interface PendingTxn {
  request: ITxnRequest
  queue: string
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
 * client far more CPU than a txn in a batch. etcd applies each nested txn as it would alone (its
 * own compares, its own branch), all at the batch's one revision. A txn alone is sent as it is.
 *
 * A batch etcd refuses for one of its txns (a lease it does not know, a permission, the same key
 * written twice) is sent again as one call per txn, so that txn fails alone; a member with a lower
 * `--max-txn-ops` gets smaller batches from then on. Any other failure (a deadline, no leader) is
 * every txn's, each of which its caller retries as it would its own call.
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

  constructor(private readonly kv: KVClient) {}

  /**
   * Sends `request` in the next batch that has no other txn of `queue`; the answer carries the
   * batch's header. Keys a batch creates share its revision, and a queue is ordered by its keys'
   * create revisions: two enqueues of one queue (two lockers of one client) must not tie.
   */
  txn(request: ITxnRequest, queue: string): Promise<ITxnResponse> {
    return new Promise((resolve, reject) => {
      // Nothing in flight and nothing waiting: a write alone (one lock cycle) goes at once, not
      // a turn later. The writes that follow it in this turn go together at its end.
      const alone = this.inFlight === 0 && this.waiting() === 0
      this.pending.push({ request, queue, resolve, reject })
      if ((alone || this.waiting() >= this.perBatch) && this.inFlight < BATCHES_IN_FLIGHT) {
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
    const sent =
      txns.length === 1
        ? this.alone(txns[0] as PendingTxn)
        : this.kv
            .txn(
              {
                compare: [],
                success: txns.map(({ request }) => ({ request_txn: request })),
                failure: [],
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
                  } else this.alone(txn)
                })
              },
              (error: unknown) => this.refused(txns, error),
            )
    void sent.finally(() => {
      this.inFlight--
      if (this.waiting() > 0) this.schedule()
    })
  }

  /** The next waiting txns in order, up to a batch, one per queue; the others wait on, first. */
  private nextBatch(): PendingTxn[] {
    const batch: PendingTxn[] = []
    const queues = new Set<string>()
    const left: PendingTxn[] = []
    const take = (txn: PendingTxn) => {
      if (batch.length === this.perBatch || queues.has(txn.queue)) left.push(txn)
      else {
        queues.add(txn.queue)
        batch.push(txn)
      }
    }
    for (const txn of this.first) take(txn)
    while (batch.length < this.perBatch && this.pending.length > 0) {
      take(this.pending.shift() as PendingTxn)
    }
    this.first = left
    return batch
  }

  private refused(txns: PendingTxn[], error: unknown): void {
    const why = String(error)
    if (why.includes('too many operations')) {
      // A member run with a --max-txn-ops below ours: smaller batches from now on, this one too.
      this.perBatch = Math.min(this.perBatch, Math.max(1, Math.floor(txns.length / 2)))
      this.first.unshift(...txns)
    } else if (
      // One txn's own: each on its own, so that it fails alone.
      error instanceof EtcdPermissionDeniedError ||
      error instanceof EtcdLeaseInvalidError ||
      /duplicate key|too large/.test(why)
    ) {
      for (const txn of txns) void this.alone(txn)
    } else {
      for (const txn of txns) txn.reject(error)
    }
  }

  private alone(txn: PendingTxn): Promise<void> {
    return this.kv.txn(txn.request, lockCallOptions()).then(txn.resolve, txn.reject)
  }
}
