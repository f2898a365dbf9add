import { fileURLToPath } from 'node:url'
import { configDefaults, defineConfig } from 'vitest/config'

// In CI, also write vitest's JSON report: .ci/run reads it for its "tests: N passed, M failed" line
// (one report per etcd line: it passes --outputFile.json=.ci/results-<line>.json).
const reporters = process.env.CI ? ['default', 'json'] : ['default']

const source = (file: string) => fileURLToPath(new URL(file, import.meta.url))

// Tests that time how etcd faults are survived (elections, freezes) run after the rest, one file
// at a time: another file's etcd members and workers on the same cores would stretch the very
// elections they time (a leader kill under the chaos test's load once cost a session in CI).
const FAULT_TIMING_TESTS = ['test/session/availability.test.ts', 'test/chaos.test.ts']

export default defineConfig({
  // The examples import the package by name, as users do: tests run them against src/.
  resolve: {
    alias: [
      { find: /^tus-etcd3-locker$/, replacement: source('./src/index.ts') },
      { find: /^tus-etcd3-locker\/metrics$/, replacement: source('./src/metrics.ts') },
    ],
  },
  test: {
    globalSetup: ['test/harness/global-setup.ts'],
    // The locker's advice warnings that tests cause on purpose are not printed (see the file).
    setupFiles: ['test/harness/expected-warnings.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters,
    outputFile: { json: '.ci/results.json' },
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...FAULT_TIMING_TESTS],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'fault-timing',
          include: FAULT_TIMING_TESTS,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
