import {
  EtcdPermissionDeniedError,
  type IRangeRequest,
  type IRangeResponse,
  KVClient,
  type Namespace,
} from 'etcd3'
import { perPool } from '../util/per-pool.js'
import { lockCallOptions } from './etcd-calls.js'

/** Most reads in one txn: etcd's default `--max-txn-ops` is 128. */
export const READS_PER_TXN = 128

interface PendingRead {
  request: IRangeRequest
  resolve(response: IRangeResponse): void
  reject(error: unknown): void
}

/** The read batch of `client`'s connection pool (one per `Etcd3`, shared by its namespaces). */
export const readBatchOf: (client: Namespace) => ReadBatch = perPool(
  (pool) => new ReadBatch(new KVClient(pool)),
)

/**
 * Range reads made in the same turn of the event loop go to etcd as one read-only txn (up to
 * {@link READS_PER_TXN} ranges), not one call each: a burst of lock cycles reads the queue of each
 * upload once (a waiter its predecessor, a holder its contention watch's start), and a call costs
 * the client far more CPU than a range in a txn. etcd serves such a txn as it would each read:
 * linearizable unless every range is serializable, each range at its own revision. A txn that
 * fails for one range (its revision compacted or ahead of the member, its permission) is retried
 * as one call per read, so that read fails alone; any other failure is every read's.
 *
 * Keys are whole keys (with the client's namespace), as etcd has them, and so are the answers'.
 */
export class ReadBatch {
  private pending: PendingRead[] = []
  private scheduled = false
  private perTxn = READS_PER_TXN

  constructor(private readonly kv: KVClient) {}

  /** Reads `request` in the next batch; the answer carries the txn's header. */
  range(request: IRangeRequest): Promise<IRangeResponse> {
    return new Promise((resolve, reject) => {
      this.pending.push({ request, resolve, reject })
      if (this.pending.length >= this.perTxn) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => {
          this.scheduled = false
          this.flush()
        })
      }
    })
  }

  private flush(): void {
    const reads = this.pending
    if (reads.length === 0) return
    this.pending = []
    if (reads.length === 1) {
      this.one(reads[0] as PendingRead)
      return
    }
    this.kv
      .txn(
        { compare: [], success: reads.map((read) => ({ request_range: read.request })) },
        lockCallOptions(),
      )
      .then(
        (res) => {
          reads.forEach((read, i) => {
            const answer = res.responses[i]?.response_range
            if (answer) read.resolve({ ...answer, header: res.header })
            else this.one(read)
          })
        },
        (error: unknown) => {
          const why = String(error)
          // A member run with a --max-txn-ops below ours: smaller txns from now on.
          if (why.includes('too many operations')) {
            this.perTxn = Math.min(this.perTxn, Math.max(1, Math.floor(reads.length / 2)))
          }
          // That, one range's revision (compacted, or ahead of this member) or one range's
          // permission (lockers of several prefixes on one client): each read on its own.
          // Anything else (a deadline, no leader) is every read's error.
          if (
            error instanceof EtcdPermissionDeniedError ||
            /required revision|too many operations/.test(why)
          ) {
            for (const read of reads) this.one(read)
          } else {
            for (const read of reads) read.reject(error)
          }
        },
      )
  }

  private one(read: PendingRead): void {
    this.kv.range(read.request, lockCallOptions()).then(read.resolve, read.reject)
  }
}
