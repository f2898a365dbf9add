import { describe, expect, it } from 'vitest'
import { LockLostError } from '../../src/index.js'
import { lockerBehindProxy, newLocker, signal, uniquePrefix, within } from '../harness/index.js'

const never = () => new AbortController().signal

describe('fenced KV writes', () => {
  it.each([true, false])(
    'a holder whose lock was taken over gets LockLostError on set; etcd keeps the new holder value (leasing: %s)',
    async (leasing) => {
      const TTL = 2
      const prefix = uniquePrefix('fence')
      // Without the etcd3 client's default breaker: the calls that fail while the proxy is cut
      // would open it for 5 s, and the deposed write after the restore would be refused
      // ("could not reach etcd") before the fence is even asked (once in CI on 3.5.16).
      const { proxy, locker: deposed } = await lockerBehindProxy({ prefix, ttl: TTL })
      const next = newLocker({ prefix, ttl: 10 })
      const deposedStore = deposed.kvStore<{ by: string }>({ leasing })
      const nextStore = next.kvStore<{ by: string }>({ leasing })

      const lost = signal()
      const held = deposed.newLock('upload')
      await held.lock(never(), () => lost.fire())
      await deposedStore.set('upload', { by: 'first holder' })
      await deposedStore.get('upload') // with leasing, now served from its cache

      proxy.cut()
      await within(lost.promise, (TTL + 1) * 1_000, 'the holder hears its session is lost')
      const taken = next.newLock('upload')
      await within(
        taken.lock(never(), () => {}),
        (TTL + 2) * 1_000,
        'another instance acquires',
      )
      await nextStore.set('upload', { by: 'new holder' })
      proxy.restore()

      // The deposed holder has not unlocked yet (its request is still draining) and writes.
      await expect(deposedStore.set('upload', { by: 'deposed holder' })).rejects.toBeInstanceOf(
        LockLostError,
      )
      await expect(deposedStore.delete('upload')).rejects.toBeInstanceOf(LockLostError)
      expect(await nextStore.get('upload')).toEqual({ by: 'new holder' })
      expect(await deposedStore.get('upload')).toEqual({ by: 'new holder' })
      await held.unlock()
      await taken.unlock()
    },
    30_000,
  )

  it('writes of an upload this process does not hold are not fenced', async () => {
    const prefix = uniquePrefix('unfenced')
    const locker = newLocker({ prefix })
    await locker.kvStore().set('free', { id: 'free' } as never)
    expect(await locker.kvStore().get('free')).toEqual({ id: 'free' })
  })
})
