/**
 * deploy/kubernetes/ cannot be applied here (no cluster), so this checks it statically: every
 * object valid under the Kubernetes API schemas (the kubernetes-models package, generated from
 * Kubernetes' OpenAPI; nothing is downloaded), with no field those schemas do not know, and its
 * parts agree with one another, with the Dockerfile, with docker-compose.yml and with the
 * example the image runs.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  Deployment,
  type IDeployment,
  type IStatefulSet,
  StatefulSet,
} from 'kubernetes-models/apps/v1'
import { type IPodDisruptionBudget, PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import {
  type IContainer,
  type IPersistentVolumeClaim,
  type IProbe,
  type IService,
  PersistentVolumeClaim,
  Service,
} from 'kubernetes-models/v1'
import { describe, expect, it } from 'vitest'
import { parse, parseAllDocuments, parseDocument } from 'yaml'
import { SHUTDOWN_DRAIN_MS } from '../examples/shutdown.js'
import { ETCD_FLAGS_3_5_TO_3_7, ETCD_IMAGE } from './harness/etcd-flags.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (file: string) => readFileSync(join(root, file), 'utf8')
const DIR = 'deploy/kubernetes'

type Json = Record<string, unknown>
type LabelSelector = NonNullable<IDeployment['spec']>['selector']
interface KubeObject {
  apiVersion: string
  kind: string
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> }
  [field: string]: unknown
}
interface Manifest {
  file: string
  object: KubeObject
}

function loadManifests(): Manifest[] {
  const files = readdirSync(join(root, DIR))
    .filter((file) => /\.ya?ml$/.test(file))
    .sort()
  return files.flatMap((file) =>
    parseAllDocuments(read(`${DIR}/${file}`)).map((document) => {
      const problems = [...document.errors, ...document.warnings]
      if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`)
      const object = document.toJS() as KubeObject | null
      if (!object) throw new Error(`${file}: an empty document`)
      return { file, object }
    }),
  )
}

/** The schema of each kind the manifests use; any other kind fails the test. */
const models: Record<string, { prototype: { validate(): void } }> = {
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
}

/**
 * A copy of `value` that notes which fields are read: every own key is put in `unread` under
 * its path, and taken out when the validator reads it.
 */
function tracked(value: unknown, path: string, unread: Set<string>): unknown {
  if (Array.isArray(value)) return value.map((item, i) => tracked(item, `${path}/${i}`, unread))
  if (!value || typeof value !== 'object') return value
  const keys = Object.keys(value)
  for (const key of keys) unread.add(`${path}/${key}`)
  const copy = Object.fromEntries(
    Object.entries(value).map(([key, field]) => [key, tracked(field, `${path}/${key}`, unread)]),
  )
  const seen = (key: string | symbol) => {
    if (typeof key === 'string') unread.delete(`${path}/${key}`)
  }
  return new Proxy(copy, {
    get(target, key, receiver) {
      seen(key)
      return Reflect.get(target, key, receiver)
    },
    has(target, key) {
      seen(key)
      return Reflect.has(target, key)
    },
    // Maps (labels, resources) are walked whole: any key is allowed there.
    ownKeys(target) {
      keys.forEach(seen)
      return Reflect.ownKeys(target)
    },
  })
}

/**
 * What is wrong with `object` under its kind's schema: its schema errors, or else the fields
 * the schema does not know. The Kubernetes schemas allow unknown fields, but the API server
 * refuses them under kubectl's default (strict) field validation, so a misspelled field would
 * fail only at `kubectl apply`. The generated validator reads every field its schema declares:
 * a field it never reads is one the schema does not know.
 */
function problems(object: KubeObject): string[] {
  const model = models[`${object.apiVersion}/${object.kind}`]
  if (!model) return [`no schema for ${object.apiVersion} ${object.kind} in this test`]
  const unread = new Set<string>()
  try {
    model.prototype.validate.call(tracked(object, '', unread))
  } catch (error) {
    return [error instanceof Error ? error.message : String(error)]
  }
  return [...unread].map((path) => `${path}: not a field of ${object.kind}`)
}

