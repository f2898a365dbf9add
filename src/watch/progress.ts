import { Fifo } from '../util/fifo.js'
import { Phase, type Watch } from './watch.js'

/** How often a progress request is re-sent while some watch awaits confirmation (ms). */
export const PROGRESS_INTERVAL_MS = 100

/**
 * Whether etcd `version` answers a progress request only once every watch of the stream is
 * synced, after the events before it: 3.4.25 and 3.5.8 on (etcd PR 15237). Older ones answer at
 * once with their current revision, ahead of the events a watch that is catching up has not
 * sent yet: their answers confirm nothing.
 */
export function progressAnswersAreOrdered(version: string): boolean {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map((n) => Number.parseInt(n, 10))
  if (major !== 3) return major > 3
  if (minor === 4) return patch >= 25
  if (minor === 5) return patch >= 8
  return minor > 5
}

/**
 * Confirms watches of one stream caught up. A watch whose owner needs to know waits here (any
 * watch etcd created may be behind: see the hub); while one does, a `progress_request` goes
 * out every {@link PROGRESS_INTERVAL_MS}. etcd answers one (watch id -1, no events) only when
 * every watch of the stream is synced, and at most once per request, in order (several requests
 * may get one answer): so the n-th answer was made at or after the n-th request reached etcd,
 * and covers every watch created before that request was sent: every event of such a watch up
 * to the answer's revision was delivered before it, and the watch is live.
 *
 * Watches wait in the order their owners asked (mostly create order): an answer confirms from
 * the oldest on and stops at the first whose create came after the request it answers (one
 * that asked late may wait behind it for a later answer); nothing here scans the rest.
 */
export class Progress {
  private sent = 0
  private answers = 0
  private readonly waiting = new Fifo<Watch>()
  private timer: NodeJS.Timeout | undefined
  /**
   * Whether this stream's etcd answers progress requests in order (see above): `undefined`
   * until its version is known. Watches wait meanwhile; none is confirmed, no request is sent.
   */
  private trusted: boolean | undefined = undefined

  constructor(
    /** Writes a progress request; `false` when no stream is open. */
    private readonly send: () => boolean,
    /** A watch was confirmed at `revision`. */
    private readonly confirmed: (watch: Watch, revision: bigint) => void,
    /** Counts progress requests sent. */
    private readonly requested: () => void,
  ) {}

  /** Progress requests sent on this stream so far: a new watch's {@link Watch.progressMark}. */
  get mark(): number {
    return this.sent
  }

  /** A new stream: nothing sent or answered on it yet, and nobody waits. */
  reset(): void {
    this.sent = 0
    this.answers = 0
    this.waiting.clear()
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /**
   * `watch` was created and its owner needs it live: it is once an answer confirms it. Unless
   * this etcd's answers are known to be ordered, nothing waits: it stays not live.
   */
  await(watch: Watch): void {
    if (this.trusted === false) return
    // Until the version is known nothing drains the list: drop ended ones as new ones come.
    if (this.trusted === undefined) this.someoneWaits()
    this.waiting.push(watch)
    this.schedule(0)
  }

  /** etcd answered a progress request at `revision`. */
  answered(revision: bigint): void {
    this.answers += 1
    if (!this.trusted) return
    for (let watch = this.waiting.peek(); watch !== undefined; watch = this.waiting.peek()) {
      if (watch.phase === Phase.Created && !watch.isLive) {
        // Only by count: on 3.5 an answer travels apart from the `created` answers, and one at a
        // revision past a watch's create may still have been made before etcd synced it.
        if (watch.progressMark >= this.answers) break
        this.confirmed(watch, revision)
      } else if (watch.phase === Phase.Creating) {
        break
      }
      this.waiting.shift()
    }
  }

  /** Whether some watch still waits for confirmation (dropping those that need none now). */
  private someoneWaits(): boolean {
    for (let watch = this.waiting.peek(); watch !== undefined; watch = this.waiting.peek()) {
      if (watch.phase <= Phase.Created && !watch.isLive) return true
      this.waiting.shift()
    }
    return false
  }

  private schedule(wait: number): void {
    if (!this.trusted || this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      if (!this.someoneWaits()) return
      if (this.send()) {
        this.sent += 1
        this.requested()
      }
      this.schedule(PROGRESS_INTERVAL_MS)
    }, wait)
    this.timer.unref()
  }

  /**
   * Whether the stream's etcd answers progress requests in order (its version, asked when the
   * stream opened; `undefined`: not known yet). Watches that asked before it is known wait:
   * once it is known to be ordered they are confirmed like any other (a resume re-creates every
   * watch before the version's answer comes); otherwise none ever is, and none is kept.
   */
  setTrusted(trusted: boolean | undefined): void {
    this.trusted = trusted
    if (trusted === false) {
      this.waiting.clear()
    } else if (trusted === true) {
      this.schedule(0)
    }
  }
}
