/**
 * Keeping etcd small (docs/operations.md): every upload's record stays in etcd until the upload
 * is deleted. tus `expiration` removes unfinished uploads past their expiry: @tus/file-store's
 * deleteExpired() lists the records through the configstore's list() and reads each one, and
 * that works over `locker.kvStore()`: an expired upload's record leaves etcd with its file.
 * FileStore writes the record once, at the POST (offset 0), so deleteExpired's "unfinished"
 * check (record offset !== size) is true for finished uploads too: every upload older than the
 * period goes, finished or not. docs/operations.md says so.
 */
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import { describe, expect, it } from 'vitest'
import { deferCleanup, keysUnder, newClient, newLocker, uniquePrefix } from '../harness/index.js'

const EXPIRATION_MS = 1_000

describe('tus expiration over locker.kvStore()', () => {
  it('server.cleanUpExpiredUploads() removes the records and files of uploads older than the period, finished or not', async () => {
    const prefix = uniquePrefix('expired')
    const locker = newLocker({ prefix, ttl: 10, lockDrainTimeout: 2_000 })
    const directory = await mkdtemp(join(tmpdir(), 'expired-'))
    deferCleanup(() => rm(directory, { recursive: true, force: true }))
    const server = new Server({
      path: '/files',
      locker,
      lockDrainTimeout: locker.options.lockDrainTimeout,
      datastore: new FileStore({
        directory,
        configstore: locker.kvStore(),
        expirationPeriodInMilliseconds: EXPIRATION_MS,
      }),
    })
    const http = server.listen({ port: 0, host: '127.0.0.1' })
    deferCleanup(() => new Promise((resolve) => http.close(resolve)))
    await once(http, 'listening')
    const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    const tus = { 'Tus-Resumable': '1.0.0' }

    const create = async (length: number) => {
      const answer = await fetch(`${base}/files`, {
        method: 'POST',
        headers: { ...tus, 'Upload-Length': String(length) },
      })
      expect(answer.status).toBe(201)
      return (answer.headers.get('location') ?? '').split('/').pop() ?? ''
    }
    const send = async (id: string, bytes: string) => {
      const answer = await fetch(`${base}/files/${id}`, {
        method: 'PATCH',
        headers: {
          ...tus,
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
        },
        body: bytes,
      })
      expect(answer.status).toBe(204)
    }
    const unfinished = await create(10)
    await send(unfinished, 'half!')
    const finished = await create(4)
    await send(finished, 'done')
    const records = `${prefix}/.kv/`
    expect((await keysUnder(newClient(), records)).sort()).toEqual(
      [`${records}${finished}`, `${records}${unfinished}`].sort(),
    )

    // Not expired yet: nothing removed.
    expect(await server.cleanUpExpiredUploads()).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, EXPIRATION_MS + 200))
    const recent = await create(10)
    expect(await server.cleanUpExpiredUploads()).toBe(2)

    expect(await keysUnder(newClient(), records)).toEqual([`${records}${recent}`])
    expect(existsSync(join(directory, unfinished))).toBe(false)
    expect(existsSync(join(directory, finished))).toBe(false)
    expect(existsSync(join(directory, recent))).toBe(true)
    const head = await fetch(`${base}/files/${unfinished}`, { method: 'HEAD', headers: tus })
    expect([404, 410]).toContain(head.status)
  })
})
