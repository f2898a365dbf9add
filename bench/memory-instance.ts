/**
 * The baseline of the end-to-end scenario, in its own process as a deployed instance is: one tus
 * instance with MemoryLocker and FileStore's own metadata files. Env: FILES_DIR.
 * Prints "ready at http://127.0.0.1:<port>/files" once it listens.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { FileStore } from '@tus/file-store'
import { MemoryLocker, Server } from '@tus/server'

const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: process.env.FILES_DIR ?? './files' }),
  locker: new MemoryLocker(),
  respectForwardedHeaders: true,
})
const http = createServer((req, res) => tus.handle(req, res))
http.listen(0, '127.0.0.1', () => {
  console.log(`ready at http://127.0.0.1:${(http.address() as AddressInfo).port}/files`)
})
process.once('SIGTERM', () => process.exit(0))
