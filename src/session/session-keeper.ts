import { setMaxListeners } from 'node:events'
import type { Namespace } from 'etcd3'
import { LockerClosedError } from '../errors.js'
import { log } from '../util/log.js'
import { Session, type SessionSettings } from './session.js'

/** What the owner of a keeper wants to hear about its sessions. */
export interface SessionHooks {
  granted?(session: Session): void
  /** `closed`: the session ended because {@link SessionKeeper.close} revoked it. */
  lost?(session: Session, reason: string, closed: boolean): void
}

/**
 * Holds the one session of a locker (or of a standalone KV store): grants it on first use,
 * grants a new one after a loss, revokes it on close.
 */
export class SessionKeeper {
  private readonly closingController = new AbortController()
  private current: Session | undefined
  private granting: Promise<Session> | undefined
  private closed: Promise<void> | undefined
  /** close() has begun: a session that ends now was revoked, not lost. */
  private revoking = false

  constructor(
    private readonly client: Namespace,
    private readonly settings: SessionSettings,
    private readonly hooks: SessionHooks = {},
  ) {
    // Every waiting lock listens here: thousands of listeners are expected, not a leak.
    setMaxListeners(0, this.closingController.signal)
  }

  /** Aborts with a `LockerClosedError` once {@link refuse} or {@link close} is called. */
  get closing(): AbortSignal {
    return this.closingController.signal
  }

  /** The session, if one is granted and not lost; never grants. */
  get live(): Session | undefined {
    return this.current !== undefined && !this.current.isLost ? this.current : undefined
  }

  /**
   * Starts granting the session in the background, so that the first call finds it ready. A
   * failure is not thrown here: the next {@link session} call grants again and rejects then.
   */
  start(): void {
    this.session().catch((error: unknown) => {
      log.session('background grant failed: %s', (error as Error).message)
    })
  }

  /**
   * The live session, granting a new one when there is none or the last one was lost. While
   * {@link refuse} drains, the live session still serves its holders (their fenced KV writes).
   */
  session(): Promise<Session> {
    const live = this.live
    if (live !== undefined) return Promise.resolve(live)
    if (this.closing.aborted) return Promise.reject(this.closing.reason)
    this.granting ??= Session.grant(this.client, this.settings)
      .then(async (session) => {
        if (this.closing.aborted) {
          await session.revoke(this.settings.grantTimeout)
          throw this.closing.reason
        }
        this.current = session
        this.hooks.granted?.(session)
        session.signal.addEventListener('abort', () => {
          this.hooks.lost?.(session, (session.signal.reason as Error).message, this.revoking)
        })
        return session
      })
      .finally(() => {
        this.granting = undefined
      })
    return this.granting
  }

  /** Aborts {@link closing} (new and waiting requests are refused) but keeps the session. */
  refuse(): void {
    if (!this.closing.aborted) this.closingController.abort(new LockerClosedError())
  }

  /** Revokes the session; {@link closing} aborts first. Idempotent; never rejects. */
  close(): Promise<void> {
    this.revoking = true
    this.closed ??= (async () => {
      log.locker('closing')
      this.refuse()
      const session = this.current ?? (await this.granting?.catch(() => undefined))
      await session?.revoke(this.settings.grantTimeout)
    })()
    return this.closed
  }
}

/** The client's hosts, for error messages (the etcd3 client keeps its options protected). */
export function endpointsOf(client: Namespace): string {
  const hosts = (client as unknown as { options?: { hosts?: string | string[] } }).options?.hosts
  if (hosts === undefined) return 'the configured endpoints'
  // Quote an empty or spaced host ("", "not a host"): bare, it vanishes into the message.
  const shown = (host: string) => (/^\S+$/.test(host) ? host : JSON.stringify(host))
  return Array.isArray(hosts) ? hosts.map(shown).join(',') : shown(hosts)
}
