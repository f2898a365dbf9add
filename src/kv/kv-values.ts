import {
  GRPCDeadlineExceededError,
  GRPCGenericError,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
} from 'etcd3'
import { LockerError } from '../errors.js'
import { describe, quote } from '../keys.js'
import { etcdErrorText } from '../util/etcd-error-text.js'

/**
 * Largest JSON value (1 MiB): with the longest key it still fits etcd's default 1.5 MiB request
 * limit. Refused before sending, because a request above gRPC's own limit (etcd's + 512 KiB) also
 * trips the etcd3 client's circuit breaker, failing every call of the process (locks too) for a while.
 */
const MAX_VALUE_BYTES = 1_048_576

export function serialize(key: string, value: unknown): string {
  let raw: string | undefined
  try {
    raw = JSON.stringify(value)
  } catch (error) {
    throw new TypeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: ${(error as Error).message}`,
    )
  }
  if (raw === undefined) {
    throw new TypeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: ${describe(value)} is not JSON`,
    )
  }
  const bytes = Buffer.byteLength(raw, 'utf8')
  if (bytes > MAX_VALUE_BYTES) {
    throw new RangeError(
      `Etcd3KvStore cannot store the value of ${quote(key)}: its JSON is ${bytes} bytes, more than ${MAX_VALUE_BYTES}`,
    )
  }
  return raw
}

/**
 * `error` as a {@link LockerError} naming the key: 503 with the endpoints when no etcd member
 * answered (the etcd3 client's own "circuit breaker is open" names neither), 500 when etcd found
 * the write too large. Any other error is returned as is.
 */
export function unreachable(error: unknown, endpoints: string, key: string): unknown {
  if (isTooLarge(error)) {
    return new LockerError(
      `Etcd3KvStore cannot write ${quote(key)}: etcd refused the request as too large (its --max-request-bytes, 1.5 MiB by default, bounds key plus JSON value)`,
      500,
      { cause: error },
    )
  }
  if (!isConnectionFailure(error)) return error
  const what = key === '' ? 'list its keys' : `reach ${quote(key)}`
  return new LockerError(
    `Etcd3KvStore could not ${what}: etcd at ${endpoints} did not answer (${etcdErrorText(error)})`,
    503,
    { cause: error },
  )
}

// etcd's own check (above --max-request-bytes), or gRPC's (above that + 512 KiB) for larger ones.
function isTooLarge(error: unknown): boolean {
  return (
    (error instanceof GRPCInvalidArgumentError && /request is too large/.test(error.message)) ||
    (error instanceof GRPCResourceExhastedError && /larger than max/.test(error.message))
  )
}

function isConnectionFailure(error: unknown): boolean {
  return (
    (error as { isBrokenCircuitError?: unknown } | null)?.isBrokenCircuitError === true ||
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError ||
    // An endpoint gRPC cannot even parse ("http://", "") fails every call this way.
    (error instanceof GRPCGenericError && /Could not parse target name/.test(error.message))
  )
}

export function parse<T>(key: string, raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    throw new Error(`Etcd3KvStore found a value that is not JSON at ${quote(key)}`)
  }
}
