import type { Namespace } from 'etcd3'
import { describe } from '../keys.js'

/**
 * Throws a TypeError naming `owner` unless `client` looks like an `etcd3` client (an `Etcd3` or
 * one of its namespaces): called without one, the first use of it would fail on an undefined
 * property, far from the mistake.
 */
export function assertEtcdClient(client: unknown, owner: string): asserts client is Namespace {
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof (client as Partial<Namespace>).watch !== 'function' ||
    typeof (client as Partial<Namespace>).leaseClient !== 'object'
  ) {
    throw new TypeError(
      `${owner} needs an Etcd3 client from the etcd3 package as its first argument (createEtcdClient({ hosts })), got ${describe(client)}`,
    )
  }
}