const manifests = loadManifests()
const objects = manifests.map(({ object }) => object)
const ofKind = <T>(kind: string) => objects.filter((object) => object.kind === kind) as T[]
const only = <T>(kind: string): T => {
  const found = ofKind<T>(kind)
  expect(found, `one ${kind}`).toHaveLength(1)
  return found[0] as T
}
const defined = <T>(value: T | undefined | null, what: string): T =>
  value ?? expect.unreachable(`${what} is missing`)

const statefulSet = only<IStatefulSet>('StatefulSet')
const deployment = only<IDeployment>('Deployment')
const services = ofKind<IService>('Service')
const budgets = ofKind<IPodDisruptionBudget>('PodDisruptionBudget')
const claims = ofKind<IPersistentVolumeClaim>('PersistentVolumeClaim')

const etcdSpec = defined(statefulSet.spec, 'StatefulSet spec')
const etcdPod = defined(etcdSpec.template.spec, 'StatefulSet pod spec')
const etcdLabels = defined(etcdSpec.template.metadata?.labels, 'etcd pod labels')
const etcd = defined(etcdPod.containers[0], 'etcd container')
const tusSpec = defined(deployment.spec, 'Deployment spec')
const tusPod = defined(tusSpec.template.spec, 'Deployment pod spec')
const tusLabels = defined(tusSpec.template.metadata?.labels, 'tus pod labels')
const tus = defined(tusPod.containers[0], 'tus container')

/** Whether a selector picks pods with these labels; an empty selector picks nothing here. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string>) {
  const entries = Object.entries(selector ?? {})
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value)
}
function labelSelectorSelects(selector: LabelSelector | undefined, labels: Record<string, string>) {
  expect(selector?.matchExpressions ?? [], 'matchExpressions (not checked here)').toEqual([])
  return selects(selector?.matchLabels, labels)
}
/** Which workloads a selector picks: must be exactly one for each Service and budget. */
function selected(pick: (labels: Record<string, string>) => boolean): string[] {
  return [
    ...(pick(etcdLabels) ? [`StatefulSet/${statefulSet.metadata?.name}`] : []),
    ...(pick(tusLabels) ? [`Deployment/${deployment.metadata?.name}`] : []),
  ]
}

/** The container port a probe or Service names, by number or by name. */
function containerPort(container: IContainer, port: number | string | undefined): number {
  const found = container.ports?.find((p) => p.containerPort === port || p.name === port)
  return defined(found, `port ${port} of container ${container.name}`).containerPort
}

/** Kubernetes' $(VAR) expansion in env values, command and args; $$ is a literal $. */
function expand(text: string, env: ReadonlyMap<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name?: string) =>
    name === undefined ? '$' : (env.get(name) ?? match),
  )
}

/**
 * The environment a container sees in pod `pod` of namespace `namespace`: downward-API fields
 * filled in, and each value expanded from the variables defined before it, as Kubernetes does.
 */
function environment(container: IContainer, pod: string, namespace: string): Map<string, string> {
  const fields: Record<string, string> = { 'metadata.name': pod, 'metadata.namespace': namespace }
  const env = new Map<string, string>()
  for (const variable of container.env ?? []) {
    const fieldPath = variable.valueFrom?.fieldRef?.fieldPath
    if (variable.valueFrom) {
      expect(
        Object.keys(variable.valueFrom),
        `${variable.name}: only fieldRef is expected`,
      ).toEqual(['fieldRef'])
      env.set(variable.name, defined(fields[fieldPath ?? ''], `downward field ${fieldPath}`))
    } else {
      env.set(variable.name, expand(variable.value ?? '', env))
    }
  }
  return env
}

/** `--flag=value` arguments as a map. */
function flags(args: string[]): Map<string, string> {
  const result = new Map<string, string>()
  for (const argument of args) {
    const match = /^--([a-z0-9-]+)=(.*)$/.exec(argument)
    if (match) result.set(match[1] as string, match[2] as string)
  }
  return result
}

/** The seconds a preStop hook waits: the native sleep action, or an exec of `sleep N`. */
function preStopSeconds(container: IContainer): number {
  const preStop = defined(container.lifecycle?.preStop, 'preStop hook')
  if (preStop.sleep) return preStop.sleep.seconds
  const [command, seconds, ...rest] = preStop.exec?.command ?? []
  expect(command, 'preStop: a sleep action or an exec of sleep').toMatch(/^(\/bin\/)?sleep$/)
  expect(rest).toEqual([])
  return Number(seconds)
}

