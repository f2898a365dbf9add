/**
 * Which etcd the harness starts, and what that version does where etcd lines differ: tests that
 * pin a difference between 3.4.23 and 3.5 expect the behaviour of the version they run on.
 */
import { execFileSync } from 'node:child_process'
import { findEtcdBinary } from './etcd.js'

/** `major.minor.patch` of the etcd binary the harness starts (`etcd --version`). */
export function etcdBinaryVersion(): string {
  const out = execFileSync(findEtcdBinary(), ['--version'], { encoding: 'utf8' })
  const version = /^etcd Version: (\d+\.\d+\.\d+)/m.exec(out)?.[1]
  if (version === undefined) throw new Error(`no version in etcd --version: ${out}`)
  return version
}

/** `a` compared with `b` (`major.minor.patch`): negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number))
  for (let i = 0; i < 3; i++) {
    const d = (x?.[i] ?? 0) - (y?.[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/**
 * Whether a requested progress notification goes through the watch stream (etcd PR 15237,
 * in 3.4.25 and 3.5.8): answered only when every watch of the stream is synced, so never ahead
 * of their events, and not at all on a stream with no watch. Before, etcd answered at once,
 * with the store's revision, even ahead of events of a watch still catching up.
 */
export function requestedProgressFollowsEvents(version: string): boolean {
  if (compareVersions(version, '3.5.0') >= 0) return compareVersions(version, '3.5.8') >= 0
  return compareVersions(version, '3.4.25') >= 0
}

/** The flag that sets the interval of periodic progress notifications (renamed in 3.6). */
export function progressNotifyIntervalFlag(version: string): string {
  return compareVersions(version, '3.6.0') >= 0
    ? '--watch-progress-notify-interval'
    : '--experimental-watch-progress-notify-interval'
}
