/**
 * Setup file (vitest `setupFiles`): the locker's advice warnings that the tests cause on purpose
 * are not printed. Tests run plain `new Etcd3(...)` clients (the harness's `newClient`, to test
 * the client a user may bring), short TTLs with the default `lockDrainTimeout`, and short
 * drains; each of these makes the locker warn once per process, and 24 such lines in a test run
 * looked like problems. The 'warning' event itself still fires: tests that check a warning
 * listen for it. Any other warning is printed as Node prints it.
 */
const EXPECTED_IN_TESTS = new Set([
  'TUS_ETCD3_LOCKER_DEFAULT_FAULT_HANDLING',
  'TUS_ETCD3_LOCKER_DRAIN_MARGIN',
  'TUS_ETCD3_LOCKER_SHORT_DRAIN',
])

// Node prints warnings through a 'warning' listener of its own; replace it with one that skips
// the expected codes.
const printers = process.listeners('warning')
for (const printer of printers) process.off('warning', printer)
process.on('warning', (warning: Error & { code?: string }) => {
  if (warning.code !== undefined && EXPECTED_IN_TESTS.has(warning.code)) return
  for (const printer of printers) printer.call(process, warning)
})
