/**
 * etcd flags that mean the same on 3.5, 3.6 and 3.7: checked in etcd's sources (v3.5.33,
 * v3.6.14, v3.7.1: server/embed/config.go, server/etcdmain/config.go). The deployments ship only
 * these, so moving their image to 3.6 or 3.7 changes no flag. Not here on purpose: every
 * `--experimental-*` flag (3.6 renames or turns them into feature gates, 3.7 removes them, for
 * example `--experimental-watch-progress-notify-interval`, now `--watch-progress-notify-interval`)
 * and `--enable-v2` (removed in 3.6).
 */
export const ETCD_FLAGS_3_5_TO_3_7: ReadonlySet<string> = new Set([
  'name',
  'data-dir',
  'listen-client-urls',
  'advertise-client-urls',
  'listen-peer-urls',
  'initial-advertise-peer-urls',
  'initial-cluster',
  'initial-cluster-state',
  'initial-cluster-token',
  'listen-metrics-urls',
  'auto-compaction-mode',
  'auto-compaction-retention',
  'logger',
  'log-level',
  'cert-file',
  'key-file',
  'trusted-ca-file',
  'client-cert-auth',
  'max-request-bytes',
])

/** The etcd image the deployments run: the latest 3.5 patch release (CHANGELOG-3.5, 2026-07-23). */
export const ETCD_IMAGE = 'gcr.io/etcd-development/etcd:v3.5.33'
