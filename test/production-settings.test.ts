/**
 * The README's production settings are the values everything shipped uses: the Usage, the
 * examples, docker-compose.yml and the Kubernetes manifests. A change to one must show here.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { LOCK_DRAIN_MS, SHUTDOWN_DRAIN_MS } from '../examples/shutdown.js'
import { defaultLockerOptions } from '../src/index.js'

const read = (file: string) =>
  readFileSync(fileURLToPath(new URL(`../${file}`, import.meta.url)), 'utf8')
const readme = read('README.md')

/** The "typical deployment" cell of the README's production-settings row for `option`. */
function typical(option: string): string {
  const row = readme
    .split('\n')
    .find((line) => line.startsWith(`| ${option} `) || line.startsWith(`| ${option}|`))
  if (row === undefined) throw new Error(`no production-settings row for ${option}`)
  return row.split('|').at(-2)?.trim() ?? ''
}

describe('production settings', () => {
  it('the table lists every option with its default', () => {
    const defaults = defaultLockerOptions()
    expect(
      readme.indexOf('| option | default | what it trades | typical deployment |'),
    ).toBeGreaterThan(0)
    const tableLine = readme
      .split('\n')
      .findIndex((l) => l.startsWith('| option | default | what it trades'))
    expect(tableLine + 1).toBeLessThanOrEqual(150) // a reader finds it in the first 150 lines
    for (const option of ['ttl', 'acquireLockTimeout', 'grantTimeout', 'retainLocks']) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${option}\``))
      expect(row, option).toContain(`\`${defaults[option as keyof typeof defaults]}\``)
    }
    for (const option of ['leasing', 'revokeBackoff', 'cacheSize', 'cacheIdle']) {
      expect(readme).toContain(`| \`kvStore({ ${option} })\``)
    }
    expect(readme).toContain('| `close({ drain })` (ms) |')
    expect(readme).toContain('| `lockDrainTimeout` (ms), `@tus/server` `Server` |')
  })

  it('the Usage, the examples and the manifests use its values: ttl 10, lockDrainTimeout 2000, drain 7000', () => {
    expect(typical('`ttl` (s)')).toContain('`10`')
    expect(typical('`lockDrainTimeout` (ms), locker')).toContain('`2000`')
    expect(typical('`close({ drain })` (ms)')).toContain('`7000`')

    const usage = readme.slice(readme.indexOf('## Usage'), readme.indexOf('## Production settings'))
    expect(usage).toContain('ttl: 10')
    expect(usage).toContain('lockDrainTimeout: 2000')
    expect(usage).toContain('lockDrainTimeout: locker.options.lockDrainTimeout')
    expect(usage).toContain('drain: 7000')

    expect(LOCK_DRAIN_MS).toBe(2_000)
    expect(SHUTDOWN_DRAIN_MS).toBe(7_000)
    for (const example of ['examples/node-http.ts', 'examples/s3.ts', 'examples/express.ts']) {
      const source = read(example)
      expect(source, example).toMatch(/ttl: (options\.ttl \?\? )?10\b/)
      expect(source.match(/lockDrainTimeout: LOCK_DRAIN_MS/g), example).toHaveLength(2)
    }

    const deployment = parse(read('deploy/kubernetes/tus-deployment.yaml'))
    const env = deployment.spec.template.spec.containers[0].env as Array<{
      name: string
      value: string
    }>
    expect(env.find((e) => e.name === 'LOCK_TTL')?.value).toBe('10')
    // The pod's grace covers the preStop sleep, the drain and the other requests' grace.
    const grace = Number(env.find((e) => e.name === 'SHUTDOWN_GRACE_MS')?.value)
    expect(
      deployment.spec.template.spec.terminationGracePeriodSeconds * 1_000,
    ).toBeGreaterThanOrEqual(5_000 + SHUTDOWN_DRAIN_MS + grace)

    // Compose sets no LOCK_TTL: the example's default, 10.
    expect(read('docker-compose.yml')).not.toMatch(/LOCK_TTL/)
  })
})
