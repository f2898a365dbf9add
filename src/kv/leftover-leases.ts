import type { IKeyValue, Namespace } from 'etcd3'
import { CALL_TIMEOUT_MS, callOptions } from '../session/etcd-calls.js'
import type { Session } from '../session/session.js'
import { log } from '../util/log.js'

// After a lease-and-read's deadline, how much longer a late-applied txn is waited for.
const LEFTOVER_CHECK_SLACK_MS = 1_000
// Between checks that etcd did not answer: short, so a writer elsewhere waits little once etcd
// answers again.
const RECHECK_MS = [250, 500, 1_000]

/**
 * Leasing keys of ours that no cache serves: a lease-and-read (or a lease-on-write) that etcd
 * applied but whose answer was lost. Nobody would answer a writer's `REVOKE` on such a key, and
 * that writer would wait for our whole TTL, round after round. Each is checked for, and deleted,
 * until etcd answers or the session is lost (its keys then go with it).
 */
export class LeftoverLeases {
  /** Keys with a check pending: at most one per key. */
  private readonly pending = new Set<string>()

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
   * Once the failed call's deadline has surely passed: if `key`'s leasing key is a leftover of
   * ours, deletes that very key (guarded by its create revision, so a lease taken since by a
   * store of this process is never touched). Checked again, backing off, until etcd answers
   * both the read and the delete, or `session` is lost.
   */
  checkLater(key: string, session: Session): void {
    if (this.pending.has(key)) return
    this.pending.add(key)
    const check = async (attempt: number): Promise<void> => {
      if (session.isLost) {
        this.pending.delete(key)
        return
      }
      try {
        await this.deleteIfLeftover(key, session)
        this.pending.delete(key)
      } catch (error) {
        const wait = RECHECK_MS[Math.min(attempt, RECHECK_MS.length - 1)]
        log.locker('kv %s: leftover check failed (%s), again in %d ms', key, error, wait)
        setTimeout(() => void check(attempt + 1), wait).unref()
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
