/**
 * A tus upload server on plain node:http with Etcd3Locker: copy this file to start your own.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 PORT=1080 npx tsx examples/node-http.ts
 *
 * Run it twice on two ports against the same etcd and the same FILES_DIR: both instances then
 * serve the same uploads without ever writing one upload at the same time.
 */
import { createServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'
import { Etcd3 } from 'etcd3'
import { Etcd3Locker } from 'tus-etcd3-locker'

export interface TusInstance {
  readonly url: string
  readonly locker: Etcd3Locker
  /** Stops accepting requests, revokes the lock session, closes the etcd client. */
  close(): Promise<void>
}

/** Starts one tus instance on `port` (0: any free port) storing files in `directory`. */
export async function startTusInstance(options: {
  endpoints: string[]
  directory: string
  port: number
  prefix?: string
}): Promise<TusInstance> {
  const client = new Etcd3({ hosts: options.endpoints })
  const locker = new Etcd3Locker(client, { prefix: options.prefix ?? '/tusd', ttl: 30 })
  await locker.ready() // fail at start-up, with a clear error, when etcd is not there
  const tus = new Server({
    path: '/files',
    // Upload metadata in etcd, shared by every instance; files in the shared directory.
    datastore: new FileStore({ directory: options.directory, configstore: locker.kvStore() }),
    locker,
    respectForwardedHeaders: true,
  })
  const http: HttpServer = createServer((req, res) => tus.handle(req, res))
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port, '127.0.0.1', resolve)
  })
  const { port } = http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/files`,
    locker,
    close: async () => {
      http.closeIdleConnections()
      const closed = new Promise((resolve) => http.close(resolve))
      await locker.close()
      http.closeAllConnections()
      await closed
      client.close()
    },
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const instance = await startTusInstance({
    endpoints: (process.env.ETCD_ENDPOINTS ?? '127.0.0.1:2379').split(','),
    directory: process.env.FILES_DIR ?? './files',
    port: Number(process.env.PORT ?? 1080),
  })
  console.log(`tus endpoint: ${instance.url}`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void instance.close().then(() => process.exit(0)))
  }
}
