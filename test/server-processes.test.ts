/**
 * examples/multi-instance.ts starts server processes (the demo's instances, the bench's sides)
 * and SIGKILLs those still running if its own process exits. The bench runs more than ten at
 * once: that must not print Node's MaxListenersExceededWarning, one `exit` listener per server.
 */
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { startServerProcess } from '../examples/multi-instance.js'

const SCRIPT = fileURLToPath(new URL('./fixtures/ready-server.ts', import.meta.url))

describe('startServerProcess', () => {
  it('twelve servers at once: no MaxListenersExceededWarning, each stopped by its pid', async () => {
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
    process.on('warning', onWarning)
    const started = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => startServerProcess(`s${i}`, SCRIPT, [], () => {})),
    )
    try {
      for (const server of started) if (server.status === 'rejected') throw server.reason
      // A warning is emitted on the next tick after the listener that passed the limit.
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([])
      expect(process.listenerCount('exit')).toBeLessThan(10)
    } finally {
      process.off('warning', onWarning)
      // Every server that started is stopped by its pid, whatever failed (one not ready in
      // time was SIGKILLed by startServerProcess itself).
      await Promise.all(
        started.map((server) =>
          server.status === 'fulfilled' ? server.value.kill('SIGTERM') : undefined,
        ),
      )
    }
  }, 60_000)
})
