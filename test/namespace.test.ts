/** A locker on an etcd3 `Namespace` keeps all its keys under the namespace, and still excludes. */
import { expect, it } from 'vitest'
import { Etcd3Locker } from '../src/index.js'
import {
  keysUnder,
  newClient,
  signal,
  uniquePrefix,
  untilKeyCount,
  untilNoKeys,
  within,
} from './harness/index.js'

const never = () => new AbortController().signal

it('two lockers on client.namespace(ns) queue under ns, hand over, and leave no key', async () => {
  const ns = `${uniquePrefix('ns')}/`
  const root = newClient()
  const a = new Etcd3Locker(newClient().namespace(ns), { prefix: '/tusd', ttl: 10, retainLocks: 0 })
  const b = new Etcd3Locker(newClient().namespace(ns), { prefix: '/tusd', ttl: 10, retainLocks: 0 })
  const held = a.newLock('u')
  const asked = signal()
  await held.lock(never(), () => asked.fire())
  const waiter = b.newLock('u')
  const waiting = waiter.lock(never(), () => {})
  await within(untilKeyCount(root, `${ns}/tusd/u/`, 2), 5_000, 'both entries under ns')
  await within(asked.promise, 5_000, 'the holder hears the waiter')
  await held.unlock()
  await within(waiting, 5_000, 'the waiter after unlock')
  await waiter.unlock()
  await untilNoKeys(root, ns)
  expect(await keysUnder(root, '/tusd/u/')).toEqual([]) // nothing was written outside ns
  await Promise.all([a.close(), b.close()])
})
