/**
 * What this package relies on where etcd lines differ, pinned for the version under test
 * (ETCD_BIN; CI runs 3.5.16 and 3.4.23): each test expects its version's behaviour, so a new
 * line that changes one fails here first. Raw watch streams (etcd3's WatchClient), one member of
 * this file's own (its tests compact it), with periodic progress notifications every second.
 */
import { execFileSync } from 'node:child_process'
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCOutOfRangeError,
  type IWatchRequest,
  type IWatchResponse,
} from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  compareVersions,
  etcdBinaryVersion,
  progressNotifyIntervalFlag,
  requestedProgressFollowsEvents,
} from './harness/etcd-version.js'
import { type EtcdCluster, rejectionOf, startEtcd, uniquePrefix } from './harness/index.js'

const version = etcdBinaryVersion()
const progressFollowsEvents = requestedProgressFollowsEvents(version)

let etcd: EtcdCluster | undefined
let client: Etcd3
beforeAll(async () => {
  etcd = await startEtcd(1, [], { extraArgs: [`${progressNotifyIntervalFlag(version)}=1s`] })
  // One client for the file (newClient's are closed after each test).
  client = new Etcd3({ hosts: etcd.endpoints })
})
afterAll(async () => {
  client?.close()
  await etcd?.stop()
})

const bytes = (key: string) => Buffer.from(key)
const revisionOf = (r: IWatchResponse) => Number(r.header?.revision ?? 0)
/** A requested progress notification: watch id -1, no events. */
const isRequestedProgress = (r: IWatchResponse) =>
  r.watch_id === '-1' && !r.created && !r.canceled && (r.events?.length ?? 0) === 0
const kindOf = (r: IWatchResponse) =>
  r.created ? 'created' : isRequestedProgress(r) ? 'progress' : r.canceled ? 'canceled' : 'events'

