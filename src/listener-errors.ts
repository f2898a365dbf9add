import type { EventEmitter } from 'node:events'
import { log } from './util/log.js'
import { thrownMessage } from './util/thrown-message.js'

/** The code of the process warning that reports a listener that threw. */
export const LISTENER_THREW = 'TUS_ETCD3_LOCKER_LISTENER_THREW'

/**
 * Emits events to listeners that are user code (logs, metrics): each is called on its own, and
 * one that throws, or returns a promise that rejects, changes nothing of what the emitter does.
 * Its error is reported as a process warning ({@link LISTENER_THREW}) once per event name, and
 * every one in the `tus-etcd3-locker:locker` debug log.
 */
export class IsolatedListeners<Events extends Record<keyof Events, unknown[]>> {
  private readonly reported = new Set<keyof Events>()

  constructor(
    private readonly emitter: Pick<EventEmitter, 'rawListeners'>,
    /** Who emits, as the warning names it. */
    private readonly name: string,
  ) {}

  /** Calls each listener of `event` with `args`, in order, as `EventEmitter.emit` would. */
  emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    // rawListeners: once() wrappers remove themselves when called, as with emit().
    const listeners = this.emitter.rawListeners(event as string | symbol) as Array<
      (...args: Events[K]) => unknown
    >
    for (const listener of listeners) {
      try {
        const result: unknown = Reflect.apply(listener, this.emitter, args)
        if (result instanceof Promise) result.catch((error) => this.report(event, error))
      } catch (error) {
        this.report(event, error)
      }
    }
  }

  private report(event: keyof Events, error: unknown): void {
    const message = thrownMessage(error)
    log.locker('a %s listener threw: %s', String(event), message)
    if (this.reported.has(event)) return
    this.reported.add(event)
    process.emitWarning(
      `${this.name}: a "${String(event)}" listener threw (${message}); nothing else changed. Listeners must not throw: catch inside them.`,
      { code: LISTENER_THREW },
    )
  }
}
