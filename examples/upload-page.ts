/** Serves the upload page (examples/public/index.html) and the tus-js-client browser bundle. */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const page = readFileSync(new URL('./public/index.html', import.meta.url))
const tusBundle = readFileSync(
  join(
    dirname(createRequire(import.meta.url).resolve('tus-js-client/package.json')),
    'dist',
    'tus.min.js',
  ),
)

/** Answers `GET /` and `GET /tus.min.js`; returns false for any other request. */
export function serveUploadPage(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const path = (req.url ?? '/').split('?')[0]
  const file =
    path === '/'
      ? { body: page, type: 'text/html; charset=utf-8' }
      : path === '/tus.min.js'
        ? { body: tusBundle, type: 'text/javascript' }
        : undefined
  if (!file) return false
  res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length })
  res.end(req.method === 'HEAD' ? undefined : file.body)
  return true
}
