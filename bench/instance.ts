/**
 * The end-to-end scenario's one-instance sides, each in its own process as a deployed instance
 * is, and the same server but for the locker and where upload records live:
 * - `LOCKER=memory`: `MemoryLocker`, and FileStore's own metadata files;
 * - `LOCKER=etcd`: `Etcd3Locker` on `createEtcdClient`, and `locker.kvStore()` as FileStore's
 *   configstore. Env: ETCD_ENDPOINTS, PREFIX, CACHE_IDLE (ms).
 * Neither logs nor serves anything but tus, so that the ratio is the locker's and the store's.
 * Env: FILES_DIR. Prints "ready at http://127.0.0.1:<port>/files" once it listens.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { FileStore } from '@tus/file-store'
import { MemoryLocker, Server } from '@tus/server'
import { createEtcdClient, Etcd3Locker } from './package.js'

const directory = process.env.FILES_DIR ?? './files'
const etcd = process.env.LOCKER === 'etcd'
const client = etcd
  ? createEtcdClient({ hosts: (process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(',') })
  : undefined
const locker = client
  ? new Etcd3Locker(client, { prefix: process.env.PREFIX ?? '/tusd' })
  : new MemoryLocker()
const datastore =
  locker instanceof Etcd3Locker
    ? new FileStore({
        directory,
        configstore: locker.kvStore({ cacheIdle: Number(process.env.CACHE_IDLE ?? 30_000) }),
      })
    : new FileStore({ directory })
if (locker instanceof Etcd3Locker) await locker.ready()
const tus = new Server({ path: '/files', datastore, locker, respectForwardedHeaders: true })
const http = createServer((req, res) => tus.handle(req, res))
http.listen(0, '127.0.0.1', () => {
  console.log(`ready at http://127.0.0.1:${(http.address() as AddressInfo).port}/files`)
})
process.once('SIGTERM', async () => {
  http.close()
  if (locker instanceof Etcd3Locker) await locker.close()
  client?.close()
  process.exit(0)
})
