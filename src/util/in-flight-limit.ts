/**
 * At most `limit` calls in flight; later ones wait their turn, first come first served. A burst of
 * thousands of lock() calls would otherwise queue inside etcd past every call's 2 s deadline, and
 * the retries would keep it there: with the limit, a call's deadline starts when it is sent.
 */
export class InFlightLimit {
  private active = 0
  private readonly waiting: Array<() => void> = []

  constructor(private readonly limit: number) {}

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++
    else await new Promise<void>((resolve) => this.waiting.push(resolve)) // slot handed over
    try {
      return await call()
    } finally {
      const next = this.waiting.shift()
      if (next) next()
      else this.active--
    }
  }
}
