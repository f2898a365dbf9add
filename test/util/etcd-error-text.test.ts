import { describe, expect, it } from 'vitest'
import { SessionUnavailableError } from '../../src/index.js'
import { etcdErrorText } from '../../src/util/etcd-error-text.js'

// grpc-js's message for a member that refuses connections, as it is thrown.
const REFUSED =
  '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: '

describe('etcd error text', () => {
  it("drops grpc-js's empty trailing Resolution note, keeps one with text, and joins lines", () => {
    expect(etcdErrorText(new Error(REFUSED))).toBe(
      '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1',
    )
    expect(etcdErrorText(new Error('14 UNAVAILABLE: x. Resolution note: DNS lookup failed'))).toBe(
      '14 UNAVAILABLE: x. Resolution note: DNS lookup failed',
    )
    expect(etcdErrorText(new Error('a\n  b'))).toBe('a b')
    expect(etcdErrorText(undefined)).toBe('no answer')
  })

  it('SessionUnavailableError shows it so', () => {
    expect(new SessionUnavailableError('127.0.0.1:1', 300, new Error(REFUSED)).message).toBe(
      'etcd at 127.0.0.1:1 did not grant a lock session within 300 ms: 14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1',
    )
  })
})
