/**
 * A small round-robin HTTP proxy on loopback: the load balancer in front of the tus instances of
 * `npm start` (nginx plays this part in docker-compose.yml).
 *
 * An instance that refuses connections is skipped for a few seconds, so a client's retry reaches
 * a live one; requests already inside a dying instance fail and the tus client resumes them.
 * `GET /holders` asks every instance's `/locks` and answers which instance (name and pid) holds
 * each upload now: the demo page shows it.
 */
import { createServer, request, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Transform, type TransformCallback } from 'node:stream'

export interface RoundRobin {
  readonly url: string
  close(): Promise<void>
}

export interface RoundRobinOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number
  /** Limit each request body to this many bytes per second (for demos and tests). */
  uploadBytesPerSecond?: number
  /** The targets' names for `log` (default: their origins). */
  names?: string[]
  /** Where to say that a target stopped or started answering (default: nowhere). */
  log?: (line: string) => void
}

/** How long an instance that refused a connection is left out of the rotation. */
const DOWN_FOR_MS = 3_000

export async function startRoundRobin(
  targets: string[],
  options: RoundRobinOptions = {},
): Promise<RoundRobin> {
  let next = 0
  const downUntil = new Map<string, number>()
  const log = options.log ?? (() => {})
  const nameOf = (target: string) => options.names?.[targets.indexOf(target)] ?? target
  const pick = (): string => {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[next++ % targets.length] ?? ''
      if ((downUntil.get(target) ?? 0) <= Date.now()) return target
    }
    return targets[next++ % targets.length] ?? ''
  }
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/holders') return void holders(targets, res)
    const target = pick()
    const url = new URL(target)
    const upstream = request(
      {
        host: url.hostname,
        port: url.port,
        method: req.method,
        path: req.url,
        headers: {
          ...req.headers,
          'x-forwarded-host': req.headers.host,
          'x-forwarded-proto': 'http',
        },
      },
      (answer) => {
        if (downUntil.delete(target))
          log(`[proxy] ${nameOf(target)} answers again: back in the rotation`)
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
        // An instance that dies mid-answer: end the client's connection too, so it retries.
        answer.once('error', () => res.destroy())
      },
    )
    // A client that goes away mid-request (a paused upload): end the instance's request too, or
    // it would keep waiting for the body, holding the upload's lock.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') {
        if (!downUntil.has(target)) {
          log(`[proxy] ${nameOf(target)} refuses connections: left out of the rotation`)
        }
        downUntil.set(target, Date.now() + DOWN_FOR_MS)
      }
      // Close the client's connection too: a browser still sending the body would otherwise
      // wait for it, instead of seeing the failure and resuming through another instance.
      if (res.headersSent) return void res.destroy()
      res.writeHead(502, { connection: 'close' })
      res.end(() => req.socket.destroy())
    })
    const limit = options.uploadBytesPerSecond
    if (limit) req.pipe(new Throttle(limit)).pipe(upstream)
    else req.pipe(upstream)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', resolve)
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Answers `{ "<upload id>": { instance, pid } }` from every live target's `/locks`. */
async function holders(targets: string[], res: ServerResponse): Promise<void> {
  const answers = await Promise.all(
    targets.map((target) =>
      fetch(`${target}/locks`, { signal: AbortSignal.timeout(1_000) })
        .then((r) => r.json() as Promise<{ instance: string; pid: number; held: string[] }>)
        .catch(() => undefined),
    ),
  )
  const byId: Record<string, { instance: string; pid: number }> = {}
  for (const answer of answers) {
    for (const id of answer?.held ?? [])
      byId[id] = { instance: answer?.instance ?? '', pid: answer?.pid ?? 0 }
  }
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(byId))
}

/** Passes bytes on at most `bytesPerSecond`, in slices of 1/20 s. */
class Throttle extends Transform {
  constructor(private readonly bytesPerSecond: number) {
    super()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const slice = Math.max(1, Math.floor(this.bytesPerSecond / 20))
    const push = (offset: number) => {
      if (offset >= chunk.length) return done()
      this.push(chunk.subarray(offset, offset + slice))
      setTimeout(() => push(offset + slice), 50)
    }
    push(0)
  }
}
