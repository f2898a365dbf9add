/**
 * Every code block of the README and docs/*.md that is a program typechecks as a user's ES module
 * under TypeScript's `nodenext` (`import ... from 'tus-etcd3-locker'`, mapped to src/ as the
 * repository's own tsconfig maps it; test/package.test.ts checks the packed tarball's types).
 * Fragments are marked in the document and listed here with their reasons. The README's Usage
 * also runs, against three etcd members named in ETCD_ENDPOINTS: a tus upload through it, then
 * SIGTERM, and nothing of it is left in etcd. Operations' `set-record.mjs` runs too, as the
 * plain JavaScript module the page says it is.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Etcd3KvStore } from '../src/index.js'
import { type DocSnippet, documents, snippetsOf } from './harness/doc-snippets.js'
import { type EtcdCluster, freePort, startEtcd } from './harness/etcd.js'
import { keysUnder, newClient, within } from './harness/index.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const snippets = documents(root).flatMap((path) => snippetsOf(root, path))
const programs = snippets.filter((s) => s.kind !== 'fragment')
const usage = snippets.filter((s) => s.kind === 'usage')

/** A file name that says where the block comes from: `docs-operations.md-144.ts`. */
const fileOf = (s: DocSnippet) => `${s.file.replace(/\//g, '-')}-${s.line}.ts`

