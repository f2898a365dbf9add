import { describe, expect, it } from 'vitest'
import { describeResult, runChaos } from './chaos/driver.js'
import { FAULT_KINDS } from './chaos/ledger.js'

// The CI variant of `npm run test:chaos`: the same workers, faults and checker, 60 s of faults
// with a fixed seed (CHAOS_SEED overrides it) so a failure can be replayed. It starts its own
// three-member cluster; the run's shared etcd is not used. See test/chaos/checker.ts for the
// properties checked.
const SEED = Number(process.env.CHAOS_SEED ?? 20_261_121)

describe('chaos', () => {
  it('four workers under kills, pauses, cuts and etcd member and leader kills: no violation', async () => {
    const result = await runChaos({
      seed: SEED,
      durationMs: 60_000,
      log: (line) => console.log(line),
    })
    console.log(
      describeResult(result)
        .map((line) => `[figure] chaos ${line}`)
        .join('\n'),
    )
    expect(result.violations).toEqual([])
    for (const kind of FAULT_KINDS) expect(result.figures.faults[kind] ?? 0).toBeGreaterThan(0)
    expect(result.figures.acquisitions).toBeGreaterThan(100)
    expect(result.lockKeysLeft).toBe(0)
  }, 240_000)
})
