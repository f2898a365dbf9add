import { describe, expect, it } from 'vitest'
import { runProcess } from '../harness/child.js'
import {
  endpoints,
  keysUnder,
  newClient,
  newLocker,
  signal,
  uniquePrefix,
  within,
} from '../harness/index.js'

function etcdctlLock(name: string) {
  return runProcess('etcdctl', [`--endpoints=${endpoints().join(',')}`, 'lock', name], {
    ETCDCTL_API: '3',
  })
}

/** How long a blocked party must stay blocked before we call it blocked. */
const BLOCKED_WINDOW_MS = 500

describe("interop with etcd's own Mutex (etcdctl lock)", () => {
  it('while etcdctl holds P/<id>, our lock waits; it holds once etcdctl lets go', async () => {
    const prefix = uniquePrefix('ctl-holds')
    const ctl = etcdctlLock(`${prefix}/upload-1`)
    try {
      const ctlKey = await within(
        ctl.waitForLine((l) => l.startsWith(`${prefix}/upload-1/`)),
        5_000,
        'etcdctl holds',
      )
      const locker = newLocker({ prefix, ttl: 10 })
      let holds = false
      const acquired = locker
        .newLock('upload-1')
        .lock(new AbortController().signal, () => {})
        .then(() => {
          holds = true
        })
      await new Promise((resolve) => setTimeout(resolve, BLOCKED_WINDOW_MS))
      expect(holds).toBe(false)
      expect(await keysUnder(newClient(), `${prefix}/upload-1/`)).toContain(ctlKey)

      await ctl.kill('SIGTERM')
      await within(acquired, 2_000, 'our lock after etcdctl released')
    } finally {
      await ctl.kill('SIGKILL')
    }
  })

  it('while we hold, etcdctl lock stays blocked and our holder is asked to release', async () => {
    const prefix = uniquePrefix('we-hold')
    const locker = newLocker({ prefix, ttl: 10 })
    const released = signal()
    const lock = locker.newLock('upload-2')
    await lock.lock(new AbortController().signal, () => released.fire())

    const ctl = etcdctlLock(`${prefix}/upload-2`)
    try {
      await within(released.promise, 5_000, 'requestRelease because etcdctl queued')
      await new Promise((resolve) => setTimeout(resolve, BLOCKED_WINDOW_MS))
      expect(ctl.lines()).toEqual([])

      await lock.unlock()
      await within(
        ctl.waitForLine((l) => l.startsWith(`${prefix}/upload-2/`)),
        2_000,
        'etcdctl holds after our unlock',
      )
    } finally {
      await ctl.kill('SIGKILL')
    }
  })
})
