/**
 * onAbort, the listener fan-out behind every session-lost listener: it must behave as an
 * EventTarget's own 'abort' listeners do (a holder that does not hear its session end could write
 * past its lock), while adding and removing cost the same with 20 000 listeners as with one.
 */
import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import {
  LinkedAbort,
  listenForAbort,
  onAbort,
  type StopSignal,
  stopListeningForAbort,
} from '../../src/util/abort.js'
import { hearingUncaught } from '../harness/uncaught.js'

// A LinkedAbort is its own signal (no AbortSignal, for its weight): its listeners must be called
// exactly as an AbortSignal's are.
const signalKinds = [
  {
    kind: 'an AbortSignal',
    make: () => {
      const controller = new AbortController()
      return {
        signal: controller.signal as StopSignal,
        abort: (why?: unknown) => controller.abort(why),
      }
    },
  },
  {
    kind: 'a LinkedAbort',
    make: () => {
      const stop = new LinkedAbort()
      return { signal: stop.signal, abort: (why?: unknown) => stop.abort(why) }
    },
  },
]

describe.each(signalKinds)('onAbort on $kind', ({ make }) => {
  it('calls each listener once, in the order added, and not once removed', () => {
    const controller = make()
    const calls: string[] = []
    onAbort(controller.signal, () => calls.push('a'))
    const removeB = onAbort(controller.signal, () => calls.push('b'))
    onAbort(controller.signal, () => calls.push('c'))
    removeB()
    controller.abort()
    controller.abort()
    expect(calls).toEqual(['a', 'c'])
  })

  it('the same function added twice is called twice and removed one registration at a time', () => {
    const controller = make()
    let calls = 0
    const listener = () => calls++
    const first = onAbort(controller.signal, listener)
    onAbort(controller.signal, listener)
    first()
    controller.abort()
    expect(calls).toBe(1)
  })

  it('a listener removed by an earlier one is not called; one added meanwhile is not either', () => {
    const controller = make()
    const calls: string[] = []
    let removeLater = () => {}
    onAbort(controller.signal, () => {
      calls.push('first')
      removeLater()
      onAbort(controller.signal, () => calls.push('added during the abort'))
    })
    removeLater = onAbort(controller.signal, () => calls.push('removed'))
    onAbort(controller.signal, () => calls.push('last'))
    controller.abort()
    expect(calls).toEqual(['first', 'last'])
  })

  it('a listener that throws does not keep the others from running; its error is thrown alone', async () => {
    const controller = make()
    const calls: string[] = []
    // Heard by the test alone: the test runner would report the error as a failure.
    await hearingUncaught(async (uncaught) => {
      onAbort(controller.signal, () => {
        throw new Error('listener failed')
      })
      onAbort(controller.signal, () => calls.push('next'))
      controller.abort()
      expect(calls).toEqual(['next'])
      expect(String(await uncaught.next())).toContain('listener failed')
    })
  })

  it('on a signal that has aborted, nothing is called', () => {
    const controller = make()
    controller.abort()
    let called = false
    onAbort(controller.signal, () => {
      called = true
    })()
    expect(called).toBe(false)
  })

  it('listenForAbort: a listener removed with stopListeningForAbort is not called; one on an aborted signal neither', () => {
    const controller = make()
    const calls: string[] = []
    const a = () => calls.push('a')
    const b = () => calls.push('b')
    listenForAbort(controller.signal, a)
    listenForAbort(controller.signal, b)
    stopListeningForAbort(controller.signal, a)
    controller.abort()
    listenForAbort(controller.signal, a)
    expect(calls).toEqual(['b'])
  })

  it('a listener removed with stopListeningForAbort by an earlier one, during the abort, is not called', () => {
    const controller = make()
    const calls: string[] = []
    const later = () => calls.push('later')
    listenForAbort(controller.signal, () => {
      calls.push('first')
      stopListeningForAbort(controller.signal, later)
    })
    listenForAbort(controller.signal, later)
    controller.abort()
    expect(calls).toEqual(['first'])
  })

  it('listenForAbort with the same function twice: it listens once', () => {
    const controller = make()
    let calls = 0
    const listener = () => calls++
    listenForAbort(controller.signal, listener)
    listenForAbort(controller.signal, listener)
    controller.abort()
    expect(calls).toBe(1)
  })

  it('an AbortHandler object is called with the signal, in its place among functions, and not once removed', () => {
    const controller = make()
    const calls: unknown[] = []
    const handler = { handleAbort: (signal: StopSignal) => calls.push(['handler', signal.reason]) }
    const removed = { handleAbort: () => calls.push('removed') }
    listenForAbort(controller.signal, handler)
    listenForAbort(controller.signal, () => calls.push('function'))
    listenForAbort(controller.signal, removed)
    listenForAbort(controller.signal, handler) // once, as a function given twice
    stopListeningForAbort(controller.signal, removed)
    controller.abort('why')
    expect(calls).toEqual([['handler', 'why'], 'function'])
  })

  it('listeners added after the only one was removed, and after all were, run in the order added', () => {
    const first = make()
    const calls: string[] = []
    const a = () => calls.push('a')
    listenForAbort(first.signal, a)
    stopListeningForAbort(first.signal, a)
    listenForAbort(first.signal, () => calls.push('b'))
    listenForAbort(first.signal, () => calls.push('c'))
    first.abort()
    const second = make()
    const d = () => calls.push('d')
    const e = () => calls.push('e')
    listenForAbort(second.signal, d)
    listenForAbort(second.signal, e)
    stopListeningForAbort(second.signal, d)
    stopListeningForAbort(second.signal, e)
    listenForAbort(second.signal, () => calls.push('f'))
    listenForAbort(second.signal, d)
    second.abort()
    expect(calls).toEqual(['b', 'c', 'f', 'd'])
  })

  it('aborted with no reason, its reason is an AbortError, as an AbortController gives', () => {
    const controller = make()
    controller.abort()
    expect(controller.signal.reason).toBeInstanceOf(DOMException)
    expect((controller.signal.reason as DOMException).name).toBe('AbortError')
  })
})

