import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// In CI, also write vitest's JSON report: .ci/run reads it for its "tests: N passed, M failed" line.
const reporters = process.env.CI ? ['default', 'json'] : ['default']

const source = (file: string) => fileURLToPath(new URL(file, import.meta.url))

export default defineConfig({
  // The examples import the package by name, as users do: tests run them against src/.
  resolve: {
    alias: [
      { find: /^tus-etcd3-locker$/, replacement: source('./src/index.ts') },
      { find: /^tus-etcd3-locker\/metrics$/, replacement: source('./src/metrics.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters,
    outputFile: { json: '.ci/results.json' },
  },
})
