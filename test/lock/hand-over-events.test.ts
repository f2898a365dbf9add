/**
 * What a hand-over from a kept key costs etcd in watch events, as etcd counts them
 * (`etcd_debugging_mvcc_events_total`, on a member of this file's own): the keeper hears the
 * waiter's enqueue, the waiter hears the keeper's delete, and nothing more. The keeper's watch
 * must be cancelled before its delete goes out, or etcd sends the keeper its own delete too.
 */
import { describe, expect, it } from 'vitest'
import { Etcd3Locker } from '../../src/index.js'
import { watchHubOf } from '../../src/watch/hub.js'
import {
  deferCleanup,
  etcdMetric,
  newClient,
  privateEtcd,
  uniquePrefix,
  untilTrue,
} from '../harness/index.js'

const never = () => new AbortController().signal
const HAND_OVERS = 40
/** Reuses of each key by its keeper before the waiter takes it: it keeps keys it reuses. */
const REUSES = 4

describe('a hand-over from a kept key', () => {
  const etcd = privateEtcd()
  const events = () => etcdMetric(etcd.endpoint, 'etcd_debugging_mvcc_events_total')

  it(`costs etcd two watch events (${HAND_OVERS} hand-overs)`, async () => {
    const prefix = uniquePrefix('hand-over-events')
    const keeperClient = newClient(etcd.cluster.endpoints)
    const keeper = new Etcd3Locker(keeperClient, { prefix, retainLocks: 60_000 })
    const waiter = new Etcd3Locker(newClient(etcd.cluster.endpoints), {
      prefix,
      retainLocks: 60_000,
    })
    deferCleanup(() => Promise.all([keeper.close(), waiter.close()]))
    await Promise.all([keeper.ready(), waiter.ready()])
    const hub = watchHubOf(keeperClient)
    let handedOver = 0
    let counted = 0
    for (let i = 0; i < HAND_OVERS; i++) {
      const id = `u${i}`
      for (let reuse = 0; reuse < REUSES; reuse++) {
        const kept = keeper.newLock(id)
        await kept.lock(never(), () => {})
        await kept.unlock()
      }
      if (keeper.retainedLocks !== 1) continue
      // The kept key's watch created and read (so the take below is the waiter's alone).
      await untilTrue(
        () => hub.counters.createsInFlight === 0 && hub.counters.requestsQueued === 0,
        5_000,
        'the kept key watched',
      )
      const before = await events()
      const taker = waiter.newLock(id)
      await taker.lock(never(), () => {})
      // The keeper's delete was heard; its own watch's cancel, and any event etcd still sends
      // it, are on their way: wait for the keeper to hold no watch of this key.
      await untilTrue(() => keeper.retainedLocks === 0, 5_000, 'the kept key given up')
      await untilTrue(() => hub.counters.watchesOpen === 0, 5_000, "the keeper's watch gone")
      counted += (await events()) - before
      handedOver += 1
      await taker.unlock()
    }
    expect(handedOver, 'hand-overs from a kept key').toBeGreaterThanOrEqual(HAND_OVERS / 2)
    // Two each: the enqueue heard by the keeper, the delete by the waiter (none when the delete
    // came before the waiter's watch, whose read then found the key gone).
    expect(counted, `watch events in ${handedOver} hand-overs`).toBeLessThanOrEqual(2 * handedOver)
  }, 120_000)
})
