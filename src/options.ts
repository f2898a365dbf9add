import { describe, normalizePrefix } from './keys.js'
// Timeouts above it would fire at once: refused rather than timing out early.
import { MAX_TIMER_MS } from './util/timers.js'

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
   * How long `lock()` waits, in ms (default 30 000, as `MemoryLocker`), before it rejects: with a
   * `LockTimeoutError` naming what it waited for in etcd (the queue entry ahead, or etcd itself),
   * or with `ERRORS.ERR_LOCK_TIMEOUT` (as `MemoryLocker`) behind another request of this process.
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
  /**
   * How long, in ms, the lock key of an upload is kept after this process's last unlock of it
   * (default 5 000; 0: off), so that its next request for the upload (the next PATCH) holds with
   * no etcd call. A kept key is given up at once when anyone else queues for the upload, after
   * this long unused, beyond 1 000 kept keys, and with the session. An upload another instance
   * took from this one in the last minute is not kept, nor is any while other instances take
   * this one's keys more than it reuses them, a take of a kept key counting as two reuses
   * (clients spread over instances).
   */
  retainLocks?: number
  /**
   * The `lockDrainTimeout` given to `@tus/server`'s `Server`, in ms (default 3 000, the server's
   * own default): how long a holder's request may go on after `requestRelease`. Give both the
   * same value. The locker warns (`TUS_ETCD3_LOCKER_DRAIN_MARGIN`) when `safetyMargin` is shorter,
   * since a request told its session is lost could then still write when another instance takes
   * its upload.
   */
  lockDrainTimeout?: number
}

/** {@link LockerOptions} with every field set. */
export type ResolvedLockerOptions = Required<LockerOptions>

/**
 * The defaults: `{ ttl: 60, prefix: '/tusd', acquireLockTimeout: 30_000, grantTimeout: 1_500,
 * safetyMargin: 3_500, retainLocks: 5_000, lockDrainTimeout: 3_000 }` (`safetyMargin` follows a smaller `ttl`: see {@link LockerOptions}).
 */
export function defaultLockerOptions(): ResolvedLockerOptions {
  return {
    ttl: 60,
    prefix: '/tusd',
    acquireLockTimeout: 30_000,
    grantTimeout: 1_500,
    safetyMargin: defaultSafetyMargin(60),
    retainLocks: 5_000,
    lockDrainTimeout: 3_000,
  }
}

/** `min(3 500, ttl x 250)` ms: beyond `@tus/server`'s default drain, within a quarter TTL. */
export function defaultSafetyMargin(ttlSeconds: number): number {
  return Math.min(3_500, ttlSeconds * 250)
}

const MAX_TTL_SECONDS = 9_000_000_000 // etcd's MaxLeaseTTL

/** Whose options are being checked: the name error messages use, and the options it knows. */
export interface OptionsOwner {
  readonly name: string
  readonly known: readonly string[]
}

const LOCKER: OptionsOwner = {
  name: 'Etcd3Locker',
  known: [
    'ttl',
    'prefix',
    'acquireLockTimeout',
    'grantTimeout',
    'safetyMargin',
    'retainLocks',
    'lockDrainTimeout',
  ],
}

/**
 * Checks that `options` is `undefined` or a plain options object without unknown keys: a typo
 * (`tll`) or an option given to the wrong owner must not be silently ignored.
 * @throws TypeError naming the owner and the unknown option.
 */
export function checkOptionsObject(options: unknown, owner: OptionsOwner): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${owner.name} options must be an object, got ${describe(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (!owner.known.includes(key)) {
      throw new TypeError(
        `${owner.name} has no option "${key}"; known options: ${owner.known.join(', ')}`,
      )
    }
  }
  return options as Record<string, unknown>
}

/**
 * Validates options and fills in defaults. Only `undefined` means "use the default": `null`, a
 * string or `NaN` is an error, not a silent default.
 * @param owner Whose options these are (default: `Etcd3Locker`), for error messages.
 * @throws TypeError or RangeError naming the option and the bad value.
 */
export function resolveLockerOptions(
  options: LockerOptions | undefined,
  owner: OptionsOwner = LOCKER,
): ResolvedLockerOptions {
  const given = checkOptionsObject(options, owner)
  const defaults = defaultLockerOptions()
  const pick = <K extends keyof ResolvedLockerOptions>(key: K): unknown =>
    given[key] === undefined ? defaults[key] : given[key]
  const ttl = wholeNumber(owner, 'ttl', pick('ttl'), 1, MAX_TTL_SECONDS, 'seconds')
  return {
    ttl,
    prefix: normalizePrefix(pick('prefix'), owner.name),
    acquireLockTimeout: milliseconds(owner, 'acquireLockTimeout', pick('acquireLockTimeout')),
    grantTimeout: milliseconds(owner, 'grantTimeout', pick('grantTimeout')),
    safetyMargin: safetyMargin(
      owner,
      given.safetyMargin === undefined ? defaultSafetyMargin(ttl) : given.safetyMargin,
      ttl,
    ),
    retainLocks: millisecondsOrZero(owner, 'retainLocks', pick('retainLocks')),
    lockDrainTimeout: milliseconds(owner, 'lockDrainTimeout', pick('lockDrainTimeout')),
  }
}

function safetyMargin(owner: OptionsOwner, value: unknown, ttl: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(
      `${owner.name} option "safetyMargin" must be a number, got ${describe(value)}`,
    )
  }
  const max = ttl * 250
  if (!Number.isFinite(value) || value < 0 || value > max) {
    throw new RangeError(
      `${owner.name} option "safetyMargin" must be a number of milliseconds from 0 to a quarter of the TTL (${max} for ttl ${ttl}), got ${value}`,
    )
  }
  return value
}

/** A whole number from `min` to `max`, or a TypeError/RangeError naming `owner`'s option. */
export function wholeNumber(
  owner: OptionsOwner,
  name: string,
  value: unknown,
  min: number,
  max: number,
  unit: string,
): number {
  if (typeof value !== 'number') {
    throw new TypeError(`${owner.name} option "${name}" must be a number, got ${describe(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `${owner.name} option "${name}" must be a whole number of ${unit} from ${min} to ${max}, got ${value}`,
    )
  }
  return value
}

/** ms above 0 that a timer can hold, or a TypeError/RangeError naming `owner`'s option. */
export function milliseconds(owner: OptionsOwner, name: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new TypeError(`${owner.name} option "${name}" must be a number, got ${describe(value)}`)
  }
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new RangeError(
      `${owner.name} option "${name}" must be a number of milliseconds above 0 and at most ${MAX_TIMER_MS}, got ${value}`,
    )
  }
  return value
}

export function millisecondsOrZero(owner: OptionsOwner, name: string, value: unknown): number {
  if (value === 0) return 0
  if (typeof value === 'number' && (value < 0 || Number.isNaN(value))) {
    throw new RangeError(
      `${owner.name} option "${name}" must be 0 (off) or a number of milliseconds up to ${MAX_TIMER_MS}, got ${value}`,
    )
  }
  return milliseconds(owner, name, value)
}