function httpPath(probe: IProbe | undefined, what: string): string {
  return defined(defined(probe, what).httpGet, `${what} httpGet`).path ?? '/'
}

describe('deploy/kubernetes/ against the Kubernetes API schemas', () => {
  it('holds one object per file, each of a kind this test has the schema of', () => {
    expect(manifests.length).toBeGreaterThan(0)
    for (const { file, object } of manifests) {
      expect(
        manifests.filter((m) => m.file === file),
        file,
      ).toHaveLength(1)
      expect(models, file).toHaveProperty([`${object.apiVersion}/${object.kind}`])
    }
  })

  it.each(manifests.map(({ file, object }) => [file, object] as const))(
    '%s is valid, with no field its schema does not know',
    (_, object) => {
      expect(problems(object).join('\n')).toBe('')
    },
  )

  const tusObject = () => {
    const copy = structuredClone(deployment) as unknown as KubeObject
    const container = (copy as unknown as IDeployment).spec?.template.spec?.containers[0]
    return { copy, container: container as unknown as Json }
  }
  it.each([
    [
      'a replica count given as a string',
      () => {
        const { copy } = tusObject()
        ;(copy.spec as Json).replicas = '2'
        return copy
      },
      '/spec/replicas',
    ],
    [
      'a readiness probe without a port',
      () => {
        const { copy, container } = tusObject()
        delete ((container.readinessProbe as Json).httpGet as Json).port
        return copy
      },
      '/readinessProbe/httpGet',
    ],
    [
      'a preStop sleep without its seconds',
      () => {
        const { copy, container } = tusObject()
        ;((container.lifecycle as Json).preStop as Json).sleep = {}
        return copy
      },
      '/preStop/sleep',
    ],
    [
      'a misspelled field (the schemas allow unknown fields; kubectl does not)',
      () => {
        const { copy, container } = tusObject()
        container.readinesProbe = container.readinessProbe
        delete container.readinessProbe
        return copy
      },
      '/spec/template/spec/containers/0/readinesProbe',
    ],
    ['a misspelled kind', () => ({ ...tusObject().copy, kind: 'Deploymnet' }), 'Deploymnet'],
  ])('rejects a copy of the Deployment with %s', (_, broken, where) => {
    const found = problems(broken())
    expect(
      found.some((problem) => problem.includes(where)),
      found.join('; '),
    ).toBe(true)
    // The original stays valid: the failure comes from the edit alone.
    expect(problems(deployment as unknown as KubeObject).join('\n')).toBe('')
  })

  it('is namespace-free, so that `kubectl apply -n <namespace>` places it anywhere', () => {
    for (const object of objects) expect(object.metadata?.namespace, object.kind).toBeUndefined()
  })

  it('uses names Kubernetes accepts, one object per kind and name', () => {
    const label = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
    const names = objects.map((object) => `${object.kind}/${object.metadata?.name}`)
    expect(new Set(names).size).toBe(names.length)
    for (const object of objects) {
      const name = object.metadata?.name ?? ''
      expect(name).toMatch(label)
      expect(name.length).toBeLessThanOrEqual(63)
    }
    // Port names are IANA service names: at most 15 characters, at least one letter.
    for (const container of [etcd, tus]) {
      expect(container.name).toMatch(label)
      for (const port of container.ports ?? []) {
        expect(port.name).toMatch(/^(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
        expect(port.name).toMatch(/[a-z]/)
        expect(port.name?.length).toBeLessThanOrEqual(15)
      }
    }
  })

  it('lists every file in Kustomization, which `kubectl apply -f` skips (no .yaml)', () => {
    const kustomization = parse(read(`${DIR}/Kustomization`)) as Json
    expect(kustomization.kind).toBe('Kustomization')
    expect(kustomization.namespace).toBeUndefined()
    expect([...(kustomization.resources as string[])].sort()).toEqual(
      [...new Set(manifests.map(({ file }) => file))].sort(),
    )
  })
})

/** One member's view of the cluster in a namespace: its pod name and expanded flags. */
function member(ordinal: number, namespace: string) {
  const pod = `${statefulSet.metadata?.name}-${ordinal}`
  const env = environment(etcd, pod, namespace)
  const args = [...(etcd.command ?? []), ...(etcd.args ?? [])].map((arg) => expand(arg, env))
  return { pod, args, flags: flags(args) }
}
const NAMESPACE = 'tenant-a'
const replicas = etcdSpec.replicas ?? 1
const members = Array.from({ length: replicas }, (_, i) => member(i, NAMESPACE))
const portOf = (url: string | undefined) => Number(new URL(defined(url, 'URL')).port)

describe('the etcd StatefulSet', () => {
  const headless = services.find((service) => service.metadata?.name === etcdSpec.serviceName)

  it('runs three members that start together (none is ready before two run)', () => {
    expect(replicas).toBe(3)
    expect(etcdSpec.podManagementPolicy).toBe('Parallel')
    expect(labelSelectorSelects(etcdSpec.selector, etcdLabels)).toBe(true)
  })

  it('is governed by a headless Service that publishes its members before they are ready', () => {
    const spec = defined(headless?.spec, `Service ${etcdSpec.serviceName}`)
    expect(spec.clusterIP).toBe('None')
    expect(spec.publishNotReadyAddresses).toBe(true)
    expect(selected((labels) => selects(spec.selector, labels))).toEqual([
      `StatefulSet/${statefulSet.metadata?.name}`,
    ])
    const client = portOf(members[0]?.flags.get('listen-client-urls'))
    const peer = portOf(members[0]?.flags.get('listen-peer-urls'))
    for (const port of spec.ports ?? [])
      expect(containerPort(etcd, port.targetPort)).toBe(port.port)
    expect((spec.ports ?? []).map((port) => port.port).sort()).toEqual([client, peer].sort())
  })

  it('names each member by its pod and advertises its stable DNS name', () => {
    const dns = (pod: string) => `${pod}.${etcdSpec.serviceName}.${NAMESPACE}.svc`
    for (const { pod, args, flags } of members) {
      expect(
        args.filter((arg) => arg.includes('$(')),
        'unexpanded references',
      ).toEqual([])
      expect(flags.get('name')).toBe(pod)
      const client = portOf(flags.get('listen-client-urls'))
      const peer = portOf(flags.get('listen-peer-urls'))
      expect(client).toBe(containerPort(etcd, client))
      expect(peer).toBe(containerPort(etcd, peer))
      expect(flags.get('advertise-client-urls')).toBe(`http://${dns(pod)}:${client}`)
      expect(flags.get('initial-advertise-peer-urls')).toBe(`http://${dns(pod)}:${peer}`)
      expect(flags.get('initial-cluster-state')).toBe('new')
    }
  })

  it('bootstraps every member from one list naming all members at their peer URLs', () => {
    const lists = new Set(members.map(({ flags }) => flags.get('initial-cluster')))
    expect(lists.size).toBe(1)
    const list = [...lists][0] ?? ''
    expect(list).toBe(
      members
        .map(({ pod, flags }) => `${pod}=${flags.get('initial-advertise-peer-urls')}`)
        .join(','),
    )
    expect(new Set(members.map(({ flags }) => flags.get('initial-cluster-token'))).size).toBe(1)
  })

  it('keeps each member on a volume of its own at its data dir', () => {
    const dataDir = defined(members[0]?.flags.get('data-dir'), '--data-dir')
    const mount = etcd.volumeMounts?.find(
      (m) => dataDir === m.mountPath || dataDir.startsWith(`${m.mountPath}/`),
    )
    const template = etcdSpec.volumeClaimTemplates?.find((t) => t.metadata?.name === mount?.name)
    expect(template?.spec?.accessModes).toEqual(['ReadWriteOnce'])
    expect(etcdPod.volumes ?? []).toEqual([])
  })

  it('is ready with a leader, alive without one, both on the metrics port', () => {
    const metrics = portOf(members[0]?.flags.get('listen-metrics-urls'))
    for (const probe of [etcd.readinessProbe, etcd.livenessProbe, etcd.startupProbe])
      expect(containerPort(etcd, probe?.httpGet?.port)).toBe(metrics)
    // /health needs a leader and a linearizable read; serializable=true answers locally.
    expect(httpPath(etcd.readinessProbe, 'readinessProbe')).toBe('/health')
    for (const [probe, what] of [
      [etcd.livenessProbe, 'livenessProbe'],
      [etcd.startupProbe, 'startupProbe'],
    ] as const) {
      const url = new URL(httpPath(probe, what), 'http://member')
      expect(url.pathname).toBe('/health')
      expect(url.searchParams.get('serializable'), what).toBe('true')
    }
  })

  it('is only ever disrupted down to its quorum', () => {
    const budget = budgets.filter((b) => labelSelectorSelects(b.spec?.selector, etcdLabels))
    expect(budget).toHaveLength(1)
    const picks = (labels: Record<string, string>) =>
      labelSelectorSelects(budget[0]?.spec?.selector, labels)
    expect(selected(picks)).toEqual([`StatefulSet/${statefulSet.metadata?.name}`])
    const quorum = Math.floor(replicas / 2) + 1
    expect(budget[0]?.spec?.minAvailable).toBe(quorum)
    expect(quorum).toBe(2)
  })

  it('has a client Service over the same members, on their client port', () => {
    const clients = services.filter((s) => s !== headless && selects(s.spec?.selector, etcdLabels))
    expect(clients).toHaveLength(1)
    const spec = clients[0]?.spec
    expect(spec?.clusterIP).toBeUndefined()
    expect(selected((labels) => selects(spec?.selector, labels))).toHaveLength(1)
    const port = portOf(members[0]?.flags.get('listen-client-urls'))
    expect(spec?.ports?.map((p) => containerPort(etcd, p.targetPort))).toEqual([port])
  })

  it('runs the etcd image docker-compose.yml runs, as a non-root user', () => {
    const compose = parseDocument(read('docker-compose.yml'), { merge: true }).toJS() as {
      services: Record<string, { image?: string }>
    }
    const images = Object.values(compose.services)
      .map((service) => service.image)
      .filter((image) => image?.includes('/etcd'))
    expect(new Set(images)).toEqual(new Set([etcd.image]))
    expect(etcd.image).toBe(ETCD_IMAGE)
    // Only flags that 3.6 and 3.7 keep: a newer image needs no other change.
    const shipped = [...(members[0]?.flags.keys() ?? [])]
    expect(shipped.filter((flag) => !ETCD_FLAGS_3_5_TO_3_7.has(flag))).toEqual([])
    expect(etcdPod.securityContext?.runAsNonRoot).toBe(true)
    expect(etcdPod.securityContext?.runAsUser).toBeGreaterThan(0)
    // etcd reads ETCD_* variables as flags: no Service may add some.
    expect(etcdPod.enableServiceLinks).toBe(false)
  })
})

describe('the tus Deployment', () => {
  const pod = `${deployment.metadata?.name}-7d4b9c6f5-x2k8p`
  const env = environment(tus, pod, NAMESPACE)
  const port = Number(env.get('PORT'))
  const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ')

  it('runs at least two replicas of the image built from the Dockerfile, with its CMD', () => {
    expect(tusSpec.replicas).toBeGreaterThanOrEqual(2)
    expect(labelSelectorSelects(tusSpec.selector, tusLabels)).toBe(true)
    const tag = defined(/docker build -t (\S+) \./.exec(dockerfile)?.[1], 'docker build -t')
    expect(tus.image?.split(':')[0]).toBe(tag)
    expect(tus.command).toBeUndefined()
    expect(tus.args).toBeUndefined()
  })

  it('lists exactly the etcd members, by their DNS names, at their client port', () => {
    const endpoints = defined(env.get('ETCD_ENDPOINTS'), 'ETCD_ENDPOINTS').split(',')
    const advertised = members.map(({ flags }) => new URL(flags.get('advertise-client-urls') ?? ''))
    expect(endpoints.join(',')).toBe(advertised.map((url) => url.host).join(','))
    expect(endpoints).toHaveLength(3)
  })

  it('sets what the example reads: address, port, files, prefix, TTL, its pod name', () => {
    expect(env.get('HOST')).toBe('0.0.0.0')
    expect(containerPort(tus, port)).toBe(port)
    expect(env.get('INSTANCE_NAME')).toBe(pod)
    expect(env.get('PREFIX')).toMatch(/^\/[^/]/)
    for (const name of ['LOCK_TTL', 'SHUTDOWN_GRACE_MS'])
      expect(Number(env.get(name)), name).toBeGreaterThan(0)
    const example = read('examples/node-http.ts')
    const readByExample = new Set(
      [...example.matchAll(/process\.env\.([A-Z_]+)/g)].map((m) => m[1]),
    )
    // POD_NAMESPACE only fills in $(POD_NAMESPACE) below it.
    const notForTheExample = new Set(['POD_NAMESPACE'])
    for (const variable of tus.env ?? [])
      if (!notForTheExample.has(variable.name))
        expect(readByExample, variable.name).toContain(variable.name)
  })

  it('is ready while /health answers on its port; alive while the port accepts', () => {
    expect(httpPath(tus.readinessProbe, 'readinessProbe')).toBe('/health')
    expect(containerPort(tus, tus.readinessProbe?.httpGet?.port)).toBe(port)
    // Neither may depend on etcd: an etcd outage must not restart every pod.
    for (const probe of [tus.livenessProbe, tus.startupProbe]) {
      expect(Object.keys(probe ?? {})).not.toContain('httpGet')
      expect(Object.keys(probe ?? {})).not.toContain('exec')
      expect(containerPort(tus, probe?.tcpSocket?.port)).toBe(port)
    }
  })

  it('gives preStop, the request drain and the session revoke their time before SIGKILL', () => {
    const preStop = preStopSeconds(tus)
    expect(preStop).toBeGreaterThan(0)
    const grace = Number(env.get('SHUTDOWN_GRACE_MS')) / 1000
    // examples/shutdown.ts: the lock drain, with the revoke at its end, then the grace.
    const lockDrain = SHUTDOWN_DRAIN_MS / 1000
    expect(tusPod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(
      preStop + lockDrain + grace + 1,
    )
  })

  it('mounts one ReadWriteMany claim at FILES_DIR, the directory the image prepares', () => {
    const filesDir = env.get('FILES_DIR')
    expect(dockerfile).toMatch(new RegExp(`\\bFILES_DIR=${filesDir}\\s`))
    const mount = defined(
      tus.volumeMounts?.find((m) => m.mountPath === filesDir),
      `a volume at ${filesDir}`,
    )
    expect(mount.readOnly ?? false).toBe(false)
    const volume = tusPod.volumes?.find((v) => v.name === mount.name)
    const claimName = defined(volume?.persistentVolumeClaim?.claimName, 'claimName')
    const claim = claims.find((c) => c.metadata?.name === claimName)
    expect(claim?.spec?.accessModes).toEqual(['ReadWriteMany'])
  })

  it('has a Service over its pods only, on the port they listen on', () => {
    const service = services.filter((s) => selects(s.spec?.selector, tusLabels))
    expect(service).toHaveLength(1)
    const spec = service[0]?.spec
    expect(selected((labels) => selects(spec?.selector, labels))).toEqual([
      `Deployment/${deployment.metadata?.name}`,
    ])
    expect(spec?.ports?.map((p) => containerPort(tus, p.targetPort))).toEqual([port])
  })

  it('keeps one pod serving through a node drain', () => {
    const budget = budgets.filter((b) => labelSelectorSelects(b.spec?.selector, tusLabels))
    expect(budget).toHaveLength(1)
    const picks = (labels: Record<string, string>) =>
      labelSelectorSelects(budget[0]?.spec?.selector, labels)
    expect(selected(picks)).toEqual([`Deployment/${deployment.metadata?.name}`])
    expect(budget[0]?.spec?.maxUnavailable).toBeLessThan(tusSpec.replicas ?? 1)
  })

  it("runs as the Dockerfile's user, with a writable /tmp under a read-only root", () => {
    // The node images' `node` user: uid 1000.
    const uids: Record<string, number> = { node: 1000 }
    const user = /^USER\s+(\S+)/m.exec(dockerfile)?.[1] ?? ''
    const context = tusPod.securityContext
    expect(context?.runAsNonRoot).toBe(true)
    expect(context?.runAsUser).toBe(uids[user] ?? Number(user))
    expect(context?.runAsUser).toBeGreaterThan(0)
    if (tus.securityContext?.readOnlyRootFilesystem) {
      const tmp = tus.volumeMounts?.find((m) => m.mountPath === '/tmp')
      expect(tusPod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined()
    }
  })
})
