/**
 * Uploads a file with tus-js-client, the reference tus client, and prints its progress.
 *
 *   npm run upload -- <file> [endpoint, default http://127.0.0.1:1080/files]
 */
import { accessSync, constants, createReadStream, statSync } from 'node:fs'
import { basename } from 'node:path'
import { Upload } from 'tus-js-client'

const [file, endpoint = 'http://127.0.0.1:1080/files'] = process.argv.slice(2)
if (!file) {
  console.error('usage: npm run upload -- <file> [endpoint]')
  process.exit(2)
}
const size = fileSize(file)
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

/** The size of `path`, or exit 2 with one line saying why it cannot be uploaded. */
function fileSize(path: string): number {
  let why: string
  try {
    const stats = statSync(path)
    if (!stats.isFile()) why = 'not a file'
    else {
      accessSync(path, constants.R_OK)
      return stats.size
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(error)
  }
  console.error(`upload: cannot upload ${path}: ${why}`)
  process.exit(2)
}
