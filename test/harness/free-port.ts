/**
 * Free loopback ports for the processes the tests start (etcd members, servers, S3).
 *
 * A port from `listen(0)` lies in the kernel's ephemeral range, the one it also takes outgoing
 * connections' source ports from. Between our check and the child's bind, any outgoing
 * connection (a starting etcd member dialling its peers, a client reconnecting) may take it,
 * and the child then fails with "address already in use". Below that range the kernel hands
 * out no port by itself, so a port found free there stays free until someone binds it.
 */
import { randomInt } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

const LOWEST = 10_000
/** Ports this process has handed out: free until their child binds, so not free to hand out. */
const handedOut = new Set<number>()

/** A TCP port free on 127.0.0.1 right now, and not handed out before by this process. */
export async function freePort(): Promise<number> {
  const below = ephemeralRangeStart()
  if (below !== undefined && below - LOWEST >= 1_000) {
    for (let tries = 0; tries < 100; tries++) {
      const port = LOWEST + randomInt(below - LOWEST)
      if (handedOut.has(port)) continue
      const free = await bindAndRelease(port).then(
        () => true,
        () => false,
      )
      if (!free) continue
      handedOut.add(port)
      return port
    }
  }
  // Not Linux, or a range that leaves no room below: the kernel's choice.
  for (;;) {
    const port = await bindAndRelease(0)
    if (handedOut.has(port)) continue
    handedOut.add(port)
    return port
  }
}

/** The lowest ephemeral port (Linux), or undefined where that cannot be read. */
function ephemeralRangeStart(): number | undefined {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)
    const start = Number(low)
    return Number.isInteger(start) && start > 0 ? start : undefined
  } catch {
    return undefined
  }
}

/** Binds `port` on 127.0.0.1 (0: one the kernel picks) and lets it go; resolves with it. */
function bindAndRelease(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      )
    })
  })
}
