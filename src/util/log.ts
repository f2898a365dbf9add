import createDebug from 'debug'

/** `DEBUG=tus-etcd3-locker:*` shows every line; each part has its own namespace. */
export const log = {
  session: createDebug('tus-etcd3-locker:session'),
  lock: createDebug('tus-etcd3-locker:lock'),
  locker: createDebug('tus-etcd3-locker:locker'),
  watch: createDebug('tus-etcd3-locker:watch'),
}
