/**
 * The end-to-end scenario's load balancer in its own process, as a deployed one is: a round-robin
 * proxy over the origins given as arguments. Prints "ready at http://127.0.0.1:<port>/files".
 */
import { startRoundRobin } from '../examples/round-robin-proxy.js'

const proxy = await startRoundRobin(process.argv.slice(2))
console.log(`ready at ${proxy.url}/files`)
process.once('SIGTERM', () => void proxy.close().then(() => process.exit(0)))
