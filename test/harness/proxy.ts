/**
 * A TCP proxy between a client and etcd that a test can cut and restore (loopback only).
 *
 * - `cut('blackhole')` (default): like a network partition, connections stay open but nothing
 *   flows either way; new connections are accepted and held. Data sent meanwhile is delivered
 *   after `restore()`, as TCP would after a partition heals.
 * - `cut('reset')`: every connection is closed and new ones are refused until `restore()`.
 * - `cut('hold-answers')`: requests still reach etcd, which applies them, but its answers (and
 *   watch events) are held back until `restore()`: calls meanwhile pass their deadline with the
 *   outcome unknown, while the connections and their streams stay up.
 */
import { connect, createServer, type Socket } from 'node:net'

export interface TcpProxy {
  /** `127.0.0.1:<port>` to give the client instead of etcd's endpoint. */
  readonly endpoint: string
  cut(mode?: 'blackhole' | 'reset' | 'hold-answers'): void
  restore(): void
  close(): Promise<void>
}

interface Pair {
  client: Socket
  upstream: Socket | undefined
  /** etcd's bytes to this client held back, in order, while answers are held. */
  held: Buffer[]
}

export async function startProxy(target: string): Promise<TcpProxy> {
  const [host = '127.0.0.1', port = '2379'] = target.split(':')
  const pairs = new Set<Pair>()
  let mode: 'open' | 'blackhole' | 'reset' | 'hold-answers' = 'open'

  const link = (pair: Pair) => {
    const upstream = connect(Number(port), host)
    pair.upstream = upstream
    pair.client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => {
      if (mode === 'hold-answers') pair.held.push(chunk)
      else pair.client.write(chunk)
    })
    const drop = () => {
      pair.client.destroy()
      upstream.destroy()
      pairs.delete(pair)
    }
    upstream.on('error', drop).on('close', drop)
    pair.client.on('error', drop).on('close', drop)
  }

  const server = createServer((client) => {
    if (mode === 'reset') {
      client.destroy()
      return
    }
    const pair: Pair = { client, upstream: undefined, held: [] }
    pairs.add(pair)
    if (mode === 'blackhole') {
      client.pause()
      client.on('error', () => pairs.delete(pair))
      return
    }
    link(pair)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('proxy has no port')

  return {
    endpoint: `127.0.0.1:${address.port}`,
    cut: (how = 'blackhole') => {
      mode = how
      for (const pair of pairs) {
        if (how === 'hold-answers') continue
        if (how === 'reset') {
          pair.client.destroy()
          pair.upstream?.destroy()
        } else {
          pair.client.pause()
          pair.upstream?.pause()
        }
      }
      if (how === 'reset') pairs.clear()
    },
    restore: () => {
      mode = 'open'
      for (const pair of pairs) {
        for (const chunk of pair.held.splice(0)) pair.client.write(chunk)
        if (pair.upstream === undefined) {
          pair.client.resume()
          link(pair)
        } else {
          pair.client.resume()
          pair.upstream.resume()
        }
      }
    },
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy()
        pair.upstream?.destroy()
      }
      pairs.clear()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
