import type { LockerOptions, OptionsOwner } from '../options.js'

/** @internal The defaults of the cache's options, shared with `locker.kvStore()`. */
export const KV_STORE_DEFAULTS = {
  leasing: true,
  revokeBackoff: 1_000,
  cacheSize: 10_000,
  cacheIdle: 30_000,
} as const

/** @internal The largest `cacheSize`: far beyond any process's memory for upload metadata. */
export const MAX_CACHE_SIZE = 100_000_000

/**
 * Options of a standalone {@link Etcd3KvStore}; `locker.kvStore()` takes only `leasing`,
 * `revokeBackoff`, `cacheSize` and `cacheIdle` (the session's options are the locker's).
 */
export interface KvStoreOptions
  extends Pick<LockerOptions, 'ttl' | 'prefix' | 'grantTimeout' | 'safetyMargin'> {
  /**
   * Serve reads from a local cache while this process holds the key's lease (default `true`).
   * `false`: every read and write goes to etcd.
   */
  leasing?: boolean
  /**
   * After another process's write revoked this process's lease on a key, ms before a read leases
   * that key again (default 1 000): meanwhile reads of it go to etcd, so a key two instances
   * both write does not bounce between their caches.
   */
  revokeBackoff?: number
  /**
   * Most keys cached at once (default 10 000, whole number >= 1). Beyond it the key read least
   * recently is given up: its leasing key is deleted and its watch cancelled.
   */
  cacheSize?: number
  /**
   * ms a cached key may stay unread before it is given up (default 30 000): the cache, its
   * leasing keys in etcd and its watches follow the uploads in use now, not every upload ever read.
   */
  cacheIdle?: number
}

/** @internal Who `locker.kvStore()`'s option errors name, and the options it takes. */
export const LOCKER_KV_STORE: OptionsOwner = {
  name: 'locker.kvStore()',
  known: ['leasing', 'revokeBackoff', 'cacheSize', 'cacheIdle'],
}

/** @internal Who `Etcd3KvStore`'s option errors name, and the options it knows. */
export const KV_STORE: OptionsOwner = {
  name: 'Etcd3KvStore',
  known: [
    'prefix',
    'ttl',
    'grantTimeout',
    'safetyMargin',
    'leasing',
    'revokeBackoff',
    'cacheSize',
    'cacheIdle',
  ],
}
