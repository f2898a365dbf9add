import { inspect } from 'node:util'

/**
 * What to show of a thrown value: an Error's message, anything else inspected. Never throws:
 * String() does, on an object without a prototype.
 */
export function thrownMessage(thrown: unknown): string {
  return thrown instanceof Error
    ? thrown.message
    : inspect(thrown, { depth: 1, breakLength: Infinity })
}
