/** Timing helpers: interleaved rounds, percentiles. Times are in microseconds. */

export interface Summary {
  median: number
  p99: number
  samples: number
}

/** One measured operation of a scenario side. */
export interface Side {
  name: string
  op(): Promise<unknown>
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

export function summarize(values: number[]): Summary {
  return {
    median: round(percentile(values, 50)),
    p99: round(percentile(values, 99)),
    samples: values.length,
  }
}

export const round = (x: number, digits = 2) => Number(x.toFixed(digits))

export async function timed(op: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await op()
  return Number(process.hrtime.bigint() - start) / 1e3
}

/**
 * Runs the sides in rounds (A, B, C, A, B, C, ...) so machine drift hits all alike; returns every
 * per-operation time of each side.
 */
export async function interleaved(
  sides: Side[],
  rounds: number,
  opsPerRound: number,
  warmup = 10,
): Promise<Map<string, number[]>> {
  const times = new Map(sides.map((s) => [s.name, [] as number[]]))
  for (const side of sides) for (let i = 0; i < warmup; i++) await side.op()
  for (let r = 0; r < rounds; r++) {
    for (const side of sides) {
      const list = times.get(side.name) ?? []
      for (let i = 0; i < opsPerRound; i++) list.push(await timed(() => side.op()))
    }
  }
  return times
}
