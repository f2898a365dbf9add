import type { KVClient, Namespace } from 'etcd3'

/** An `Etcd3` client's connection pool: what the etcd3 package's service clients are made on. */
export type Pool = ConstructorParameters<typeof KVClient>[0]

/**
 * `make(pool)` made once per connection pool of an etcd client, one per `Etcd3`, shared by its
 * namespaces (`client.namespace()` shares its parent's pool), and let go with the pool.
 */
export function perPool<T>(make: (pool: Pool) => T): (client: Namespace) => T {
  const made = new WeakMap<Pool, T>()
  return (client) => {
    // The pool is not public in the etcd3 package's types; every Namespace has one.
    const pool = (client as unknown as { pool: Pool }).pool
    let value = made.get(pool)
    if (value === undefined) {
      value = make(pool)
      made.set(pool, value)
    }
    return value
  }
}
