/** Helpers for tests against a real etcd. */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { noop } from 'cockatiel'
import { Etcd3, type IOptions } from 'etcd3'
import { afterAll, afterEach, beforeAll, inject } from 'vitest'
import { Etcd3Locker, type LockerOptions } from '../../src/index.js'
import { untilKeys } from './key-count.js'

export { type EtcdCluster, type EtcdMember, freePort, startEtcd } from './etcd.js'

import { type EtcdCluster, startEtcd } from './etcd.js'

export { etcdMetric } from './etcd-metrics.js'
export { untilKeys } from './key-count.js'
export { captureLog } from './log-lines.js'
export { startProxy, type TcpProxy } from './proxy.js'

import { startProxy, type TcpProxy } from './proxy.js'

/** Endpoints of the etcd shared by the run. */
export function endpoints(): string[] {
  return inject('etcdEndpoints')
}

const cleanups: Array<() => unknown> = []
const clients: Etcd3[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  for (const client of clients.splice(0)) client.close()
})

/** Runs `cleanup` after the current test (latest first), before the test's clients close. */
export function deferCleanup(cleanup: () => unknown): void {
  cleanups.push(cleanup)
}

/**
 * etcd3 client options without its default circuit breaker (3 failures, then 5 s of refusals):
 * for tests that break a connection on purpose and check what happens right after it heals.
 */
export const WITHOUT_BREAKER: Partial<IOptions> = {
  faultHandling: { host: () => noop, global: noop },
}

/** A new etcd client (one per simulated instance); closed after the test. */
export function newClient(hosts: string[] = endpoints(), options: Partial<IOptions> = {}): Etcd3 {
  const client = new Etcd3({ hosts, ...options })
  clients.push(client)
  return client
}

/** An Etcd3Locker on a client of its own (one simulated instance), closed after the test. */
export function newLocker(options: LockerOptions, hosts: string[] = endpoints()): Etcd3Locker {
  const locker = new Etcd3Locker(newClient(hosts), options)
  deferCleanup(() => locker.close())
  return locker
}

/** A prefix no other test uses, so tests sharing one etcd never see each other's keys. */
export function uniquePrefix(name = 'test'): string {
  return `/t-${name}-${randomUUID().slice(0, 8)}`
}

/** Resolves with `promise`, or rejects naming `what` once `ms` have passed. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/** A promise with its resolve function, for turning callbacks into awaitable events. */
export function signal<T = void>(): {
  promise: Promise<T>
  fire: (value: T) => void
  fired: () => boolean
} {
  let fire!: (value: T) => void
  let done = false
  const promise = new Promise<T>((resolve) => {
    fire = (value) => {
      done = true
      resolve(value)
    }
  })
  return { promise, fire, fired: () => done }
}

/** Keys (as strings) under `prefix`. */
export async function keysUnder(client: Etcd3, prefix: string): Promise<string[]> {
  return client.getAll().prefix(prefix).keys()
}

/** Runs etcdctl (API v3) against `hosts`. */
export function etcdctl(args: string[], hosts: string[] = endpoints()): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'etcdctl',
      [`--endpoints=${hosts.join(',')}`, ...args],
      { env: { ...process.env, ETCDCTL_API: '3' } },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}${stderr}`)) : resolve(stdout),
    )
  })
}

/** Resolves once `prefix` holds at least `count` keys (watched, not polled). */
export function untilKeyCount(client: Etcd3, prefix: string, count: number): Promise<void> {
  return untilKeys(client, prefix, (n) => n >= count)
}

/**
 * Resolves once `prefix` holds no key (watched, not polled), failing after `ms`: `unlock()`
 * resolves before etcd has the delete, so a test that checks "no key left" waits for it.
 */
export function untilNoKeys(client: Etcd3, prefix: string, ms = 5_000): Promise<void> {
  return within(
    untilKeys(client, prefix, (n) => n === 0),
    ms,
    `no key left under ${prefix}`,
  )
}

/**
 * `promise`'s rejection and how long it took to settle, failing after `ms`; a promise that
 * resolves instead gives an Error saying so, for the test's assertions to reject.
 */
export async function rejectionOf(
  promise: Promise<unknown>,
  ms: number,
  what: string,
): Promise<{ error: unknown; ms: number }> {
  const started = performance.now()
  const error = await within(
    promise.then(
      () => new Error(`${what} resolved`),
      (e: unknown) => e,
    ),
    ms,
    `${what} settles`,
  )
  return { error, ms: performance.now() - started }
}

/**
 * An etcd member of the calling test file's own, started before its tests and stopped after
 * them: counts read from its /metrics see that file's requests only.
 */
export function privateEtcd(): { readonly cluster: EtcdCluster; readonly endpoint: string } {
  let cluster: EtcdCluster | undefined
  beforeAll(async () => {
    cluster = await startEtcd(1)
  })
  afterAll(() => cluster?.stop())
  const started = () => {
    if (cluster === undefined) throw new Error('the private etcd starts in beforeAll')
    return cluster
  }
  return {
    get cluster() {
      return started()
    },
    get endpoint() {
      return started().endpoints[0] ?? ''
    },
  }
}

/**
 * An Etcd3Locker (one instance) whose client reaches etcd `target` through a proxy the test can
 * cut, without the etcd3 client's default breaker; the locker, then the proxy, are closed after
 * the test.
 */
export async function lockerBehindProxy(
  options: LockerOptions,
  target: string = endpoints()[0] ?? '',
): Promise<{ proxy: TcpProxy; locker: Etcd3Locker }> {
  const proxy = await startProxy(target)
  deferCleanup(() => proxy.close())
  const locker = new Etcd3Locker(newClient([proxy.endpoint], WITHOUT_BREAKER), options)
  deferCleanup(() => locker.close())
  return { proxy, locker }
}

/** Resolves once `check()` holds (checked on every turn of the event loop), or fails after `ms`. */
export function untilTrue(check: () => boolean, ms: number, what: string): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const poll = () => (check() ? resolve() : setImmediate(poll))
      poll()
    }),
    ms,
    what,
  )
}
