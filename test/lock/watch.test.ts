/**
 * Delete watches (deletedOrInterrupted, and a waiter's TurnWait). A watch that etcd cancels (its start revision
 * compacted) on a watch stream that stays open (other watchers on it): the etcd3 client had
 * already dropped it, and cancelling it again made the client throw inside its stream handler,
 * an uncaught exception that ends the process. And a watch that starts before the revision the
 * waiter saw its queue at (a member behind the one that answered the read): a delete of an older
 * key of the predecessor's name must not count as the predecessor's (TurnWait).
 */
import type { IEvent } from 'etcd3'
import { describe, expect, it } from 'vitest'
import { LockLostError } from '../../src/errors.js'
import { TurnWait, type Waiting } from '../../src/lock/turn-wait.js'
import { deletedOrInterrupted } from '../../src/lock/watch.js'
import { deferCleanup, newClient, uniquePrefix, untilTrue, within } from '../harness/index.js'

describe('a watch cancelled by etcd', () => {
  it('a delete watch from a compacted revision resolves "interrupted", and nothing throws', async () => {
    const client = newClient()
    const prefix = uniquePrefix('compacted-watch')
    // Another watcher keeps the client's watch stream open, as a locker's always do.
    const other = await client.watch().key(`${prefix}/other`).create()
    deferCleanup(() => other.cancel())
    const first = await client.put(`${prefix}/a`).value('1').exec()
    const last = await client.put(`${prefix}/a`).value('2').exec()
    await client.kv.compact({ revision: last.header.revision })
    const outcome = await within(
      deletedOrInterrupted(
        client,
        `${prefix}/a`,
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
  it("a delete of an older key of the predecessor's name does not count: our own delete after it does", async () => {
    const client = newClient()
    const queue = `${uniquePrefix('stale-delete')}/`
    const predecessor = `${queue}p`
    const ours = `${queue}o`
    const start = await client.put(ours).value('x').exec()
    await client.put(predecessor).value('older').exec()
    await client.delete().key(predecessor).exec()
    // The predecessor's key again (same session, next request): the waiter saw the queue here.
    const seen = BigInt((await client.put(predecessor).value('newer').exec()).header.revision)
    const entry: Waiting = {
      key: ours,
      queuePrefix: queue,
      predecessor: async () => ({ key: predecessor, revision: seen, last: true }),
    }
    // What etcd delivered to the wait, as the hub hands it over.
    const delivered: string[] = []
    class Recorded extends TurnWait {
      override events(events: IEvent[]): void {
        for (const event of events) delivered.push(`${event.kv.key}@${event.kv.mod_revision}`)
        super.events(events)
      }
    }
    const waited = new Promise<'first' | 'look-again'>((resolve, reject) => {
      new Recorded(
        client,
        entry,
        { key: predecessor, revision: seen, last: true },
        new AbortController().signal,
        { turnCame: resolve, turnFailed: reject },
        // From before the older key's delete, as a watch from 'now' on a member behind.
        BigInt(start.header.revision),
      ).start()
    })
    let outcome: unknown
    waited.then(
      (value) => {
        outcome = value
      },
      (error: unknown) => {
        outcome = error
      },
    )
    // The older key's delete reaches the wait first, alone (etcd catches the watch up).
    await untilTrue(() => delivered.length > 0, 5_000, "the older key's delete delivered")
    expect(delivered).toEqual([`${predecessor}@${seen - 1n}`])
    // Taken as the predecessor's delete, it would have made the wait resolve 'first'.
    await new Promise((resolve) => setImmediate(resolve))
    expect(outcome).toBeUndefined()
    await client.delete().key(ours).exec()
    await expect(within(waited, 5_000, 'our own delete')).rejects.toBeInstanceOf(LockLostError)
  })
})
