/**
 * The package the bench measures: its build (`dist/`, which `npm run bench` makes first), as
 * users run it. Run through tsx, `src/` is transformed by esbuild with `keepNames`, which defines
 * a `name` property on every function it makes: about 250 bytes of heap per closure (2.3 KB per
 * held lock, a third of what it measured) and the CPU of a property definition each time one is
 * made, costs no user pays. The bench's smoke test (vitest) runs the scenarios on `src/`.
 */
import type * as Package from '../src/index.js'

const target = process.env.VITEST ? '../src/index.js' : '../dist/index.js'
const loaded: typeof Package = await import(target).catch((error: unknown) => {
  throw new Error(`the bench measures the built package: run npm run build first (${error})`)
})

export const { Etcd3Locker, createEtcdClient } = loaded
export type Etcd3Locker = Package.Etcd3Locker
