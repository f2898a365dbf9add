/**
 * `npm run test:chaos`: the full chaos run: 4 minutes of faults by default, about 5 minutes with start-up and the final checks.
 * Environment: CHAOS_SEED (default: random, printed), CHAOS_SECONDS (default 240).
 * Exits 1 when the checker finds a violation.
 */
import { describeResult, runChaos } from './driver.js'

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31))
const seconds = Number(process.env.CHAOS_SECONDS ?? 240)
const result = await runChaos({ seed, durationMs: seconds * 1_000 })
for (const line of describeResult(result)) console.log(line)
if (result.violations.length > 0) console.log(`ledgers kept in ${result.ledgerDir}`)
process.exit(result.violations.length === 0 ? 0 : 1)
