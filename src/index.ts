export {
  AuthenticationError,
  LockerClosedError,
  LockerError,
  LockLostError,
  LockTimeoutError,
  PermissionDeniedError,
  SessionLostError,
  SessionUnavailableError,
} from './errors.js'
export type { LockerEvents, ReleaseCause } from './events.js'
export { Etcd3KvStore, type KvStoreOptions } from './kv/kv-store.js'
export type { LeasingCounters } from './kv/leasing-cache.js'
export type { Etcd3Lock } from './lock/lock.js'
export { type CloseOptions, Etcd3Locker } from './locker.js'
export { defaultLockerOptions, type LockerOptions, type ResolvedLockerOptions } from './options.js'
export { createEtcdClient, HOST_REST_MS, lockFriendlyFaultHandling } from './session/etcd-client.js'
export type { WatchCounters } from './watch/hub.js'
