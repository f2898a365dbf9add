import type { TestProject } from 'vitest/node'
import { startEtcd } from './etcd.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Client endpoints of the etcd every test file shares (ETCD_ENDPOINTS, or one we started). */
    etcdEndpoints: string[]
  }
}

/** One etcd member for the whole run, unless ETCD_ENDPOINTS points at one already. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env.ETCD_ENDPOINTS
  if (given) {
    project.provide(
      'etcdEndpoints',
      given.split(',').map((e) => e.trim().replace(/^https?:\/\//, '')),
    )
    return async () => {}
  }
  const etcd = await startEtcd(1)
  project.provide('etcdEndpoints', etcd.endpoints)
  return () => etcd.stop()
}
