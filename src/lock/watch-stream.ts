import type { Namespace, Watcher } from 'etcd3'

/** How long the stream is kept open after the last lock() (ms). */
const LINGER_MS = 30_000

/**
 * Keeps the client's watch stream open while locks are in use. The etcd3 client closes its one
 * watch stream when its last watcher ends and opens a new one for the next watch: a waiter's
 * first watch after a quiet spell (the hand-over from a kept key) would pay a stream setup on
 * the way to its lock. One watcher on a key nobody writes (`P/.watch-stream`; ids with a leading
 * dot are escaped, so no upload's queue is there) costs etcd one idle watcher per process, and
 * only until {@link LINGER_MS} after the last `lock()`: a process whose client is closed before
 * its locker must still be able to exit.
 */
export class WatchStream {
  private watcher: Watcher | undefined
  private linger: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly client: Namespace,
    private readonly prefix: string,
  ) {}

  /** A lock() is under way: open the stream (if it is not) and keep it a while. */
  touch(): void {
    if (this.closed) return
    if (this.watcher === undefined) {
      const watcher = this.client.watch().key(`${this.prefix}/.watch-stream`).watcher()
      // An 'error' needs a listener; a watcher etcd cancelled is gone, and is not cancelled again.
      watcher.on('error', () => {
        if (this.watcher === watcher) this.watcher = undefined
      })
      this.watcher = watcher
    }
    clearTimeout(this.linger)
    this.linger = setTimeout(() => void this.stop(), LINGER_MS)
    this.linger.unref()
  }

  /** Cancels the watcher for good; resolves once etcd confirmed it (or the stream is gone). */
  close(): Promise<void> {
    this.closed = true
    return this.stop()
  }

  private stop(): Promise<void> {
    clearTimeout(this.linger)
    const watcher = this.watcher
    this.watcher = undefined
    return watcher?.cancel().catch(() => undefined) ?? Promise.resolve()
  }
}
