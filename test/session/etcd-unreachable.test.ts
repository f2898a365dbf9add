import { describe, expect, it } from 'vitest'
import { SessionUnavailableError } from '../../src/index.js'
import {
  deferCleanup,
  type EtcdCluster,
  freePort,
  newLocker,
  startEtcd,
  uniquePrefix,
  within,
} from '../harness/index.js'

describe('etcd down at start', () => {
  it('lock() and ready() fail in time, naming the endpoint; once etcd is up the same locker works', async () => {
    const port = await freePort()
    const endpoint = `127.0.0.1:${port}`
    const locker = newLocker(
      {
        prefix: uniquePrefix('down'),
        acquireLockTimeout: 2_000,
        grantTimeout: 1_000,
      },
      [endpoint],
    )

    let started = Date.now()
    await expect(
      locker.newLock('u').lock(new AbortController().signal, () => {}),
    ).rejects.toBeDefined()
    expect(Date.now() - started).toBeLessThan(2_000 + 1_000)

    started = Date.now()
    const error = await locker.ready().catch((e: unknown) => e)
    expect(Date.now() - started).toBeLessThan(1_000 + 1_000)
    expect(error).toBeInstanceOf(SessionUnavailableError)
    expect((error as Error).message).toContain(endpoint)

    const etcd: EtcdCluster = await startEtcd(1, [port])
    deferCleanup(() => etcd.stop())
    const upAt = Date.now()
    // What a server sees: requests keep coming; each fails fast until etcd answers again.
    let recovered = false
    while (!recovered && Date.now() - upAt < 15_000) {
      recovered = await locker.ready().then(
        () => true,
        () => false,
      )
    }
    expect(recovered).toBe(true)
    const lock = locker.newLock('u')
    await within(
      lock.lock(new AbortController().signal, () => {}),
      5_000,
      'lock once etcd is up',
    )
    await lock.unlock()
    console.log(`[figure] etcd up -> locker works again: ${Date.now() - upAt} ms`)
  }, 40_000)
})