describe('onAbort', () => {
  it('a polyfilled signal that calls its listeners with an event that has no target is heard', () => {
    // As the abortcontroller-polyfill's emitter does: the listener is called on the signal with a
    // fresh event, never dispatched. lock() takes any signal with addEventListener and aborted.
    class PolyfilledSignal {
      aborted = false
      reason: unknown
      private readonly listeners: Array<(event: unknown) => void> = []
      addEventListener(_type: string, listener: (event: unknown) => void) {
        this.listeners.push(listener)
      }
      removeEventListener() {}
      abort(reason: unknown) {
        this.aborted = true
        this.reason = reason
        for (const listener of this.listeners) listener.call(this, { type: 'abort', target: null })
      }
    }
    const signal = new PolyfilledSignal()
    const stop = new LinkedAbort()
    stop.link(signal as unknown as AbortSignal)
    const calls: unknown[] = []
    onAbort(signal, () => calls.push('direct'))
    signal.abort('why')
    expect(calls).toEqual(['direct'])
    expect(stop.signal.aborted).toBe(true)
    expect(stop.signal.reason).toBe('why')
  })

  it('20 000 listeners: each one removed, the rest still called, and the signal holds one listener', async () => {
    const controller = new AbortController()
    const removes: Array<() => void> = []
    let calls = 0
    for (let i = 0; i < 20_000; i++) removes.push(onAbort(controller.signal, () => calls++))
    expect(EventEmitter.getEventListeners(controller.signal, 'abort')).toHaveLength(1)
    for (let i = 0; i < 20_000; i += 2) removes[i]?.()
    controller.abort()
    expect(calls).toBe(10_000)
  })

  it('a LinkedAbort disposed no longer hears the long-lived signal', async () => {
    const session = new AbortController()
    const stop = new LinkedAbort()
    stop.link(session.signal)
    stop.dispose()
    let heard = false
    onAbort(session.signal, () => {
      heard = true
    })
    session.abort()
    expect(heard).toBe(true)
    expect(stop.signal.aborted).toBe(false)
  })

  it("a LinkedAbort's own listeners are called when a linked signal aborts, with its reason, and the signal has no listener of its own", () => {
    const session = new AbortController()
    const request = new AbortController()
    const stop = new LinkedAbort()
    stop.link(request.signal, 'request reason')
    stop.link(session.signal)
    // Linked again (a retry on the same session): the first link's reason stays.
    stop.link(request.signal, 'another reason')
    const heard: unknown[] = []
    onAbort(stop.signal, () => heard.push(stop.signal.reason))
    const listener = () => heard.push('listened')
    listenForAbort(stop.signal, listener)
    // Every waiting request has one: no AbortSignal (an EventTarget), which costs hundreds of bytes.
    expect(stop.signal).not.toBeInstanceOf(EventTarget)
    request.abort('ignored')
    expect(heard).toEqual(['request reason', 'listened'])
    expect(stop.signal.aborted).toBe(true)
    // Detached from the sources once aborted: the session's abort reaches nobody of it.
    session.abort()
    expect(heard).toHaveLength(2)
  })

  it('a LinkedAbort linked with a reason that is itself a linked signal aborts with the reason of the one that aborted', () => {
    const first = new AbortController()
    const second = new AbortController()
    const stop = new LinkedAbort()
    // The reason given for `first` is the signal `second`: told apart from the sources.
    stop.link(first.signal, second.signal)
    stop.link(second.signal, 'second aborted')
    second.abort()
    expect(stop.signal.reason).toBe('second aborted')
  })

  it('a LinkedAbort aborts with the reason of the linked signal whose abort reaches it first, not of the first one linked', () => {
    const request = new AbortController()
    const closing = new AbortController()
    // A listener of the request's signal, added before lock() linked it, closes the locker.
    request.signal.addEventListener('abort', () => closing.abort('closed'))
    const stop = new LinkedAbort()
    stop.link(request.signal, 'timed out')
    stop.link(closing.signal)
    request.abort()
    expect(stop.signal.reason).toBe('closed')
  })

  it("onAbort's remover removes its own registration only, once", () => {
    const controller = new AbortController()
    let calls = 0
    const listener = () => calls++
    const remove = onAbort(controller.signal, listener)
    remove()
    onAbort(controller.signal, listener)
    remove()
    controller.abort()
    expect(calls).toBe(1)
  })
})
