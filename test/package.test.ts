/**
 * The packed tarball as a user installs it: loadable from CommonJS and ESM, typed for `.cts` and
 * `.mts` under TypeScript's `nodenext`, with its LICENSE and source maps whose sources ship too.
 * The consumer gets only the package's declared dependencies (linked from this repository's
 * node_modules, so no registry is needed): an undeclared import fails here.
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { endpoints, uniquePrefix } from './harness/index.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
  license: string
  repository?: { url?: string }
  homepage?: string
  bugs?: { url?: string }
}

let consumer: string
let installed: string

beforeAll(async () => {
  consumer = await mkdtemp(join(tmpdir(), 'tus-etcd3-locker-consumer-'))
  // npm pack runs the prepack build, as publishing does.
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', consumer], {
    cwd: root,
  })
  const tarball = join(consumer, stdout.trim().split('\n').pop() ?? '')
  installed = join(consumer, 'node_modules', manifest.name)
  await mkdir(installed, { recursive: true })
  await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'])
  const linked = [...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies)]
  for (const name of [...linked, '@types/node', 'undici-types']) {
    const target = join(consumer, 'node_modules', name)
    await mkdir(dirname(target), { recursive: true })
    await symlink(join(root, 'node_modules', name), target, 'dir')
  }
  await writeFile(join(consumer, 'package.json'), '{ "name": "consumer", "private": true }\n')
}, 120_000)

afterAll(async () => {
  if (consumer) await rm(consumer, { recursive: true, force: true })
})

// Takes a lock and gives it up against the test etcd, then prints what it loaded.
const program = (load: string) => `${load}
const client = createEtcdClient({ hosts: process.env.ETCD_ENDPOINTS.split(',') })
const locker = new Etcd3Locker(client, { prefix: process.env.PREFIX })
const lock = locker.newLock('upload-1')
lock.lock(new AbortController().signal, () => {})
  .then(() => lock.unlock())
  .then(() => locker.close())
  .then(() => {
    client.close()
    console.log(typeof registerLockerMetrics, 'locked and unlocked')
  })
`

describe('the packed tarball', () => {
  it.each([
    [
      'index.cjs',
      `const { createEtcdClient, Etcd3Locker } = require('tus-etcd3-locker')
const { registerLockerMetrics } = require('tus-etcd3-locker/metrics')`,
    ],
    [
      'index.mjs',
      `import { createEtcdClient, Etcd3Locker } from 'tus-etcd3-locker'
import { registerLockerMetrics } from 'tus-etcd3-locker/metrics'`,
    ],
  ])('%s loads both entry points and takes a lock', async (file, load) => {
    await writeFile(join(consumer, file), program(load))
    const { stdout } = await run(process.execPath, [file], {
      cwd: consumer,
      env: { ...process.env, ETCD_ENDPOINTS: endpoints().join(','), PREFIX: uniquePrefix('pkg') },
      timeout: 30_000,
    })
    expect(stdout.trim()).toBe('function locked and unlocked')
  })

  it('typechecks from .cts and .mts under TypeScript nodenext', async () => {
    const body = `
const client = createEtcdClient({ hosts: ['127.0.0.1:2379'] })
const locker: Etcd3Locker = new Etcd3Locker(client, { ttl: 30 })
const ttl: number = locker.options.ttl
registerLockerMetrics(locker)
export { ttl }
`
    await writeFile(
      join(consumer, 'require.cts'),
      `import lib = require('tus-etcd3-locker')
import metrics = require('tus-etcd3-locker/metrics')
const { createEtcdClient, Etcd3Locker } = lib
type Etcd3Locker = lib.Etcd3Locker
const { registerLockerMetrics } = metrics
${body}`,
    )
    await writeFile(
      join(consumer, 'import.mts'),
      `import { createEtcdClient, Etcd3Locker } from 'tus-etcd3-locker'\nimport { registerLockerMetrics } from 'tus-etcd3-locker/metrics'\n${body}`,
    )
    await writeFile(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          types: ['node'],
        },
        files: ['require.cts', 'import.mts'],
      }),
    )
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], {
      cwd: consumer,
    }).then(
      () => 'ok',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    )
    expect(result).toBe('ok')
  })

  it('ships a LICENSE, its repository links and source maps whose sources it ships', () => {
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License/)
    expect(manifest.license).toBe('MIT')
    expect(manifest.repository?.url).toMatch(/^git\+https:\/\//)
    expect(manifest.homepage).toMatch(/^https:\/\//)
    expect(manifest.bugs?.url).toMatch(/^https:\/\//)
    const maps = listFiles(join(installed, 'dist')).filter((file) => file.endsWith('.map'))
    expect(maps.length).toBeGreaterThan(20)
    const missing: string[] = []
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }
      for (const source of sources) {
        const file = resolve(dirname(map), source)
        if (!existsSync(file)) missing.push(`${relative(installed, map)} -> ${source}`)
      }
    }
    expect(missing).toEqual([])
  })
})

function listFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(join(directory, entry.name)) : [join(directory, entry.name)],
  )
}
