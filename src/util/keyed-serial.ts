/**
 * Runs tasks one after another per key (different keys run in parallel): a process's own reads,
 * writes and revokes of one KV key never interleave.
 */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<unknown>>()

  /** Runs `task` after every task queued earlier for `key`; settles as `task` does. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve()
    const result = before.then(task, task)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.tails.set(key, tail)
    tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return result
  }

  /** Resolves once every task queued so far for `key` has settled. */
  idle(key: string): Promise<void> | undefined {
    return this.tails.get(key) as Promise<void> | undefined
  }
}
