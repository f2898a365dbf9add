/**
 * `npm run test:chaos`: the full chaos run (5 minutes of faults by default).
 * Environment: CHAOS_SEED (default: random, printed), CHAOS_SECONDS (default 300).
 * Exits 1 when the checker finds a violation.
 */
import { describeResult, runChaos } from './driver.js'

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31))
const seconds = Number(process.env.CHAOS_SECONDS ?? 300)
const result = await runChaos({ seed, durationMs: seconds * 1_000 })
for (const line of describeResult(result)) console.log(line)
if (result.violations.length > 0) console.log(`ledgers kept in ${result.ledgerDir}`)
process.exit(result.violations.length === 0 ? 0 : 1)
