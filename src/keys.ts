/**
 * The etcd key layout (see DESIGN.md): `P/<id>/<leaseHex>` lock queue entries, `P/.kv/<key>` and
 * `P/.kvlease/<key>` for the KV store. Ids keep their bytes except `%`, `/` and a leading `.`, so
 * ordinary ids are the same keys that `etcdctl lock P/<id>` and tusd write.
 */

/**
 * Normalizes a root prefix to a leading `/` and no trailing `/`.
 * @throws TypeError when `prefix` is not a string, RangeError when nothing but slashes is left.
 */
export function normalizePrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') {
    throw new TypeError(`Etcd3Locker option "prefix" must be a string, got ${describe(prefix)}`)
  }
  if (hasControlCharacter(prefix)) {
    throw new RangeError(
      `Etcd3Locker option "prefix" must not contain control characters, got ${JSON.stringify(prefix)}`,
    )
  }
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '')
  if (trimmed === '') {
    throw new RangeError(
      `Etcd3Locker option "prefix" must name a key space such as "/tusd", got ${JSON.stringify(prefix)}`,
    )
  }
  return `/${trimmed}`
}

/**
 * Escapes an upload id into one key segment: `%` and `/` anywhere and `.` in first place are
 * percent-encoded (so `a` and `a/b` never share a queue and no id can reach `.kv`).
 * @throws TypeError for a non-string id, RangeError for the empty id.
 */
export function escapeId(id: unknown): string {
  if (typeof id !== 'string') {
    throw new TypeError(`upload id must be a string, got ${describe(id)}`)
  }
  if (id === '') {
    throw new RangeError('upload id must not be empty')
  }
  const escaped = id.replace(/[%/]/g, (c) => (c === '%' ? '%25' : '%2F'))
  return escaped.startsWith('.') ? `%2E${escaped.slice(1)}` : escaped
}

/** `P/<escaped id>/`: the queue of one upload; every entry is a key below it. */
export function lockQueuePrefix(prefix: string, id: string): string {
  return `${prefix}/${escapeId(id)}/`
}

/** Lower-case hex, no padding: Go's `%x` of the lease id, as etcd's `concurrency.Mutex` writes it. */
export function leaseHex(leaseId: string): string {
  return BigInt(leaseId).toString(16)
}

/** `P/.kv/`: where KV store values live; listing it lists the store's keys. */
export function kvValuePrefix(prefix: string): string {
  return `${prefix}/.kv/`
}

/** `P/.kvlease/`: leasing keys, one per cached KV key, on the caching process's session. */
export function kvLeasePrefix(prefix: string): string {
  return `${prefix}/.kvlease/`
}

/**
 * Checks a KV store key. Keys are stored as given (`/`, `%`, unicode and all), below
 * {@link kvValuePrefix}, so listing returns them intact.
 * @throws TypeError for a non-string key, RangeError for the empty key.
 */
export function checkKvKey(key: unknown): string {
  if (typeof key !== 'string') {
    throw new TypeError(`Etcd3KvStore key must be a string, got ${describe(key)}`)
  }
  if (key === '') throw new RangeError('Etcd3KvStore key must not be empty')
  return key
}

function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

/** A short, safe rendering of a bad value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`
  }
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  return typeof value
}
