/**
 * A holder told its session is lost has safetyMargin ms before etcd may give its lock away, and
 * @tus/server lets its PATCH run lockDrainTimeout ms: the locker says when the first is shorter.
 */
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import { deferCleanup, newClient, signal, uniquePrefix, within } from '../harness/index.js'

describe('a safetyMargin shorter than lockDrainTimeout', () => {
  it('is warned about once, naming both values; a consistent pair is not', async () => {
    const warned = signal<Error & { code?: string }>()
    const onWarning = (warning: Error & { code?: string }) => {
      if (warning.code === 'TUS_ETCD3_LOCKER_DRAIN_MARGIN') warned.fire(warning)
    }
    process.on('warning', onWarning)
    deferCleanup(() => process.off('warning', onWarning))
    const open = (options: { ttl: number; lockDrainTimeout?: number }) => {
      const locker = new Etcd3Locker(newClient(), { prefix: uniquePrefix('margin'), ...options })
      deferCleanup(() => locker.close())
    }
    open({ ttl: 10, lockDrainTimeout: 2_000 }) // margin 2 500 ms covers it: no warning
    open({ ttl: 60 }) // margin 3 500 ms covers the default 3 000: no warning
    open({ ttl: 10 }) // margin 2 500 ms < 3 000 ms
    const warning = await within(warned.promise, 2_000, 'the warning')
    expect(warning.message).toContain(
      'safetyMargin 2500 ms is shorter than lockDrainTimeout 3000 ms',
    )
  })

  it('is refused when lockDrainTimeout is not a positive number of ms', () => {
    expect(() => new Etcd3Locker(newClient(), { lockDrainTimeout: 0 })).toThrow(RangeError)
    expect(() => new Etcd3Locker(newClient(), { lockDrainTimeout: '3s' as never })).toThrow(
      /option "lockDrainTimeout" must be a number/,
    )
  })
})
