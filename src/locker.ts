import { EventEmitter, setMaxListeners } from 'node:events'
import type { Locker } from '@tus/utils'
import type { Namespace } from 'etcd3'
import { LockerClosedError } from './errors.js'
import type { LockerEvents } from './events.js'
import { lockQueuePrefix } from './keys.js'
import { LocalQueue } from './local-queue.js'
import { Etcd3Lock, type LockContext } from './lock.js'
import { log } from './log.js'
import { type LockerOptions, type ResolvedLockerOptions, resolveLockerOptions } from './options.js'
import { Session } from './session.js'

/**
 * Upload locks for `@tus/server` on etcd: pass it as the server's `locker`.
 *
 * One locker holds one etcd session (a lease kept alive every TTL/3), granted on first use.
 * Every lock is a key on that session, queued like etcd's `concurrency.Mutex`, so lockers in
 * other processes, `etcdctl lock` and Go clients exclude each other on the same prefix. It emits
 * {@link LockerEvents} (`sessionLost`, `lockAcquired`, ...) for logs and metrics. Call
 * {@link close} on shutdown: it revokes the session and every lock of this process is free at
 * once instead of after the TTL. The etcd client stays yours to close.
 *
 * @example
 * ```ts
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' })
 * const locker = new Etcd3Locker(client, { ttl: 60, prefix: '/tusd' })
 * const server = new Server({ path: '/files', locker, datastore })
 * process.on('SIGTERM', () => locker.close())
 * ```
 */
export class Etcd3Locker extends EventEmitter<LockerEvents> implements Locker {
  /** The options in force, validated, with defaults filled in. */
  readonly options: Readonly<ResolvedLockerOptions>
  private readonly closing = new AbortController()
  private readonly queues = new Map<string, LocalQueue<Etcd3Lock>>()
  private readonly context: LockContext
  private current: Session | undefined
  private granting: Promise<Session> | undefined
  private closed: Promise<void> | undefined

  /**
   * @param client An `Etcd3` client (or a `Namespace` of one). It is not closed by the locker.
   * @param options See {@link LockerOptions}.
   * @throws TypeError or RangeError naming a bad option.
   */
  constructor(
    private readonly client: Namespace,
    options?: LockerOptions,
  ) {
    super()
    if (
      typeof client !== 'object' ||
      client === null ||
      typeof (client as Partial<Namespace>).watch !== 'function' ||
      typeof (client as Partial<Namespace>).leaseClient !== 'object'
    ) {
      throw new TypeError(
        'Etcd3Locker needs an Etcd3 client from the etcd3 package as its first argument',
      )
    }
    this.options = Object.freeze(resolveLockerOptions(options))
    // Every waiting lock listens here: thousands of listeners are expected, not a leak.
    setMaxListeners(0, this.closing.signal)
    this.context = {
      client,
      acquireLockTimeout: this.options.acquireLockTimeout,
      closing: this.closing.signal,
      session: () => this.session(),
      localQueue: (queuePrefix) => this.localQueue(queuePrefix),
      forgetQueue: (queuePrefix) => {
        if (this.queues.get(queuePrefix)?.size === 0) this.queues.delete(queuePrefix)
      },
      emit: (event, ...info) => {
        // TypeScript cannot narrow a generic event's tuple here; the signature above checks it.
        ;(this.emit as (name: string, ...args: unknown[]) => boolean)(event, ...info)
      },
    }
  }

  /**
   * A lock on upload `id` (a `Lock` of `@tus/utils`); nothing happens in etcd until `lock()`.
   * @throws TypeError for a non-string id, RangeError for the empty id.
   */
  newLock(id: string): Etcd3Lock {
    return new Etcd3Lock(this.context, id, lockQueuePrefix(this.options.prefix, id))
  }

  /**
   * Resolves once etcd has granted this locker's session. Rejects with a
   * `SessionUnavailableError` naming the endpoints and the cause when etcd does not grant it
   * within `grantTimeout`, and with `LockerClosedError` after {@link close}.
   */
  async ready(): Promise<void> {
    await this.session()
  }

  /**
   * Revokes the session: every lock this process holds is free in etcd at once, every holder's
   * `requestRelease` is called, waiting `lock()` calls reject with `LockerClosedError`, and so
   * does every later one. Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      log.locker('closing')
      this.closing.abort(new LockerClosedError())
      const session = this.current ?? (await this.granting?.catch(() => undefined))
      await session?.revoke(this.options.grantTimeout)
    })()
    return this.closed
  }

  /** The live session, granting a new one when there is none or the last one was lost. */
  private session(): Promise<Session> {
    if (this.closing.signal.aborted) return Promise.reject(this.closing.signal.reason)
    if (this.current !== undefined && !this.current.isLost) return Promise.resolve(this.current)
    this.granting ??= Session.grant(this.client, {
      ttl: this.options.ttl,
      grantTimeout: this.options.grantTimeout,
      safetyMargin: this.options.safetyMargin,
      endpoints: endpointsOf(this.client),
    })
      .then(async (session) => {
        if (this.closing.signal.aborted) {
          await session.revoke(this.options.grantTimeout)
          throw this.closing.signal.reason
        }
        this.current = session
        this.emit('sessionGranted', { lease: session.leaseHex, ttl: session.ttl })
        session.signal.addEventListener('abort', () => {
          const reason = (session.signal.reason as Error).message
          this.emit('sessionLost', { lease: session.leaseHex, reason })
        })
        return session
      })
      .finally(() => {
        this.granting = undefined
      })
    return this.granting
  }

  private localQueue(queuePrefix: string): LocalQueue<Etcd3Lock> {
    let queue = this.queues.get(queuePrefix)
    if (queue === undefined) {
      queue = new LocalQueue()
      this.queues.set(queuePrefix, queue)
    }
    return queue
  }
}

/** The client's hosts, for error messages (the etcd3 client keeps its options protected). */
function endpointsOf(client: Namespace): string {
  const hosts = (client as unknown as { options?: { hosts?: string | string[] } }).options?.hosts
  if (hosts === undefined) return 'the configured endpoints'
  return Array.isArray(hosts) ? hosts.join(',') : hosts
}
