import { describe, normalizePrefix } from './keys.js'

/** Options of {@link Etcd3Locker}. Every field is optional; see {@link defaultLockerOptions}. */
export interface LockerOptions {
  /**
   * Session lease TTL in whole seconds (>= 1, default 60). A crashed process's locks are free
   * this long after its last keepalive. etcd raises a TTL below its own minimum (about 1.5 x its
   * election timeout); the locker then uses the TTL etcd granted.
   */
  ttl?: number
  /**
   * Root key prefix (default `/tusd`), normalized to a leading `/` and no trailing `/`. Lockers
   * on different prefixes never see each other: one prefix per tenant or per deployment.
   */
  prefix?: string
  /**
   * How long `lock()` waits, in ms (default 30 000, as `MemoryLocker`), before it rejects with
   * `ERRORS.ERR_LOCK_TIMEOUT`.
   */
  acquireLockTimeout?: number
  /** How long to wait for etcd to grant the session, in ms (default 1 500, as tusd's locker). */
  grantTimeout?: number
  /**
   * How many ms before etcd could expire an unrenewed session the locker declares it lost and
   * asks every holder to release (default `min(3 500, ttl x 250)`; at most a quarter of the TTL,
   * since keepalives go every third). Keep it above `@tus/server`'s `lockDrainTimeout` (3 000 ms
   * by default): a holder's request has then stopped before another instance can take its lock.
   */
  safetyMargin?: number
}

/** {@link LockerOptions} with every field set. */
export type ResolvedLockerOptions = Required<LockerOptions>

/**
 * The defaults: `{ ttl: 60, prefix: '/tusd', acquireLockTimeout: 30_000, grantTimeout: 1_500,
 * safetyMargin: 3_500 }` (`safetyMargin` follows a smaller `ttl`: see {@link LockerOptions}).
 */
export function defaultLockerOptions(): ResolvedLockerOptions {
  return {
    ttl: 60,
    prefix: '/tusd',
    acquireLockTimeout: 30_000,
    grantTimeout: 1_500,
    safetyMargin: defaultSafetyMargin(60),
  }
}

/** `min(3 500, ttl x 250)` ms: beyond `@tus/server`'s default drain, within a quarter TTL. */
export function defaultSafetyMargin(ttlSeconds: number): number {
  return Math.min(3_500, ttlSeconds * 250)
}

// setTimeout fires at once for delays above 2^31 - 1 ms; refuse them rather than time out early.
const MAX_TIMER_MS = 2 ** 31 - 1
const MAX_TTL_SECONDS = 9_000_000_000 // etcd's MaxLeaseTTL

/**
 * Validates options and fills in defaults.
 * @throws TypeError or RangeError naming the option and the bad value.
 */
export function resolveLockerOptions(options: LockerOptions | undefined): ResolvedLockerOptions {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new TypeError(`Etcd3Locker options must be an object, got ${describe(options)}`)
  }
  const given = options ?? {}
  const defaults = defaultLockerOptions()
  const known = new Set(Object.keys(defaults))
  for (const key of Object.keys(given)) {
    if (!known.has(key)) {
      throw new TypeError(
        `Etcd3Locker has no option "${key}"; known options: ${[...known].join(', ')}`,
      )
    }
  }
  const ttl = wholeNumber('ttl', given.ttl ?? defaults.ttl, 1, MAX_TTL_SECONDS, 'seconds')
  return {
    ttl,
    prefix: normalizePrefix(given.prefix ?? defaults.prefix),
    acquireLockTimeout: milliseconds(
      'acquireLockTimeout',
      given.acquireLockTimeout ?? defaults.acquireLockTimeout,
    ),
    grantTimeout: milliseconds('grantTimeout', given.grantTimeout ?? defaults.grantTimeout),
    safetyMargin: safetyMargin(given.safetyMargin ?? defaultSafetyMargin(ttl), ttl),
  }
}

function safetyMargin(value: unknown, ttl: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(
      `Etcd3Locker option "safetyMargin" must be a number, got ${describe(value)}`,
    )
  }
  const max = ttl * 250
  if (!Number.isFinite(value) || value < 0 || value > max) {
    throw new RangeError(
      `Etcd3Locker option "safetyMargin" must be a number of milliseconds from 0 to a quarter of the TTL (${max} for ttl ${ttl}), got ${value}`,
    )
  }
  return value
}

function wholeNumber(name: string, value: unknown, min: number, max: number, unit: string) {
  if (typeof value !== 'number') {
    throw new TypeError(`Etcd3Locker option "${name}" must be a number, got ${describe(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Etcd3Locker option "${name}" must be a whole number of ${unit} from ${min} to ${max}, got ${value}`,
    )
  }
  return value
}

function milliseconds(name: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new TypeError(`Etcd3Locker option "${name}" must be a number, got ${describe(value)}`)
  }
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new RangeError(
      `Etcd3Locker option "${name}" must be a number of milliseconds above 0 and at most ${MAX_TIMER_MS}, got ${value}`,
    )
  }
  return value
}
