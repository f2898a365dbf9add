import {
  ClientClosedError,
  type IDuplexStream,
  type IWatchRequest,
  type IWatchResponse,
  type WatchClient,
} from 'etcd3'
import { log } from '../util/log.js'

/** Reconnect back-off of a broken watch stream (ms): first wait, longest wait. */
export const STREAM_BACKOFF_MS = { initial: 50, max: 1_000 } as const

/** What a {@link WatchStream} tells its hub. Called from gRPC's handlers: must not throw. */
export interface StreamHandler {
  /** Whether a stream is wanted now (some watch is open). */
  wanted(): boolean
  /** A new stream is open: send every create. */
  opened(): void
  response(res: IWatchResponse): void
  /** The stream broke or could not open; another attempt follows, backing off, if wanted. */
  broken(error: unknown): void
  /** The client was closed: no stream can open again. */
  closedForGood(error: unknown): void
}

type Duplex = IDuplexStream<IWatchRequest, IWatchResponse>

/**
 * One bidirectional Watch stream at a time on the client's connection pool, opened when wanted
 * and opened again after it breaks, backing off from {@link STREAM_BACKOFF_MS}.initial to .max
 * (reset by the first answer on a new stream).
 */
export class WatchStream {
  private stream: Duplex | undefined
  private opening = false
  private retry: NodeJS.Timeout | undefined
  private backoff: number = STREAM_BACKOFF_MS.initial
  private closed = false

  constructor(
    private readonly client: WatchClient,
    private readonly handler: StreamHandler,
  ) {}

  /** Whether a stream is open now: what is written goes out. */
  get isOpen(): boolean {
    return this.stream !== undefined
  }

  /** Opens a stream unless one is open, opening, or waiting to reopen. */
  ensure(): void {
    if (this.closed || this.stream || this.opening || this.retry) return
    this.open()
  }

  /** Writes `request` on the open stream; `false` when none is open (it goes out on the next). */
  write(request: IWatchRequest): boolean {
    if (this.stream === undefined) return false
    this.stream.write(request)
    return true
  }

  /** Closes the open stream (nothing is watched any more); a later {@link ensure} opens one. */
  close(): void {
    clearTimeout(this.retry)
    this.retry = undefined
    const stream = this.stream
    this.stream = undefined
    stream?.cancel()
  }

  private open(): void {
    this.opening = true
    this.client.watch().then(
      (stream) => {
        this.opening = false
        if (!this.handler.wanted()) {
          stream.on('error', () => {}).cancel()
          return
        }
        this.stream = stream
        stream.on('data', (res: IWatchResponse) => {
          if (this.stream !== stream) return
          this.backoff = STREAM_BACKOFF_MS.initial
          this.handler.response(res)
        })
        stream.on('error', (error: unknown) => this.lost(stream, error))
        stream.on('end', () => this.lost(stream, new Error('etcd ended the watch stream')))
        this.handler.opened()
      },
      (error: unknown) => {
        this.opening = false
        if (error instanceof ClientClosedError) {
          this.closed = true
          this.handler.closedForGood(error)
          return
        }
        this.handler.broken(error)
        this.reopenLater()
      },
    )
  }

  private lost(stream: Duplex, error: unknown): void {
    if (this.stream !== stream) return
    this.stream = undefined
    stream.cancel()
    log.watch('watch stream broken (%s)', error)
    this.handler.broken(error)
    this.reopenLater()
  }

  private reopenLater(): void {
    if (!this.handler.wanted()) return
    const wait = this.backoff
    this.backoff = Math.min(STREAM_BACKOFF_MS.max, this.backoff * 2)
    this.retry = setTimeout(() => {
      this.retry = undefined
      if (this.handler.wanted()) this.open()
    }, wait)
    this.retry.unref()
  }
}
