/** Reads counters from etcd's own `/metrics` (served on every member's client URL). */

/**
 * The sum of every sample of metric `name` whose labels include all of `labels`, as etcd at
 * `endpoint` (`127.0.0.1:<port>`) reports it now.
 */
export async function etcdMetric(
  endpoint: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const res = await fetch(`http://${endpoint}/metrics`)
  if (!res.ok) throw new Error(`etcd at ${endpoint} answered /metrics with ${res.status}`)
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  let sum = 0
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== '{' && rest[0] !== ' ') continue // another metric sharing the prefix
    if (!wanted.every((label) => rest.includes(label))) continue
    sum += Number(rest.slice(rest.lastIndexOf(' ') + 1))
  }
  return sum
}

/** {@link etcdMetric} summed over `endpoints`: each member counts what it did. */
export async function etcdMetricSum(endpoints: string[], name: string): Promise<number> {
  const counts = await Promise.all(endpoints.map((endpoint) => etcdMetric(endpoint, name)))
  return counts.reduce((sum, n) => sum + n, 0)
}
