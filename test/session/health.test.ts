import { Etcd3 } from 'etcd3'
import { describe, expect, it } from 'vitest'
import { createEtcdClient, Etcd3Locker, LockerError } from '../../src/index.js'
import {
  deferCleanup,
  endpoints,
  privateEtcd,
  rejectionOf,
  uniquePrefix,
  within,
} from '../harness/index.js'

describe('locker.health() (readiness: could a lock be taken now?)', () => {
  const etcd = privateEtcd()

  it('resolves while etcd answers, rejects with 503 once it does not, resolves again when it is back', async () => {
    const client = createEtcdClient({ hosts: etcd.cluster.endpoints })
    deferCleanup(() => client.close())
    const locker = new Etcd3Locker(client, { prefix: uniquePrefix('health'), ttl: 10 })
    deferCleanup(() => locker.close())
    await within(locker.health(), 3_000, 'health() with etcd up')

    const member = etcd.cluster.members[0]
    if (!member) throw new Error('no member')
    await member.kill()
    // The session is still trusted (ttl 10): health() must not trust it alone.
    const down = await rejectionOf(locker.health(), 5_000, 'health() with etcd down')
    expect(down.error).toBeInstanceOf(LockerError)
    expect((down.error as LockerError).status_code).toBe(503)
    console.log(`[figure] health() with etcd down rejected in ${Math.round(down.ms)} ms`)

    await member.restart()
    const backAt = performance.now()
    // Asked again and again (each call is bounded) until it answers 200, for at most 10 s.
    let healthy = false
    while (!healthy && performance.now() - backAt < 10_000) {
      healthy = await locker.health().then(
        () => true,
        () => false,
      )
      if (!healthy) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await within(locker.health(), 3_000, 'health() with etcd back')
    console.log(
      `[figure] health() ok again ${Math.round(performance.now() - backAt)} ms after etcd was healthy`,
    )
    // And a lock can be taken at once.
    const lock = locker.newLock('u')
    await within(
      lock.lock(new AbortController().signal, () => {}),
      1_000,
      'a lock after health()',
    )
    await lock.unlock()
  }, 30_000)
})

describe('a client with the etcd3 default fault handling', () => {
  it('makes the first such locker of the process warn once, saying what to change', () => {
    const warnings: Array<{ message: string; code?: string }> = []
    const onWarning = (w: Error & { code?: string }) =>
      warnings.push({ message: w.message, code: w.code })
    process.on('warning', onWarning)
    deferCleanup(() => process.off('warning', onWarning))
    const recommended = createEtcdClient({ hosts: endpoints() })
    const plain = new Etcd3({ hosts: endpoints() })
    deferCleanup(() => {
      recommended.close()
      plain.close()
    })
    return (async () => {
      new Etcd3Locker(recommended, { prefix: uniquePrefix('warn') }).close()
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).toEqual([])
      new Etcd3Locker(plain, { prefix: uniquePrefix('warn') }).close()
      new Etcd3Locker(plain, { prefix: uniquePrefix('warn') }).close()
      await new Promise((resolve) => setImmediate(resolve))
      const ours = warnings.filter((w) => w.code === 'TUS_ETCD3_LOCKER_DEFAULT_FAULT_HANDLING')
      expect(ours).toHaveLength(1)
      expect(ours[0]?.message).toMatch(/createEtcdClient/)
    })()
  })
})
