/** Waiting on the number of keys under a prefix, for tests and benchmarks (no vitest inside). */
import type { Etcd3 } from 'etcd3'

/**
 * Resolves once the count of keys under `prefix` satisfies `done`: counted once, then again on
 * every put or delete under it (watched, not polled). The watch starts before the first count, so
 * a change during that count's round trip is not missed.
 */
export async function untilKeys(
  client: Etcd3,
  prefix: string,
  done: (count: number) => boolean,
): Promise<void> {
  const watcher = await client.watch().prefix(prefix).create()
  try {
    await new Promise<void>((resolve, reject) => {
      const recount = () =>
        client
          .getAll()
          .prefix(prefix)
          .count()
          .then((count) => done(count) && resolve(), reject)
      watcher.on('put', recount)
      watcher.on('delete', recount)
      recount()
    })
  } finally {
    await watcher.cancel()
  }
}
