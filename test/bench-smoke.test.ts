import { describe, expect, it } from 'vitest'
import { runBench, SCENARIOS } from '../bench/run.js'
import { endpoints } from './harness/index.js'

describe('npm run bench (smoke: a few iterations of each scenario)', () => {
  it('runs every scenario and reports a finite figure for each measure', async () => {
    const run = await runBench({ hosts: endpoints(), quick: true })
    const scenarios = new Set(run.results.map((r) => r.scenario.split(' ')[0]))
    expect(scenarios.size).toBeGreaterThanOrEqual(Object.keys(SCENARIOS).length)
    for (const result of run.results) {
      expect(Number.isFinite(result.value), `${result.scenario}: ${result.name}`).toBe(true)
    }
    expect(run.results.filter((r) => r.unit === 'ratio').length).toBeGreaterThan(8)
  }, 120_000)
})
