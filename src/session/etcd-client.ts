import { InterceptingCall, type Interceptor } from '@grpc/grpc-js'
import { ConsecutiveBreaker, ConstantBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel'
import { Etcd3, GRPCDeadlineExceededError, type IOptions, isRecoverableError } from 'etcd3'

/**
 * Asks etcd to refuse a call at once when the member has no leader (etcd's `hasleader`
 * metadata, Go's `clientv3.WithRequireLeader`), instead of holding it until its deadline: a call
 * sent during an election then fails fast and its retry lands on the new leader.
 */
const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true')
      next(metadata, listener)
    },
  })

/** Reconnect back-off to a member that does not answer (ms): first wait, longest wait. */
export const RECONNECT_BACKOFF_MS = { initial: 100, max: 500 } as const

/**
 * How long a member that failed three calls in a row is skipped (ms). The etcd3 client's default
 * is 5 000: during an election every member fails a few calls, so the default refuses a healthy
 * cluster for seconds after it has a leader again.
 */
export const HOST_REST_MS = 250

/**
 * `faultHandling` for `new Etcd3(...)` that fits locks: a member that fails three calls in a row
 * is skipped for {@link HOST_REST_MS} instead of 5 s, and a call that failed for a connection
 * reason is tried again twice, 50 ms apart, on any member (the locker retries for longer itself).
 */
export function lockFriendlyFaultHandling(): NonNullable<IOptions['faultHandling']> {
  return {
    host: () =>
      circuitBreaker(handleWhen(isRecoverableError), {
        halfOpenAfter: HOST_REST_MS,
        breaker: new ConsecutiveBreaker(3),
      }),
    // Not a call whose deadline passed: etcd3 retries with the same (expired) deadline, and each
    // retry would count as a failure against a member that may be healthy.
    global: retry(
      handleWhen((error) => isRecoverableError(error) && !isDeadline(error)),
      {
        maxAttempts: 2,
        backoff: new ConstantBackoff(50),
      },
    ),
  }
}

const isDeadline = (error: Error) => error instanceof GRPCDeadlineExceededError

/**
 * `hosts` as a list: a string is split on commas (etcd3 would take `'a,b'` for one host name),
 * and every endpoint is trimmed; an empty one is dropped, none left is refused.
 */
function endpointList(hosts: unknown): string[] {
  const parts =
    typeof hosts === 'string' ? hosts.split(',') : Array.isArray(hosts) ? [...hosts] : undefined
  if (parts === undefined || parts.some((part) => typeof part !== 'string')) {
    throw new TypeError(
      `createEtcdClient: hosts must be a string ('host:port' or 'a:2379,b:2379') or an array of strings, got ${describe(hosts)}`,
    )
  }
  const list = (parts as string[]).map((part) => part.trim()).filter((part) => part !== '')
  if (list.length === 0) {
    throw new RangeError(
      `createEtcdClient: hosts names no etcd endpoint (got ${describe(hosts)}): give 'host:port' or a comma-separated list ('a:2379,b:2379'), e.g. from ETCD_ENDPOINTS`,
    )
  }
  return list
}

function describe(value: unknown): string {
  return typeof value === 'string' || Array.isArray(value) ? JSON.stringify(value) : String(value)
}

/** Interceptors the caller put in `grpcOptions` (grpc-js takes them there too): kept, ours last. */
function callerInterceptors(options: IOptions): Interceptor[] | undefined {
  return (options.grpcOptions as { interceptors?: Interceptor[] } | undefined)?.interceptors
}

/**
 * An `Etcd3` client for `Etcd3Locker` and `Etcd3KvStore`: `options` as for `new Etcd3(options)`
 * (hosts, credentials, auth, ...), with {@link lockFriendlyFaultHandling} (any part of it that
 * `options.faultHandling` sets is the caller's), etcd's `hasleader` flag on every call (after the
 * caller's own `grpcOptions.interceptors`) and a reconnect back-off of at most 0.5 s. With the
 * etcd3 client's default fault handling, locks stay refused for seconds after every election.
 *
 * `hosts` may also be one comma-separated string (`'a:2379,b:2379'`, as `ETCD_ENDPOINTS` is
 * usually set): it is split, every endpoint trimmed and empty ones dropped. No endpoint left is a
 * `RangeError`; a `hosts` that is neither a string nor an array of strings, or options that are
 * not an object, a `TypeError`.
 *
 * @example `const client = createEtcdClient({ hosts: process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379' })`
 */
export function createEtcdClient(options: IOptions): Etcd3 {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(
      `createEtcdClient needs its options as an object with hosts: createEtcdClient({ hosts: '127.0.0.1:2379' }), got ${describe(options)}`,
    )
  }
  return new Etcd3({
    ...options,
    hosts: endpointList(options.hosts),
    // What the caller sets wins, piece by piece.
    faultHandling: { ...lockFriendlyFaultHandling(), ...options.faultHandling },
    // etcd3 hands grpcOptions to each gRPC client, which also takes interceptors there.
    grpcOptions: {
      // gRPC waits up to 2 minutes between reconnects to a member that was down (backing off
      // from 1 s by 1.6x): a cluster back after 5 s would be unused for seconds more.
      'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF_MS.initial,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MS.max,
      ...options.grpcOptions,
      interceptors: [...(callerInterceptors(options) ?? []), requireLeader],
    } as IOptions['grpcOptions'],
  })
}
