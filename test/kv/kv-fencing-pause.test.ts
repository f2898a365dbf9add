import { describe, expect, it } from 'vitest'
import { runTs } from '../harness/child.js'
import {
  deferCleanup,
  endpoints,
  newClient,
  newLocker,
  uniquePrefix,
  within,
} from '../harness/index.js'

const TTL = 2
const never = () => new AbortController().signal

// kv-fencing.test.ts deposes a holder by cutting its network: it hears of the loss from its
// local deadline before anyone else can take the lock. A holder frozen by SIGSTOP (a long GC
// pause, a stopped container, a VM migration) cannot hear anything: when it resumes it is still
// "holding" and may write before its deadline timer runs. Only the fence in etcd can stop it.
describe('fencing under a pause', () => {
  it.each([true, false])(
    'a holder frozen past its TTL and resumed cannot write metadata; the new holder value survives (leasing: %s)',
    async (leasing) => {
      const prefix = uniquePrefix('fence-pause')
      const frozen = runTs('../fixtures/fenced-holder.ts', [
        endpoints().join(','),
        prefix,
        'upload',
        String(TTL),
        String(leasing),
      ])
      deferCleanup(async () => {
        frozen.process.kill('SIGCONT')
        await frozen.kill('SIGKILL')
      })
      await within(frozen.waitForLine('held'), 15_000, 'the child holds the lock and has written')

      frozen.process.kill('SIGSTOP')
      const next = newLocker({ prefix, ttl: 10 })
      const taken = next.newLock('upload')
      await within(
        taken.lock(never(), () => {}),
        (TTL + 4) * 1_000,
        'another instance acquires once the frozen holder lease expired',
      )
      await within(
        next.kvStore<{ by: string }>({ leasing }).set('upload', { by: 'new holder' }),
        (TTL + 4) * 1_000,
        'the new holder writes',
      )

      // The command waits in the frozen child's stdin: it runs as soon as the child resumes.
      frozen.send('set')
      frozen.process.kill('SIGCONT')
      const answer = await within(
        frozen.waitForLine((l) => l.startsWith('set ')),
        10_000,
        'the resumed holder tries to write',
      )
      console.log(`[figure] resumed holder write: ${answer}`)
      expect(answer).toMatch(/^set rejected LockLostError told=(true|false)$/)

      const raw = await newClient().get(`${prefix}/.kv/upload`).string()
      expect(JSON.parse(raw ?? 'null')).toEqual({ by: 'new holder' })
      await taken.unlock()
    },
    40_000,
  )
})
