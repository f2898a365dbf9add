/** The `--help` texts: one for the program, one per command. */
import type { Command } from './args.js'

export const PROGRAM = 'tus-etcd3-locker'

const GLOBAL_OPTIONS = `Options:
  --endpoints <list>  etcd endpoints, comma-separated host:port
                      (default: $ETCD_ENDPOINTS, else 127.0.0.1:2379)
  --prefix <prefix>   root of the locker's keys, as given to Etcd3Locker (default: /tusd)
  --json              print one JSON document on stdout instead of text
  -h, --help          show this help
  -v, --version       print the version of tus-etcd3-locker`

const EXIT_CODES = `Exit codes:
  0  done
  1  etcd unreachable (within about 3 s) or answered with an error
  2  usage error
  3  release: the holder did not release within --timeout
  4  release: no lock on that id`

const TEXTS: Record<Command | 'program', string> = {
  program: `Usage: ${PROGRAM} <command> [options]

Inspect the upload locks of tus-etcd3-locker (and of etcdctl lock / Go's concurrency.Mutex on
the same keys) in etcd, and ask a holder to release one.

Commands:
  locks          list every locked upload id: its holder and its waiters, in queue order
  sessions       list the sessions (etcd leases) that hold, wait for or cache something
  release <id>   ask the holder of <id> to release it, as a waiting request would

Run '${PROGRAM} <command> --help' for a command's details.

${GLOBAL_OPTIONS}

${EXIT_CODES}`,

  locks: `Usage: ${PROGRAM} locks [options]

List every upload id with a lock queue under the prefix: the holder's session lease (hex) and
its TTL left in seconds, then each waiter in queue order with its lease and TTL left.

${GLOBAL_OPTIONS}`,

  sessions: `Usage: ${PROGRAM} sessions [options]

List every session lease that has a key under the prefix: its TTL left and granted TTL in
seconds, how many locks it holds and waits for, and how many KV cache leases it owns. A
session with no key under the prefix (an idle locker) is not seen.

${GLOBAL_OPTIONS}`,

  release: `Usage: ${PROGRAM} release <id> [options]

Ask the holder of upload <id> to release it, the way a waiting request does: queue a key on a
short lease of our own, which makes the holder's requestRelease fire, wait until the holder's
key is gone, then always remove our key and revoke our lease. The holder is asked at most once
per hold: if others already wait, it has been asked already.

  --timeout <ms>      how long to wait for the holder to release (default: 10000)

${GLOBAL_OPTIONS}

${EXIT_CODES}`,
}

/** The help text of `command`, or of the whole program. */
export function usage(command?: Command): string {
  return TEXTS[command ?? 'program']
}
