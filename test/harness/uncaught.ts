/** What {@link hearingUncaught} heard. */
export interface UncaughtErrors {
  /** Every uncaught error so far, in order. */
  readonly all: readonly unknown[]
  /** The next uncaught error not yet taken by `next()`; rejects when none comes within 2 s. */
  next(): Promise<unknown>
}

/**
 * Runs `body` with the process's uncaught errors heard by it alone: the test runner's own
 * handlers would report an error the test means to provoke (one thrown on its own) as a failure.
 * Theirs are back however `body` ends.
 */
export async function hearingUncaught<T>(body: (heard: UncaughtErrors) => Promise<T>): Promise<T> {
  const all: unknown[] = []
  let taken = 0
  let waiting: ((error: unknown) => void) | undefined
  const onError = (error: unknown) => {
    all.push(error)
    const wake = waiting
    waiting = undefined
    wake?.(error)
  }
  const heard: UncaughtErrors = {
    all,
    next: () => {
      if (taken < all.length) return Promise.resolve(all[taken++])
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting = undefined
          reject(new Error('no uncaught error came within 2 s'))
        }, 2_000)
        waiting = (error) => {
          clearTimeout(timer)
          taken++
          resolve(error)
        }
      })
    },
  }
  const runners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  process.on('uncaughtException', onError)
  try {
    return await body(heard)
  } finally {
    process.off('uncaughtException', onError)
    for (const runner of runners) process.on('uncaughtException', runner)
  }
}
