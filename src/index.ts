export {
  AuthenticationError,
  LockerClosedError,
  LockerError,
  LockLostError,
  PermissionDeniedError,
  SessionLostError,
  SessionUnavailableError,
} from './errors.js'
export { createEtcdClient, HOST_REST_MS, lockFriendlyFaultHandling } from './etcd-client.js'
export type { LockerEvents, ReleaseCause } from './events.js'
export { Etcd3KvStore, type KvStoreOptions } from './kv-store.js'
export type { LeasingCounters } from './leasing-cache.js'
export type { Etcd3Lock } from './lock.js'
export { Etcd3Locker } from './locker.js'
export { defaultLockerOptions, type LockerOptions, type ResolvedLockerOptions } from './options.js'
