import { describe, expect, it } from 'vitest'
import type { Etcd3Locker } from '../../src/index.js'
import { QueueEntry } from '../../src/lock/queue-entry.js'
import { Session } from '../../src/session/session.js'
import { InFlightLimit } from '../../src/util/in-flight-limit.js'
import {
  deferCleanup,
  endpoints,
  newClient,
  newLocker,
  signal,
  startProxy,
  type TcpProxy,
  uniquePrefix,
  within,
} from '../harness/index.js'

const never = () => new AbortController().signal

function locker(hosts: string[], prefix: string): Etcd3Locker {
  const l = newLocker({ prefix, ttl: 10 }, hosts)
  return l
}

/** Compacts etcd's history up to its current revision. */
async function compactAll(): Promise<void> {
  const client = newClient()
  const { header } = await client.get('compaction-probe').exec()
  await client.kv.compact({ revision: header.revision, physical: true })
}

describe('compaction', () => {
  it('while a waiter watches: it still acquires after the holder unlocks', async () => {
    const prefix = uniquePrefix('compact')
    const held = locker(endpoints(), prefix).newLock('u')
    const contended = signal()
    await held.lock(never(), () => contended.fire())
    const acquired = locker(endpoints(), prefix)
      .newLock('u')
      .lock(never(), () => {})
    await within(contended.promise, 2_000, 'holder sees the waiter')
    await compactAll()
    await held.unlock()
    await within(acquired, 2_000, 'waiter acquires after compaction')
  })

  it('when the waiter was cut off meanwhile: its watch resumes from a compacted revision, it still acquires', async () => {
    const prefix = uniquePrefix('compact-cut')
    const proxy: TcpProxy = await startProxy(endpoints()[0] ?? '')
    deferCleanup(() => proxy.close())
    const held = locker(endpoints(), prefix).newLock('u')
    const contended = signal()
    await held.lock(never(), () => contended.fire())
    const acquired = locker([proxy.endpoint], prefix)
      .newLock('u')
      .lock(never(), () => {})
    await within(contended.promise, 2_000, 'holder sees the waiter')

    proxy.cut('reset')
    await held.unlock()
    const client = newClient()
    for (let i = 0; i < 10; i++) await client.put(`${prefix}-noise/${i}`).value('x')
    await compactAll()
    proxy.restore()
    await within(acquired, 10_000, 'waiter acquires after restore')
  })

  it('a watch started at a compacted revision does not hang: the waiter looks again', async () => {
    const prefix = uniquePrefix('compact-direct')
    const client = newClient()
    const session = await Session.grant(client, {
      ttl: 10,
      grantTimeout: 1_500,
      safetyMargin: 1_000,
      endpoints: endpoints().join(','),
    })
    deferCleanup(() => session.revoke(1_000))
    await client.put(`${prefix}/u/holder`).value('')
    await compactAll()
    const entry = new QueueEntry(client, `${prefix}/u/`, session, new InFlightLimit(1))
    // Revision 1 is long compacted: etcd cancels the watch, and the waiter must look again.
    for (const last of [true, false]) {
      await expect(
        within(
          entry.waitForTurn({ key: `${prefix}/u/holder`, revision: 1n, last }, never()),
          2_000,
          'waitForTurn returns on a compacted revision',
        ),
      ).resolves.toBe('look-again')
    }
    expect(await client.get(`${prefix}/u/holder`).string()).toBe('')
  })
})
