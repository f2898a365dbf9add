import { describe, expect, it } from 'vitest'
import { deferCleanup, etcdMetric, newLocker, privateEtcd, uniquePrefix } from '../harness/index.js'

const KEEPALIVES = {
  grpc_service: 'etcdserverpb.Lease',
  grpc_method: 'LeaseKeepAlive',
}

// Defect: a TTL whose keepalive interval or deadline is above 2^31 - 1 ms overflowed Node's
// timers, which then fire after 1 ms: a keepalive every millisecond and a warning each time.
describe('a TTL too long for a Node timer', () => {
  // A member of its own: its keepalive count is this test's alone.
  const etcd = privateEtcd()

  it.each([3_000_000, 9_000_000_000])(
    'ttl %i s: an idle locker sends no keepalive flood and no TimeoutOverflowWarning',
    async (ttl) => {
      const warnings: string[] = []
      const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
      process.on('warning', onWarning)
      deferCleanup(() => process.off('warning', onWarning))
      const endpoint = etcd.endpoint
      const locker = newLocker({ prefix: uniquePrefix('huge-ttl'), ttl }, etcd.cluster.endpoints)
      await locker.ready()
      const lock = locker.newLock('u')
      await lock.lock(new AbortController().signal, () => {})
      await lock.unlock()
      const before = await etcdMetric(endpoint, 'grpc_server_msg_received_total', KEEPALIVES)
      // A window to count in (not a wait for an event): with overflowing timers ~1 000 arrive.
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      const sent =
        (await etcdMetric(endpoint, 'grpc_server_msg_received_total', KEEPALIVES)) - before
      console.log(
        `[figure] ttl ${ttl}: ${sent} keepalives in 1 s idle, ${warnings.length} warnings`,
      )
      expect(sent).toBeLessThanOrEqual(2)
      expect(warnings.filter((w) => w.startsWith('TimeoutOverflowWarning'))).toEqual([])
    },
  )
})
