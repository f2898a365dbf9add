/**
 * Graceful shutdown of a tus instance, shared by the examples: copy it with any of them.
 *
 * On SIGTERM (Kubernetes, `docker stop`) or Ctrl-C: stop accepting connections, ask every upload
 * lock holder to release (`@tus/server` then ends each PATCH after its `lockDrainTimeout`, keeping
 * what it received, and answers it: the client resumes on another instance), revoke the etcd
 * session (every lock of this instance is free at once, not a TTL later), let the answers go out,
 * close the etcd client, exit.
 */
import type { Server as HttpServer } from 'node:http'
import type { Etcd3 } from 'etcd3'
import type { Etcd3Locker } from 'tus-etcd3-locker'

/** `lockDrainTimeout` of the examples' tus `Server` and locker: below the locker's safetyMargin. */
export const LOCK_DRAIN_MS = 2_000

/**
 * How long the shutdown waits for lock holders to let go before it revokes: the PATCH's own
 * drain, then time for its store's last writes (S3Store uploads its parts in flight). It ends as
 * soon as the holders have unlocked, so a generous bound costs nothing.
 */
export const SHUTDOWN_DRAIN_MS = LOCK_DRAIN_MS + 5_000

export interface ShutdownParts {
  http: HttpServer
  locker: Etcd3Locker
  client: Etcd3
  /**
   * How long other in-flight requests (downloads, HEADs) may take once the locks are given up
   * (default 15 000 ms; the examples read `SHUTDOWN_GRACE_MS`).
   */
  graceMs?: number
}

/** Shuts one instance down gracefully; resolves once everything is closed. */
export async function shutDown(parts: ShutdownParts): Promise<void> {
  const { http, locker, client } = parts
  const closed = new Promise<void>((resolve) => http.close(() => resolve()))
  // A kept-alive connection still brings requests after close(): end each after its answer, so
  // a load balancer's pooled connections go elsewhere.
  http.prependListener('request', (_req, res) => res.setHeader('connection', 'close'))
  http.closeIdleConnections()
  await locker.close({ drain: SHUTDOWN_DRAIN_MS })
  http.closeIdleConnections()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    closed,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, parts.graceMs ?? 15_000)
    }),
  ])
  clearTimeout(timer)
  http.closeAllConnections()
  client.close()
}

/**
 * Runs `shutdown` on the first SIGINT or SIGTERM, then exits. Later signals (a wrapper such as
 * `npx` or `tsx` relays Ctrl-C a second time) are noted, never allowed to cut the session's
 * revoke short: the process exits when `shutdown` is done.
 */
export function shutDownOnSignals(
  shutdown: () => Promise<void>,
  log: (line: string) => void,
): void {
  let started = false
  const onSignal = (signal: NodeJS.Signals) => {
    if (started) {
      log(`${signal} again: still shutting down (the etcd session is revoked first)`)
      return
    }
    started = true
    // Started first: its first step closes the listener, so nothing connects after this line.
    const done = shutdown()
    log(`${signal}: shutting down (lock holders answer, then the etcd session is revoked)`)
    done.then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}
