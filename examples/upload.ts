/**
 * Uploads a file with tus-js-client, the reference tus client, and prints its progress.
 *
 *   npm run upload -- <file> [endpoint, default http://127.0.0.1:1080/files]
 */
import { createReadStream, statSync } from 'node:fs'
import { basename } from 'node:path'
import { Upload } from 'tus-js-client'

const [file, endpoint = 'http://127.0.0.1:1080/files'] = process.argv.slice(2)
if (!file) {
  console.error('usage: npm run upload -- <file> [endpoint]')
  process.exit(2)
}
const size = statSync(file).size
const upload = new Upload(createReadStream(file), {
  endpoint,
  uploadSize: size,
  chunkSize: 1024 * 1024,
  metadata: { filename: basename(file) },
  retryDelays: [0, 500, 1_000],
  onProgress: (sent, total) => process.stdout.write(`\r${sent} / ${total} bytes`),
  onError: (error) => {
    console.error(`\nupload failed: ${error.message}`)
    process.exit(1)
  },
  onSuccess: () => console.log(`\nuploaded: ${upload.url}`),
})
upload.start()
