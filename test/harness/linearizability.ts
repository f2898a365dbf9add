/**
 * A linearizability checker for read/write registers whose written values are all distinct.
 *
 * With distinct values every read names the write it saw, so each write and its reads form a
 * cluster. A history is linearizable iff, for every key: no read ends before its write begins, and
 * the clusters can be ordered so that whenever an operation ends before another begins, its
 * cluster comes first (or is the same): that is, the "ended before" graph of clusters has no
 * cycle. The initial value (`undefined`) is a write that precedes everything.
 */
export interface Operation {
  kind: 'read' | 'write'
  key: string
  /** Value written, or value the read returned (`undefined`: no value). */
  value: string | undefined
  start: number
  end: number
  who: string
}

/** The first violation found, described, or `undefined` when the history is linearizable. */
export function findViolation(history: Operation[]): string | undefined {
  const byKey = new Map<string, Operation[]>()
  for (const op of history) byKey.set(op.key, [...(byKey.get(op.key) ?? []), op])
  for (const [key, ops] of byKey) {
    const problem = checkKey(key, ops)
    if (problem) return problem
  }
  return undefined
}

const INITIAL = '\u0000initial'

function checkKey(key: string, ops: Operation[]): string | undefined {
  const writes = new Map<string, Operation>()
  for (const op of ops) {
    if (op.kind !== 'write') continue
    if (op.value === undefined || writes.has(op.value)) {
      return `key ${key}: written values must be distinct and defined (${op.value})`
    }
    writes.set(op.value, op)
  }
  const cluster = (op: Operation) => (op.value === undefined ? INITIAL : op.value)
  for (const op of ops) {
    if (op.kind !== 'read' || op.value === undefined) continue
    const write = writes.get(op.value)
    if (!write) return `key ${key}: ${op.who} read ${op.value}, which nobody wrote`
    if (op.end < write.start) {
      return `key ${key}: ${op.who} read ${op.value} before ${write.who} began writing it`
    }
  }
  // Edges between clusters: a ended before b began. The initial cluster precedes all others.
  const edges = new Map<string, Set<string>>()
  const addEdge = (from: string, to: string) => {
    if (from === to) return
    const set = edges.get(from) ?? new Set<string>()
    set.add(to)
    edges.set(from, set)
  }
  for (const value of writes.keys()) addEdge(INITIAL, value)
  for (const a of ops) for (const b of ops) if (a.end < b.start) addEdge(cluster(a), cluster(b))

  const state = new Map<string, 'open' | 'done'>()
  const visit = (node: string, path: string[]): string | undefined => {
    if (state.get(node) === 'done') return undefined
    if (state.get(node) === 'open') {
      const cycle = [...path.slice(path.indexOf(node)), node].map(shown)
      return `key ${key}: no order fits real time: ${cycle.join(' -> ')}`
    }
    state.set(node, 'open')
    for (const next of edges.get(node) ?? []) {
      const found = visit(next, [...path, node])
      if (found) return found
    }
    state.set(node, 'done')
    return undefined
  }
  for (const node of [INITIAL, ...writes.keys()]) {
    const found = visit(node, [])
    if (found) return found
  }
  return undefined
}

const shown = (node: string) => (node === INITIAL ? '(initial)' : node)
