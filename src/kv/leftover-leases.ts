import type { IKeyValue, Namespace } from 'etcd3'
import { CALL_TIMEOUT_MS, callOptions, isRetryable } from '../session/etcd-calls.js'
import type { Session } from '../session/session.js'
import { log } from '../util/log.js'

// After a failed call's deadline, how much longer a late-applied txn is waited for.
const LEFTOVER_CHECK_SLACK_MS = 1_000
// Between checks that etcd did not answer: short, so a writer elsewhere waits little once etcd
// answers again.
const RECHECK_MS = [250, 500, 1_000]

/** A check pending for one key on one session. */
interface Pending {
  /** Not before this time (`Date.now()`): the last failed call's deadline plus the slack. */
  notBefore: number
}

/**
 * Leasing keys of ours that no cache serves: a lease-and-read (or a lease-on-write) that etcd
 * applied but whose answer was lost. Nobody would answer a writer's `REVOKE` on such a key, and
 * that writer would wait for our whole TTL, round after round. Each is checked for, and deleted,
 * until etcd answers or the session is lost (its keys then go with it).
 */
export class LeftoverLeases {
  /** Checks pending, by lease and key: at most one per key and session. */
  private readonly pending = new Map<string, Pending>()

  constructor(
    private readonly client: Namespace,
    private readonly leaseKey: (key: string) => string,
    /** Whether a cache of any store on this session serves `key` (or is leasing it now). */
    private readonly cachedOnSession: (key: string) => boolean,
  ) {}

  /** A leasing key on `session` that no store of this process serves or is leasing. */
  isLeftover(key: string, leasing: IKeyValue, session: Session): boolean {
    return leasing.lease === session.leaseId && !this.cachedOnSession(key)
  }

  /**
   * A call that may have leased `key` to `session` failed with its outcome unknown. Once its
   * deadline has surely passed (and that of any later such call): if `key`'s leasing key is a
   * leftover of ours, deletes that very key (guarded by its create revision, so a lease taken
   * since by a store of this process is never touched). Checked again, backing off, until etcd
   * answers the read and the delete, or `session` is lost.
   */
  checkLater(key: string, session: Session): void {
    const notBefore = Date.now() + CALL_TIMEOUT_MS + LEFTOVER_CHECK_SLACK_MS
    const id = `${session.leaseId}/${key}`
    const known = this.pending.get(id)
    if (known !== undefined) {
      known.notBefore = notBefore
      return
    }
    const pending: Pending = { notBefore }
    this.pending.set(id, pending)
    const check = async (attempt: number): Promise<void> => {
      if (session.isLost) {
        this.pending.delete(id)
        return
      }
      const early = pending.notBefore - Date.now()
      if (early > 0) {
        setTimeout(() => void check(attempt), early).unref()
        return
      }
      try {
        await this.deleteIfLeftover(key, session)
        this.pending.delete(id)
      } catch (error) {
        if (!isRetryable(error)) {
          log.locker('kv %s: leftover check refused (%s), not tried again', key, error)
          this.pending.delete(id)
          return
        }
        const wait = RECHECK_MS[Math.min(attempt, RECHECK_MS.length - 1)] ?? 1_000
        log.locker('kv %s: leftover check failed (%s), again in %d ms', key, error, wait)
        setTimeout(() => void check(attempt + 1), wait * (0.75 + Math.random() / 2)).unref()
      }
    }
    setTimeout(() => void check(0), CALL_TIMEOUT_MS + LEFTOVER_CHECK_SLACK_MS).unref()
  }

  private async deleteIfLeftover(key: string, session: Session): Promise<void> {
    const leaseKey = this.leaseKey(key)
    const leasing = (await this.client.get(leaseKey).options(callOptions()).exec()).kvs[0]
    if (leasing === undefined || !this.isLeftover(key, leasing, session)) return
    await this.client
      .if(leaseKey, 'Create', '==', leasing.create_revision)
      .then(this.client.delete().key(leaseKey))
      .options(callOptions())
      .commit()
    log.locker('kv %s: leftover leasing key deleted', key)
  }
}
