import { describe, expect, it } from 'vitest'
import { runTs } from './harness/child.js'
import {
  endpoints,
  keysUnder,
  newClient,
  newLocker,
  uniquePrefix,
  within,
} from './harness/index.js'

const TTL = 2

describe('a holder that dies', () => {
  it('keeps its lock past the TTL while alive; after SIGKILL another instance acquires once the lease expires', async () => {
    const prefix = uniquePrefix('crash')
    const holder = runTs('../fixtures/hold-lock.ts', [
      endpoints().join(','),
      prefix,
      'u',
      String(TTL),
    ])
    try {
      await within(holder.waitForLine('held'), 15_000, 'child holds the lock')

      const locker = newLocker({ prefix, ttl: TTL })
      let acquiredAt = 0
      const acquired = locker
        .newLock('u')
        .lock(new AbortController().signal, () => {})
        .then(() => {
          acquiredAt = Date.now()
        })
      await within(holder.waitForLine('release-requested'), 2_000, "child's requestRelease")

      // Keepalive: more than twice the TTL passes and the child still holds.
      const alive = await Promise.race([
        acquired.then(() => 'acquired'),
        new Promise((resolve) => setTimeout(() => resolve('still held'), 2.5 * TTL * 1_000)),
      ])
      expect(alive).toBe('still held')
      expect(await keysUnder(newClient(), prefix)).toHaveLength(2)

      const killedAt = Date.now()
      await holder.kill('SIGKILL')
      await within(acquired, (TTL + 2) * 1_000, 'acquired after the lease expired')
      // The lease was renewed at most TTL/3 before the kill, so etcd keeps it at least 2/3 TTL.
      expect(acquiredAt - killedAt).toBeGreaterThanOrEqual(((TTL * 2) / 3) * 1_000 - 100)
      expect(acquiredAt - killedAt).toBeLessThanOrEqual((TTL + 2) * 1_000)
    } finally {
      await holder.kill('SIGKILL')
    }
  })
})
