/**
 * The waiters' delete watch (firstDeleted). A watch that etcd cancels (its start revision
 * compacted) on a watch stream that stays open (other watchers on it): the etcd3 client had
 * already dropped it, and cancelling it again made the client throw inside its stream handler,
 * an uncaught exception that ends the process. And a watch that starts before the revision the
 * waiter saw its queue at (a member behind the one that answered the read): a delete of an older
 * key of the predecessor's name must not count as the predecessor's.
 */
import { describe, expect, it } from 'vitest'
import { firstDeleted } from '../../src/lock/watch.js'
import { deferCleanup, newClient, uniquePrefix, within } from '../harness/index.js'

describe('a watch cancelled by etcd', () => {
  it('firstDeleted from a compacted revision resolves "interrupted", and nothing throws', async () => {
    const client = newClient()
    const prefix = uniquePrefix('compacted-watch')
    // Another watcher keeps the client's watch stream open, as a locker's always do.
    const other = await client.watch().key(`${prefix}/other`).create()
    deferCleanup(() => other.cancel())
    const first = await client.put(`${prefix}/a`).value('1').exec()
    const last = await client.put(`${prefix}/a`).value('2').exec()
    await client.kv.compact({ revision: last.header.revision })
    const outcome = await within(
      firstDeleted(
        client,
        { prefix: `${prefix}/` },
        [`${prefix}/a`],
        BigInt(first.header.revision),
        new AbortController().signal,
      ),
      5_000,
      'the compacted watch',
    )
    expect(outcome).toBe('interrupted')
    // Give a wrong cancel's answer time to arrive: it would throw in the client's stream handler.
    const probe = await client.watch().key(`${prefix}/probe`).create()
    await client.put(`${prefix}/probe`).value('x').exec()
    await probe.cancel()
  })
})

describe('a delete watch that starts before the queue was seen', () => {
  it('a delete of an older key of the same name does not count', async () => {
    const client = newClient()
    const prefix = uniquePrefix('stale-delete')
    const predecessor = `${prefix}/p`
    const other = `${prefix}/o`
    const start = await client.put(other).value('x').exec()
    await client.put(predecessor).value('older').exec()
    await client.delete().key(predecessor).exec()
    // The predecessor's key again (same session, next request): the waiter saw the queue here.
    const seen = await client.put(predecessor).value('newer').exec()
    const deleted = firstDeleted(
      client,
      { prefix: `${prefix}/` },
      [predecessor, other],
      BigInt(start.header.revision),
      new AbortController().signal,
      undefined,
      BigInt(seen.header.revision),
    )
    await client.delete().key(other).exec()
    expect(await within(deleted, 5_000, 'the first delete after the queue was seen')).toBe(other)
  })
})
