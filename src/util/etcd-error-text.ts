import { thrownMessage } from './thrown-message.js'

/**
 * A failed etcd call's message on one line, for our errors' messages: gRPC's TLS messages span
 * lines, and grpc-js ends an unreachable member's message with "Resolution note:" even when the
 * note is empty. A note with text is kept.
 */
export function etcdErrorText(error: unknown): string {
  return (error === undefined || error === null ? 'no answer' : thrownMessage(error))
    .replace(/\s+/g, ' ')
    .replace(/\.? ?Resolution note: ?$/, '')
    .trim()
}