/** One raw watch stream: what was sent, every answer in order, and a bounded wait for one. */
async function openStream() {
  const stream = await client.watchClient.watch()
  const responses: IWatchResponse[] = []
  let wake = () => {}
  stream.on('data', (r: IWatchResponse) => {
    responses.push(r)
    wake()
  })
  stream.on('error', () => {}) // ended by the test
  return {
    responses,
    send: (request: IWatchRequest) => stream.write(request),
    /** Index of the first answer at or after `from` that matches; rejects after `ms`. */
    async until(match: (r: IWatchResponse) => boolean, what: string, from = 0, ms = 5_000) {
      const deadline = Date.now() + ms
      for (;;) {
        const index = responses.findIndex((r, i) => i >= from && match(r))
        if (index >= 0) return index
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`${what}: not within ${ms} ms (etcd ${version})`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    },
    close: () => stream.end(),
  }
}

async function currentRevision(): Promise<number> {
  return Number((await client.get('/rev').exec()).header.revision)
}

describe(`etcd ${version}: the harness`, () => {
  it('runs the etcdctl of the same version as the members (tests that run etcdctl)', () => {
    const out = execFileSync('etcdctl', ['version'], { encoding: 'utf8' })
    expect(out).toContain(`etcdctl version: ${version}`)
  })
})

describe(`etcd ${version}: requested progress notifications (progress_request)`, () => {
  it(`on a stream with no watch: ${progressFollowsEvents ? 'not answered' : 'answered at once'}`, async () => {
    const rev = await currentRevision()
    const key = `${uniquePrefix('none')}/k`
    const stream = await openStream()
    stream.send({ progress_request: {} })
    stream.send({ create_request: { key: bytes(key) } })
    stream.send({ progress_request: {} })
    const answers = progressFollowsEvents ? 1 : 2
    const progress = () => stream.responses.filter(isRequestedProgress)
    await stream.until((r) => r.created, 'the create')
    await stream.until(() => progress().length >= answers, `${answers} progress answers`)
    // An event comes after any answer still on its way (on 3.5 answers share its channel).
    await client.put(key).value('x')
    const event = await stream.until((r) => kindOf(r) === 'events', 'the event')
    stream.close()
    const before = stream.responses.slice(0, event)
    expect(before.filter(isRequestedProgress).map(revisionOf)).toEqual(Array(answers).fill(rev))
    // 3.4.23 answers through the stream's control channel, in order with the create's answer;
    // 3.5's answer comes through the watch's channel, before or after the create's answer.
    if (!progressFollowsEvents)
      expect(before.map(kindOf)).toEqual(['progress', 'created', 'progress'])
  })

  it('with synced watches and no events: one answer, watch id -1, the store revision', async () => {
    const prefix = uniquePrefix('synced')
    const stream = await openStream()
    stream.send({ create_request: { key: bytes(`${prefix}/quiet`) } })
    stream.send({ create_request: { key: bytes(`${prefix}/loud`) } })
    await stream.until((r) => r.created && r.watch_id === '1', 'both creates')
    const rev = Number((await client.put(`${prefix}/elsewhere`).value('x').exec()).header.revision)
    stream.send({ progress_request: {} })
    const answer = await stream.until(isRequestedProgress, 'the progress answer')
    await client.put(`${prefix}/loud`).value('x')
    const event = await stream.until((r) => kindOf(r) === 'events', 'the event after it')
    stream.close()
    expect(revisionOf(stream.responses[answer] as IWatchResponse)).toBe(rev)
    // One answer for the stream, not one per watch.
    expect(stream.responses.slice(answer, event).map(kindOf)).toEqual(['progress'])
  })

  it(`with a watch catching up on events: ${progressFollowsEvents ? 'never answered ahead of them' : 'answered ahead of them, with a revision past them'}`, async () => {
    // A watch from an old revision is "unsynced" until etcd's catch-up pass (every 100 ms)
    // has sent it the history; the progress request is made at once.
    let ahead = 0
    for (let attempt = 0; attempt < 5; attempt++) {
      const key = `${uniquePrefix('unsynced')}/k`
      const first = Number((await client.put(key).value('1').exec()).header.revision)
      await client.put(key).value('2')
      await client.put(`${key}-other`).value('x')
      const stream = await openStream()
      stream.send({ create_request: { key: bytes(key), start_revision: String(first) } })
      stream.send({ progress_request: {} })
      const events = await stream.until((r) => kindOf(r) === 'events', 'the events')
      stream.send({ progress_request: {} })
      await stream.until(isRequestedProgress, 'a progress answer after the events', events)
      stream.close()
      const before = stream.responses.slice(0, events).filter(isRequestedProgress)
      if (before.length > 0) {
        ahead++
        // What makes it wrong: a revision that says the events were all sent, ahead of them.
        expect(revisionOf(before[0] as IWatchResponse)).toBeGreaterThan(first + 1)
      }
    }
    if (progressFollowsEvents) expect(ahead).toBe(0)
    else expect(ahead).toBeGreaterThan(0)
  })
  // etcd PR 20286 (3.4.38, 3.5.22): no progress below a watch's start revision.
  const progressBelowStart =
    compareVersions(version, '3.5.0') >= 0
      ? compareVersions(version, '3.5.22') < 0
      : compareVersions(version, '3.4.38') < 0
  it(`for a watch from a future revision: ${progressBelowStart ? 'answered with a revision below its start' : 'never answered below its start'}`, async () => {
    const prefix = uniquePrefix('future')
    const start = (await currentRevision()) + 3
    const stream = await openStream()
    stream.send({ create_request: { key: bytes(`${prefix}/k`), start_revision: String(start) } })
    await stream.until((r) => r.created, 'the create')
    stream.send({ progress_request: {} })
    for (let i = 0; i < 3; i++) await client.put(`${prefix}/elsewhere`).value(String(i))
    stream.send({ progress_request: {} })
    await stream.until(
      (r) => isRequestedProgress(r) && revisionOf(r) >= start,
      'a progress answer once the store reached the start revision',
    )
    stream.close()
    const below = stream.responses.filter((r) => isRequestedProgress(r) && revisionOf(r) < start)
    expect(below.length > 0).toBe(progressBelowStart)
  })
})

describe(`etcd ${version}: periodic progress notifications (progress_notify)`, () => {
  it("reach a watch that has no events, with the watch's own id and the store revision", async () => {
    const prefix = uniquePrefix('periodic')
    const stream = await openStream()
    stream.send({ create_request: { key: bytes(`${prefix}/quiet`) } })
    stream.send({ create_request: { key: bytes(`${prefix}/k`), progress_notify: true } })
    await stream.until((r) => r.created && r.watch_id === '1', 'the creates')
    const rev = Number((await client.put(`${prefix}/elsewhere`).value('x').exec()).header.revision)
    const notice = await stream.until(
      (r) => !r.created && r.watch_id === '1' && revisionOf(r) >= rev,
      'a periodic notification (interval 1 s)',
    )
    stream.close()
    expect(stream.responses[notice]?.events ?? []).toEqual([])
    expect(revisionOf(stream.responses[notice] as IWatchResponse)).toBe(rev)
  })
})

describe(`etcd ${version}: compaction`, () => {
  it('a watch from a compacted revision is created, then cancelled with the compaction revision', async () => {
    const key = `${uniquePrefix('compacted')}/k`
    const first = Number((await client.put(key).value('1').exec()).header.revision)
    const kept = Number((await client.put(key).value('2').exec()).header.revision)
    await client.kv.compact({ revision: String(kept), physical: true })
    const stream = await openStream()
    stream.send({ create_request: { key: bytes(key), start_revision: String(first) } })
    const canceled = await stream.until((r) => r.canceled, 'the cancel')
    stream.close()
    expect(stream.responses.map(kindOf)).toEqual(['created', 'canceled'])
    const answer = stream.responses[canceled] as IWatchResponse
    expect(answer.compact_revision).toBe(String(kept))
    expect(answer.watch_id).toBe('0')
    expect(answer.cancel_reason).toBe('')
  })

  // etcd issue 18089 (fixed in 3.5.16 and 3.4.34): a watch from the compaction revision did not
  // get a delete made at that revision. Our watches start from a read's revision + 1 or from our
  // own key's create revision: only a compaction at that very revision, between the read and the
  // watch (revision-mode retention of ~0), could hide a predecessor's delete on 3.4.23.
  const seesDelete =
    compareVersions(version, '3.5.0') >= 0
      ? compareVersions(version, '3.5.16') >= 0
      : compareVersions(version, '3.4.34') >= 0
  it(`a watch from the compaction revision ${seesDelete ? 'gets' : 'misses'} a delete made at that revision`, async () => {
    const key = `${uniquePrefix('at-compaction')}/k`
    await client.put(key).value('1')
    const deleted = Number((await client.delete().key(key).exec()).header.revision)
    const later = Number((await client.put(key).value('2').exec()).header.revision)
    await client.kv.compact({ revision: String(deleted), physical: true })
    const stream = await openStream()
    stream.send({ create_request: { key: bytes(key), start_revision: String(deleted) } })
    const events = await stream.until((r) => kindOf(r) === 'events', 'the events')
    stream.close()
    const revisions = (stream.responses[events]?.events ?? []).map((e) => Number(e.kv.mod_revision))
    expect(revisions).toEqual(seesDelete ? [deleted, later] : [later])
  })
})

describe(`etcd ${version}: error answers the package tells apart`, () => {
  it('an unknown lease is EtcdLeaseInvalidError; a compacted or future revision is OUT_OF_RANGE', async () => {
    const unknownLease = await rejectionOf(
      client.leaseClient.leaseRevoke({ ID: '12345' }),
      5_000,
      'revoke',
    )
    expect(unknownLease.error).toBeInstanceOf(EtcdLeaseInvalidError)
    expect(String(unknownLease.error)).toContain('etcdserver: requested lease not found')
    const putOnUnknown = await rejectionOf(
      client.kv.put({ key: bytes(uniquePrefix('lease')), value: bytes('v'), lease: '12345' }),
      5_000,
      'put',
    )
    expect(putOnUnknown.error).toBeInstanceOf(EtcdLeaseInvalidError)
    await client.kv.compact({ revision: String(await currentRevision()) })
    const compacted = await rejectionOf(
      client.kv.range({ key: bytes('/k'), revision: '1' }),
      5_000,
      'range',
    )
    expect(compacted.error).toBeInstanceOf(GRPCOutOfRangeError)
    expect(String(compacted.error)).toContain('mvcc: required revision has been compacted')
    const future = await rejectionOf(
      client.kv.range({ key: bytes('/k'), revision: String((await currentRevision()) + 1_000) }),
      5_000,
      'range',
    )
    expect(future.error).toBeInstanceOf(GRPCOutOfRangeError)
    expect(String(future.error)).toContain('mvcc: required revision is a future revision')
  })
})