let dir: string
beforeAll(async () => {
  // A user's project: ESM, its own node_modules (this repository's), the package by name.
  dir = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-snippets-'))
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir')
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }))
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        skipLibCheck: true,
        noEmit: true,
        types: ['node'],
        paths: {
          'tus-etcd3-locker': [join(root, 'src/index.ts')],
          'tus-etcd3-locker/metrics': [join(root, 'src/metrics.ts')],
        },
      },
      include: ['*.ts'],
    }),
  )
  for (const s of programs) await writeFile(join(dir, fileOf(s)), `${s.code}\n`)
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe('code blocks of the README and docs/', () => {
  it('each is a program or a fragment marked with its reason; the README has one Usage', () => {
    const fragments = snippets.filter((s) => s.kind === 'fragment')
    for (const f of fragments) {
      expect(f.reason, `${f.file}:${f.line}: a fragment marker needs a reason`).toBeTruthy()
      console.log(`[fragment] ${f.file}:${f.line}: ${f.reason}`)
    }
    expect(usage.map((s) => s.file)).toEqual(['README.md'])
    expect(programs.length).toBeGreaterThanOrEqual(6)
    console.log(`[figure] ${programs.length} programs, ${fragments.length} fragments`)
  })

  it('every program typechecks under module nodenext, as an ES module importing tus-etcd3-locker', async () => {
    const tsc = join(root, 'node_modules/typescript/bin/tsc')
    const result = await run(process.execPath, [tsc, '-p', dir], { cwd: dir }).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    )
    // Name the document and line of each error, not the temp file.
    const where = new Map(programs.map((s) => [fileOf(s), `${s.file} (block at line ${s.line})`]))
    const readable = result.replace(/^([^(\s]+\.ts)\(/gm, (_, f: string) => `${where.get(f) ?? f}(`)
    expect(readable).toBe('')
  }, 120_000)
})

describe("the README's Usage, run against three etcd members", () => {
  let cluster: EtcdCluster
  beforeAll(async () => {
    cluster = await startEtcd(3)
  }, 60_000)
  afterAll(() => cluster?.stop())

  it('serves a tus upload with ETCD_ENDPOINTS naming all three; SIGTERM exits 0 and leaves no key', async () => {
    const [snippet] = usage
    if (!snippet) throw new Error('no Usage block in the README')
    const work = join(dir, 'usage-run')
    await mkdir(work)
    const port = await freePort()
    const server = spawn(process.execPath, ['--import', 'tsx', join(dir, fileOf(snippet))], {
      cwd: work,
      env: {
        ...process.env,
        ETCD_ENDPOINTS: cluster.endpoints.join(','),
        PORT: String(port),
        TSX_TSCONFIG_PATH: join(dir, 'tsconfig.json'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const output = collect(server)
    try {
      await within(output.until(/^tus server on port /), 20_000, 'the Usage server listening')
      const base = `http://127.0.0.1:${port}/files`
      const tus = { 'Tus-Resumable': '1.0.0' }
      const created = await fetch(base, {
        method: 'POST',
        headers: { ...tus, 'Upload-Length': '11' },
      })
      expect(created.status).toBe(201)
      const url = new URL(created.headers.get('location') ?? '', base).toString()
      const patched = await fetch(url, {
        method: 'PATCH',
        headers: {
          ...tus,
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
        },
        body: 'hello etcd!',
      })
      expect(patched.status).toBe(204)
      const head = await fetch(url, { method: 'HEAD', headers: tus })
      expect(head.headers.get('upload-offset')).toBe('11')
      // The record is in etcd, under the Usage's prefix.
      expect(await keysUnder(newClient(cluster.endpoints), '/tusd/.kv/')).toHaveLength(1)

      server.kill('SIGTERM')
      const [code] = (await within(once(server, 'exit'), 15_000, 'exit after SIGTERM')) as [
        number | null,
      ]
      expect(code, output.text()).toBe(0)
      // Locks and leasing keys went with the revoked session; only the record stays.
      const left = await keysUnder(newClient(cluster.endpoints), '/tusd/')
      expect(left.filter((k) => !k.startsWith('/tusd/.kv/'))).toEqual([])
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL')
    }
  }, 60_000)
})

describe("operations' one-off script that writes a record, run with node as the page says", () => {
  let cluster: EtcdCluster
  beforeAll(async () => {
    cluster = await startEtcd(1)
  }, 60_000)
  afterAll(() => cluster?.stop())

  it('saved as set-record.mjs, it writes the record through a store', async () => {
    const [snippet] = snippets.filter(
      (s) => s.file === 'docs/operations.md' && s.code.includes('set-record.mjs'),
    )
    if (!snippet) throw new Error('no set-record.mjs block in docs/operations.md')
    // The page calls it an ES module: plain JavaScript, run by node, not TypeScript.
    const script = join(dir, 'set-record.mjs')
    await writeFile(script, `${snippet.code}\n`)
    const env = {
      ...process.env,
      ETCD_ENDPOINTS: cluster.endpoints.join(','),
      TSX_TSCONFIG_PATH: join(dir, 'tsconfig.json'),
    }
    // tsx only maps 'tus-etcd3-locker' to src/ here; it compiles no TypeScript of the script's.
    await within(
      run(process.execPath, ['--import', 'tsx', script, 'upload-1', '{"size":11}'], {
        cwd: dir,
        env,
      }),
      30_000,
      'set-record.mjs',
    )
    const client = newClient(cluster.endpoints)
    const store = new Etcd3KvStore<unknown>(client, { prefix: '/tusd', leasing: false })
    try {
      expect(await store.get('upload-1')).toEqual({ size: 11 })
    } finally {
      await store.close()
    }
  }, 60_000)
})

/** The child's stdout and stderr, and a wait for a line. */
function collect(child: ChildProcess) {
  let text = ''
  const waiters = new Set<() => void>()
  const add = (chunk: Buffer) => {
    text += chunk.toString()
    for (const wake of waiters) wake()
  }
  child.stdout?.on('data', add)
  child.stderr?.on('data', add)
  return {
    text: () => text,
    until: (pattern: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (text.split('\n').some((l) => pattern.test(l))) {
            waiters.delete(check)
            resolve()
          } else if (child.exitCode !== null) {
            reject(new Error(`exited ${child.exitCode} before ${pattern}: ${text}`))
          }
        }
        waiters.add(check)
        child.once('exit', check)
        check()
      }),
  }
}
