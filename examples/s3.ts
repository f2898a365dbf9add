/**
 * A tus upload server that stores uploads in S3 (or any S3-compatible store: MinIO, Ceph, R2,
 * ...) with Etcd3Locker, and keeps S3Store's metadata cache in etcd. To start your own from it,
 * copy it with shutdown.ts and install tus-etcd3-locker, @tus/server and @tus/s3-store, plus tsx
 * to run TypeScript. It is an ES module.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 S3_BUCKET=uploads S3_ENDPOINT=http://127.0.0.1:9000 \
 *     AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... PORT=1080 node --import tsx examples/s3.ts
 *
 * Environment: S3_BUCKET (required, must exist), S3_ENDPOINT (unset: AWS), S3_REGION
 * (AWS_REGION, else us-east-1), S3_FORCE_PATH_STYLE (`true`/`false`; default `true` when
 * S3_ENDPOINT is set), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (unset: the AWS SDK's default
 * credential chain, e.g. an instance role), S3_PART_SIZE (bytes, default 8 MiB, at least 5 MiB),
 * ETCD_ENDPOINTS (comma-separated host:port, default 127.0.0.1:2379), PORT (1080), HOST (listen
 * address, 127.0.0.1; 0.0.0.0 in a container), PREFIX (/tusd), LOCK_TTL (seconds, 10),
 * INSTANCE_NAME (shown in logs), SHUTDOWN_GRACE_MS (15000).
 *
 * Routes: /files (tus), /health (200 while the etcd session is live). Run it on several ports or
 * machines against the same etcd and bucket: every instance serves every upload, none writes one
 * upload while another does, and none answers from a stale copy of an upload's metadata.
 *
 * SIGTERM or Ctrl-C: a graceful shutdown (examples/shutdown.ts): no new connection is accepted,
 * each PATCH in flight is asked to stop and answered with what it received (the tus client
 * resumes it on another instance), the etcd session is revoked once they let go (every lock of
 * this instance is free at once), other requests may finish for up to SHUTDOWN_GRACE_MS, and the
 * process exits.
 */
