/**
 * The CLI's etcd client: every unary call has a deadline, so an unreachable etcd costs a few
 * seconds, never a hang. Errors become one line naming the endpoints.
 */
import {
  type Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IRangeResponse,
} from 'etcd3'
import { createEtcdClient } from '../session/etcd-client.js'
import { CliError, ExitCode } from './exit-codes.js'

/** Deadline of each etcd call, in ms. */
export const CALL_TIMEOUT_MS = 3_000

/**
 * Options for one logical etcd call: a deadline {@link CALL_TIMEOUT_MS} from now. Pass it to
 * each call. The client retries a failed call (three times by default) with the *same* options,
 * so a fixed deadline bounds the call and all its retries, where a per-attempt one would not.
 */
export function bounded(): { deadline: Date } {
  return { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }
}

/**
 * A client on `endpoints`. Unary calls not given {@link bounded} options still get a deadline per
 * attempt; streams (watch, keepalive) get none: the command bounds them itself. Close it when
 * done.
 */
export function connect(endpoints: string[]): Etcd3 {
  return createEtcdClient({
    hosts: endpoints,
    dialTimeout: CALL_TIMEOUT_MS,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) },
  })
}

/**
 * Keys (no values: `.kv/` values can be large) of every key under `prefix`, which ends with `/`,
 * oldest create revision first. One range: one consistent revision.
 */
export function rangeKeys(
  client: Etcd3,
  start: string,
  end: string,
  revision?: string,
): Promise<IRangeResponse> {
  return client.kv.range(
    {
      key: Buffer.from(start),
      range_end: Buffer.from(end),
      keys_only: true,
      sort_target: 'Create',
      sort_order: 'Ascend',
      ...(revision === undefined ? {} : { revision }),
    },
    bounded(),
  )
}

/** `error` of an etcd call as the {@link CliError} the CLI exits with. */
export function etcdFailure(error: unknown, endpoints: string[]): CliError {
  const where = endpoints.join(',')
  const cause = (error instanceof Error ? error.message : String(error)).trim()
  if (error instanceof GRPCDeadlineExceededError) {
    // gRPC's text describes the last retry ("after 0.000s"), not the wait the user saw.
    return new CliError(
      `cannot reach etcd at ${where}: no answer within ${CALL_TIMEOUT_MS / 1_000} s`,
      ExitCode.etcd,
    )
  }
  if (error instanceof GRPCUnavailableError) {
    // "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED ...
    // Resolution note: ": the socket error is the part that helps.
    const socketError = /Last error: (?:Error: )?(.+?)\.?(?:\s*Resolution note:.*)?$/s.exec(
      cause,
    )?.[1]
    return new CliError(`cannot reach etcd at ${where}: ${socketError ?? cause}`, ExitCode.etcd)
  }
  return new CliError(`etcd at ${where} failed: ${cause}`, ExitCode.etcd)
}

/** A lease as etcd reports it now; `ttl` is null once it expired (or was revoked). */
export interface LeaseState {
  /** Seconds left, or null when the lease no longer exists. */
  ttl: number | null
  /** The TTL it was granted, in seconds, or null when the lease no longer exists. */
  grantedTtl: number | null
}

/**
 * What etcd says of lease `leaseId` (decimal). A lease that expires between our read of its keys
 * and this query is reported expired, not as an error: etcd answers TTL -1 for it (and some
 * versions an invalid-lease error).
 */
export async function leaseState(client: Etcd3, leaseId: string): Promise<LeaseState> {
  if (leaseId === '0') return { ttl: null, grantedTtl: null } // a key put without a lease
  try {
    const res = await client.leaseClient.leaseTimeToLive({ ID: leaseId }, bounded())
    const ttl = Number(res.TTL)
    return ttl < 0 ? { ttl: null, grantedTtl: null } : { ttl, grantedTtl: Number(res.grantedTTL) }
  } catch (error) {
    if (error instanceof EtcdLeaseInvalidError) return { ttl: null, grantedTtl: null }
    throw error
  }
}
