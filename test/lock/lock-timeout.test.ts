/**
 * A lock() that runs out of acquireLockTimeout in etcd says so: the tus client's 500 and the
 * log name etcd and what the request waited for (the entry ahead, or etcd itself), instead of
 * `failed to acquire lock before timeout` alone. Behind a request of this process, and on an
 * abort, it is still `ERRORS.ERR_LOCK_TIMEOUT`, as with MemoryLocker.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import { ERRORS } from '@tus/utils'
import { describe, expect, it } from 'vitest'
import type { LockerEvents } from '../../src/events.js'
import { createEtcdClient, Etcd3Locker, LockTimeoutError } from '../../src/index.js'
import {
  deferCleanup,
  keysUnder,
  newClient,
  newLocker,
  privateEtcd,
  uniquePrefix,
  within,
} from '../harness/index.js'

const never = () => new AbortController().signal
const BODY = /^failed to acquire lock before timeout: /

describe('lock() timing out in etcd', () => {
  it('behind another instance: a LockTimeoutError naming the entry ahead; @tus/server answers 500 with it', async () => {
    const prefix = uniquePrefix('timeout-named')
    const holder = newLocker({ prefix })
    const held = holder.newLock('u1')
    await held.lock(never(), () => {})
    const waiter = newLocker({ prefix, acquireLockTimeout: 400 })
    const error = await waiter
      .newLock('u1')
      .lock(never(), () => {})
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(LockTimeoutError)
    const timeout = error as LockTimeoutError
    const [key] = await keysUnder(newClient(), prefix)
    const lease = key?.slice(`${prefix}/u1/`.length)
    expect(timeout).toMatchObject({
      id: 'u1',
      waitingOn: 'queue-entry',
      holder: lease,
      status_code: 500,
    })
    expect(timeout.body).toMatch(BODY)
    expect(timeout.message).toContain(`waited 400 ms (acquireLockTimeout) in its etcd queue`)
    expect(timeout.message).toContain(`${prefix}/u1/${lease}, the entry of lease ${lease}`)

    // What a tus client gets from @tus/server for it.
    const directory = await mkdtemp(join(tmpdir(), 'lock-timeout-'))
    deferCleanup(() => rm(directory, { recursive: true, force: true }))
    const server = new Server({
      path: '/files',
      locker: waiter,
      datastore: new FileStore({ directory }),
    })
    const http = server.listen({ port: 0, host: '127.0.0.1' })
    deferCleanup(() => new Promise((resolve) => http.close(resolve)))
    await once(http, 'listening')
    const { port } = http.address() as AddressInfo
    const answer = await fetch(`http://127.0.0.1:${port}/files/u1`, {
      method: 'DELETE',
      headers: { 'Tus-Resumable': '1.0.0' },
    })
    expect(answer.status).toBe(500)
    const body = await answer.text()
    expect(body).toMatch(BODY)
    expect(body).toContain(`the entry of lease ${lease}`)
    await held.unlock()
  })

  it('behind a request of this process, and on an abort: ERRORS.ERR_LOCK_TIMEOUT, as MemoryLocker', async () => {
    const locker = newLocker({ prefix: uniquePrefix('timeout-local'), acquireLockTimeout: 300 })
    const held = locker.newLock('u1')
    await held.lock(never(), () => {})
    await expect(locker.newLock('u1').lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT)
    await expect(locker.newLock('u2').lock(AbortSignal.abort(), () => {})).rejects.toBe(
      ERRORS.ERR_LOCK_TIMEOUT,
    )
    await held.unlock()
  })

  describe('with etcd frozen (SIGSTOP)', () => {
    const etcd = privateEtcd()

    it('names etcd and its endpoint; lockWaiting said so after a second', async () => {
      const client = createEtcdClient({ hosts: etcd.endpoint })
      deferCleanup(() => client.close())
      const locker = new Etcd3Locker(client, {
        prefix: uniquePrefix('timeout-frozen'),
        ttl: 10,
        lockDrainTimeout: 2_000,
        acquireLockTimeout: 1_500,
      })
      deferCleanup(() => locker.close())
      await within(locker.ready(), 5_000, 'session granted')
      const waiting: LockerEvents['lockWaiting'][0][] = []
      locker.on('lockWaiting', (info) => waiting.push(info))

      const pid = etcd.cluster.members[0]?.pid()
      if (pid === undefined) throw new Error('the private etcd is not running')
      process.kill(pid, 'SIGSTOP')
      let error: unknown
      try {
        error = await within(
          locker
            .newLock('u1')
            .lock(never(), () => {})
            .catch((e: unknown) => e),
          5_000,
          'lock() with etcd frozen',
        )
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      expect(error).toBeInstanceOf(LockTimeoutError)
      expect(error).toMatchObject({ id: 'u1', waitingOn: 'etcd', holder: undefined })
      expect((error as LockTimeoutError).message).toMatch(BODY)
      expect((error as LockTimeoutError).message).toContain(
        `waited 1500 ms (acquireLockTimeout) for etcd at ${etcd.endpoint}, which did not answer its lock calls in time`,
      )
      expect(waiting).toEqual([expect.objectContaining({ id: 'u1', waitingOn: 'etcd' })])
    })
  })
})
