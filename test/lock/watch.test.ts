/**
 * A watch that etcd cancels (its start revision compacted) on a watch stream that stays open
 * (other watchers on it): the etcd3 client has already dropped it, and cancelling it again made
 * the client throw inside its stream handler, an uncaught exception that ends the process.
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