import { createServer, type Server as HttpServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { type MetadataValue, S3Store } from '@tus/s3-store'
import { Server } from '@tus/server'
import { createEtcdClient, Etcd3Locker } from 'tus-etcd3-locker'
import { LOCK_DRAIN_MS, shutDown, shutDownOnSignals } from './shutdown.js'

export interface S3TusOptions {
  endpoints: string[]
  bucket: string
  /** S3-compatible endpoint URL (default: AWS for `region`). */
  s3Endpoint?: string
  region?: string
  /** Path-style URLs (`<endpoint>/<bucket>/<key>`), which most S3-compatible stores need. */
  forcePathStyle?: boolean
  /** Static credentials (default: the AWS SDK's credential chain). */
  credentials?: { accessKeyId: string; secretAccessKey: string }
  /** S3Store's preferred part size in bytes (default 8 MiB). */
  partSize?: number
  /** 0: any free port. */
  port: number
  host?: string
  prefix?: string
  /** Lock session TTL in seconds: how long a crashed instance's locks stay taken. */
  ttl?: number
  /** Where to print what the instance does (default: nowhere). */
  log?: (line: string) => void
}

export interface S3TusInstance {
  readonly url: string
  readonly locker: Etcd3Locker
  /**
   * Shuts down gracefully: accepts no new connection, asks lock holders to release and lets them
   * answer, revokes the etcd session, lets other requests finish for up to `graceMs` (default
   * 15 000) and closes the etcd client.
   */
  close(graceMs?: number): Promise<void>
}

/**
 * S3Store, fixed for a cache that stores copies and fences its writes:
 * - its `declareUploadLength` (the PATCH that gives an `Upload-Defer-Length` upload its length)
 *   writes the length to the upload's `.info` object in S3 and changes the record it got from the
 *   cache in place, which only updates an in-memory cache. With `locker.kvStore()` (or a Redis
 *   one) the cached record keeps "length unknown" and the upload never completes. Dropping the
 *   record makes the next read take it from S3, length included.
 * - its `remove` does not await its cache delete, which can then reach etcd after the DELETE's
 *   unlock: the lock's fence refuses it (another instance may hold the upload by then), and the
 *   unhandled rejection ended the process. Here the delete is awaited while the lock is held, and
 *   a cache delete nobody awaits can no longer crash the process.
 */
export class SharedCacheS3Store extends S3Store {
  override async declareUploadLength(id: string, length: number): Promise<void> {
    await super.declareUploadLength(id, length)
    await this.clearCache(id)
  }

  override async remove(id: string): Promise<void> {
    await super.remove(id)
    await this.clearCache(id) // the one S3Store started is not awaited: finish it under the lock
  }

  protected override clearCache(id: string): Promise<void> {
    const clearing = super.clearCache(id)
    clearing.catch(() => {}) // handled by whoever awaits it; S3Store.remove does not
    return clearing
  }
}

/** Starts one tus instance on S3, with upload locks and S3Store's cache in etcd. */
export async function startS3TusInstance(options: S3TusOptions): Promise<S3TusInstance> {
  const log = options.log ?? (() => {})
  // The recommended client: no 5 s refusal of every member after a leader election.
  const client = createEtcdClient({ hosts: options.endpoints })
  const locker = new Etcd3Locker(client, {
    prefix: options.prefix ?? '/tusd',
    ttl: options.ttl ?? 10,
    lockDrainTimeout: LOCK_DRAIN_MS, // the same as the Server's below
  })
  locker.on('sessionGranted', (s) => log(`etcd session ${s.lease} granted (ttl ${s.ttl}s)`))
  locker.on('sessionLost', (s) =>
    log(
      s.closed
        ? `etcd session ${s.lease} revoked (shutdown)`
        : `etcd session ${s.lease} lost: ${s.reason}`,
    ),
  )
  locker.on('lockAcquired', (e) => log(`lock ${e.id} acquired after ${e.waitedMs} ms`))
  locker.on('releaseRequested', (e) => log(`lock ${e.id}: asked to release (${e.reason})`))
  await locker.ready() // fail at start-up, with a clear error, when etcd is not there

  const tus = new Server({
    path: '/files',
    datastore: new SharedCacheS3Store({
      s3ClientConfig: {
        bucket: options.bucket,
        endpoint: options.s3Endpoint,
        region: options.region ?? 'us-east-1',
        forcePathStyle: options.forcePathStyle ?? options.s3Endpoint !== undefined,
        credentials: options.credentials,
      },
      partSize: options.partSize,
      // S3Store's copy of each upload's record (S3 upload id, size, metadata), shared by every
      // instance through etcd. Its default, an in-memory map per process, goes stale: an upload
      // deleted through one instance would still be served by the others.
      cache: locker.kvStore<MetadataValue>(),
    }),
    locker,
    // How long a PATCH asked to release may go on: within the locker's safetyMargin (2.5 s at
    // ttl 10), so it has stopped before etcd could give its lock to another instance.
    lockDrainTimeout: LOCK_DRAIN_MS,
    respectForwardedHeaders: true,
  })

  const http: HttpServer = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (path === '/files' || path.startsWith('/files/')) return void tus.handle(req, res)
    if (path === '/health') {
      // 200 only when a lock could be taken now: session live and etcd answering with a leader.
      return void locker.health().then(
        () => sendJson(res, 200, { status: 'ok' }),
        (error: unknown) => sendJson(res, 503, { status: 'down', error: String(error) }),
      )
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port, options.host ?? '127.0.0.1', resolve)
  })
  const { port } = http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/files`,
    locker,
    close: (graceMs) => shutDown({ http, locker, client, graceMs }),
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const env = process.env
  const name = env.INSTANCE_NAME ?? 'tus'
  const log = (line: string) => console.log(`[${name}] ${line}`)
  if (!env.S3_BUCKET) {
    console.error(`[${name}] S3_BUCKET is not set`)
    process.exit(1)
  }
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = env
  const instance = await startS3TusInstance({
    endpoints: (env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(','),
    bucket: env.S3_BUCKET,
    s3Endpoint: env.S3_ENDPOINT || undefined,
    region: env.S3_REGION ?? env.AWS_REGION,
    forcePathStyle: env.S3_FORCE_PATH_STYLE ? env.S3_FORCE_PATH_STYLE === 'true' : undefined,
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    partSize: env.S3_PART_SIZE ? Number(env.S3_PART_SIZE) : undefined,
    port: Number(env.PORT ?? 1080),
    host: env.HOST,
    prefix: env.PREFIX,
    ttl: env.LOCK_TTL ? Number(env.LOCK_TTL) : undefined,
    log,
  }).catch((error: unknown) => {
    console.error(`[${name}] could not start: ${error instanceof Error ? error.message : error}`)
    process.exit(1)
  })
  log(`ready at ${instance.url} (pid ${process.pid})`)
  const graceMs = env.SHUTDOWN_GRACE_MS ? Number(env.SHUTDOWN_GRACE_MS) : undefined
  shutDownOnSignals(() => instance.close(graceMs), log)
}
