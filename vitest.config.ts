import { defineConfig } from 'vitest/config'

// In CI, also write vitest's JSON report: .ci/run reads it for its "tests: N passed, M failed" line.
const reporters = process.env.CI ? ['default', 'json'] : ['default']

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters,
    outputFile: { json: '.ci/results.json' },
  },
})
