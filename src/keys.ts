/**
 * The etcd key layout (see DESIGN.md): `P/<id>/<leaseHex>` lock queue entries, `P/.kv/<key>` and
 * `P/.kvlease/<key>` for the KV store. Ids keep their bytes except `%`, `/` and a leading `.`, so
 * ordinary ids are the same keys that `etcdctl lock P/<id>` and tusd write.
 */

/**
 * Longest upload id or KV key, in UTF-8 bytes (64 KiB). Escaped (at most 3x) and written up to
 * four times in one txn, it stays well within etcd's default 1.5 MiB request limit; a longer id
 * would make every enqueue fail and be retried until the acquire timeout.
 */
export const MAX_ID_BYTES = 65_536

/** Longest root prefix, in UTF-8 bytes: it is part of every key. */
export const MAX_PREFIX_BYTES = 4_096

/**
 * Normalizes a root prefix to a leading `/` and no trailing `/`.
 * @param owner Who the option belongs to, for the error message.
 * @throws TypeError when `prefix` is not a string, RangeError when nothing but slashes is left,
 *   or it holds control characters or a lone surrogate, or is longer than {@link MAX_PREFIX_BYTES}.
 */
export function normalizePrefix(prefix: unknown, owner = 'Etcd3Locker'): string {
  const what = `${owner} option "prefix"`
  if (typeof prefix !== 'string') {
    throw new TypeError(`${what} must be a string, got ${describe(prefix)}`)
  }
  // A newline or NUL in a prefix is a configuration slip (an env file's line end), not a tenant.
  if (hasControlCharacter(prefix)) {
    throw new RangeError(`${what} must not contain control characters, got ${describe(prefix)}`)
  }
  checkUnicodeAndLength(what, prefix, MAX_PREFIX_BYTES)
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '')
  if (trimmed === '') {
    throw new RangeError(`${what} must name a key space such as "/tusd", got ${describe(prefix)}`)
  }
  return `/${trimmed}`
}

/**
 * Escapes an upload id into one key segment: `%` and `/` anywhere and `.` in first place are
 * percent-encoded (so `a` and `a/b` never share a queue and no id can reach `.kv`). Every other
 * character, control characters and NUL included, is kept, so the key is the id's UTF-8 bytes.
 * @throws TypeError for a non-string id; RangeError for the empty id, an id with a lone
 *   surrogate, or one longer than {@link MAX_ID_BYTES} in UTF-8.
 */
export function escapeId(id: unknown): string {
  checkName('upload id', id)
  const escaped = id.replace(/[%/]/g, (c) => (c === '%' ? '%25' : '%2F'))
  return escaped.startsWith('.') ? `%2E${escaped.slice(1)}` : escaped
}

/**
 * The inverse of {@link escapeId}: `%25` is `%`, `%2F` is `/`, and `%2E` in first place
 * is `.`. One pass, so `%252F` (the id `%2F`) comes back as `%2F`, not `/`.
 */
export function unescapeId(segment: string): string {
  return segment.replace(/^%2E|%25|%2F/g, (m) => (m === '%25' ? '%' : m === '%2F' ? '/' : '.'))
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
 * @throws TypeError for a non-string key; RangeError for the empty key, a key with a lone
 *   surrogate, or one longer than {@link MAX_ID_BYTES} in UTF-8.
 */
export function checkKvKey(key: unknown): string {
  checkName('Etcd3KvStore key', key)
  return key
}

/** The rules ids and KV keys share: a non-empty string of valid Unicode, at most 64 KiB. */
function checkName(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new TypeError(`${what} must be a string, got ${describe(value)}`)
  }
  if (value === '') throw new RangeError(`${what} must not be empty`)
  checkUnicodeAndLength(what, value, MAX_ID_BYTES)
}

// A lone surrogate has no UTF-8 form: etcd would get U+FFFD, so "\uD800" and "\uDC00" would
// name the same key. Refuse it rather than let two ids share a lock.
const LONE_SURROGATE = /\p{Surrogate}/u

function checkUnicodeAndLength(what: string, value: string, maxBytes: number): void {
  const lone = LONE_SURROGATE.exec(value)
  if (lone !== null) {
    const unit = lone[0].charCodeAt(0).toString(16).toUpperCase()
    throw new RangeError(
      `${what} must be valid Unicode, got ${describe(value)} with a lone surrogate U+${unit} at index ${lone.index}`,
    )
  }
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > maxBytes) {
    throw new RangeError(
      `${what} must be at most ${maxBytes} bytes in UTF-8, got ${bytes} bytes: ${describe(value)}`,
    )
  }
}

function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

// Error messages quote at most this many characters of a bad string.
const QUOTE_CHARS = 40

/** `s` as a JSON string, cut after a few dozen characters: ids may be 64 KiB long. */
export function quote(s: string): string {
  if (s.length <= QUOTE_CHARS) return JSON.stringify(s)
  return `${JSON.stringify(s.slice(0, QUOTE_CHARS))}... (${s.length} characters)`
}

/** A short, safe rendering of a bad value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `the string ${quote(value)}`
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`
  }
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}
