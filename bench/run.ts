/**
 * `npm run bench`: what a lock costs, against the etcd floor and the alternatives, in one run.
 *
 * Every ratio compares two sides measured in the same run, in interleaved rounds, so machine
 * drift hits both. Uses ETCD_ENDPOINTS when set, else starts (and stops) a local etcd member.
 * Writes bench/results.json and bench/results.svg. BENCH_QUICK=1: a few iterations of each.
 */
import { writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { pathToFileURL } from 'node:url'
import { startEtcd } from '../test/harness/etcd.js'
import { availability } from './availability.js'
import { barChart } from './chart.js'
import { endToEnd } from './e2e.js'
import { etcdCost } from './etcd-cost.js'
import { scale } from './scale.js'
import {
  type BenchContext,
  handOver,
  kvStore,
  lockCycle,
  type Result,
  throughput,
} from './scenarios.js'
import { soak, soakAfterScale } from './soak.js'

export const SCENARIOS = {
  lockCycle,
  throughput,
  handOver,
  kvStore,
  etcdCost,
  endToEnd,
  // A soak alone, then the scale scenario, then the same soak right after it: the watch backlog
  // that 10 000 locks used to leave behind made the second one crawl.
  soak,
  scale,
  soakAfterScale,
  availability,
}

export interface BenchRun {
  machine: string
  date: string
  seconds: number
  results: Result[]
}

/** Runs the scenarios (all by default) against `hosts`; closes all it opened. */
export async function runBench(options: {
  hosts: string[]
  quick?: boolean
  only?: Array<keyof typeof SCENARIOS>
  log?: (line: string) => void
}): Promise<BenchRun> {
  const started = performance.now()
  const results: Result[] = []
  for (const name of options.only ?? []) {
    if (!(name in SCENARIOS)) throw new Error(`no scenario ${name}: ${Object.keys(SCENARIOS)}`)
  }
  for (const name of options.only ?? (Object.keys(SCENARIOS) as Array<keyof typeof SCENARIOS>)) {
    const cleanups: Array<() => unknown> = []
    const ctx: BenchContext = {
      hosts: options.hosts,
      prefix: `/bench-${process.pid}-${name}`,
      quick: options.quick ?? false,
      defer: (cleanup) => cleanups.push(cleanup),
    }
    const scenarioStart = performance.now()
    try {
      results.push(...(await SCENARIOS[name](ctx)))
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup()
    }
    options.log?.(`${name}: ${((performance.now() - scenarioStart) / 1e3).toFixed(1)} s`)
  }
  return {
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    date: new Date().toISOString(),
    seconds: Number(((performance.now() - started) / 1e3).toFixed(1)),
    results,
  }
}

/** The results as a Markdown table, as the README shows them. */
export function markdownTable(run: BenchRun): string {
  const lines = [
    '| scenario | measure | median | p99 (or range of rounds) | unit | goal |',
    '|---|---|---:|---:|---|---|',
  ]
  for (const r of run.results) {
    const goal = r.goal ? `${r.goal.higherIsBetter ? '>=' : '<='} ${r.goal.value}` : ''
    const spread = r.range ? `${r.range[0]} to ${r.range[1]}` : (r.p99 ?? '')
    lines.push(`| ${r.scenario} | ${r.name} | ${r.value} | ${spread} | ${r.unit} | ${goal} |`)
  }
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const given = process.env.ETCD_ENDPOINTS?.split(',')
  const etcd = given ? undefined : await startEtcd(1)
  try {
    const run = await runBench({
      hosts: given ?? etcd?.endpoints ?? [],
      quick: process.env.BENCH_QUICK === '1',
      // BENCH_ONLY=lockCycle,endToEnd runs just those scenarios.
      only: process.env.BENCH_ONLY?.split(',') as Array<keyof typeof SCENARIOS> | undefined,
      log: (line) => console.error(line),
    })
    console.log(markdownTable(run))
    console.log(`\n${run.machine}; ${run.seconds} s`)
    // Only a whole run replaces the results and the chart the README shows.
    const whole = process.env.BENCH_QUICK !== '1' && process.env.BENCH_ONLY === undefined
    const suffix = whole ? '' : '.partial'
    writeFileSync(
      new URL(`./results${suffix}.json`, import.meta.url),
      `${JSON.stringify(run, null, 2)}\n`,
    )
    const bars = run.results
      .filter((r) => r.unit === 'ratio')
      .map((r) => ({
        label: `${r.scenario}: ${r.name}`,
        value: r.value,
        ...(r.goal ? { goal: r.goal } : {}),
      }))
    writeFileSync(
      new URL(`./results${suffix}.svg`, import.meta.url),
      barChart(`tus-etcd3-locker: ratios against same-run baselines (${run.machine})`, bars),
    )
  } finally {
    await etcd?.stop()
  }
}
