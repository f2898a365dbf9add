import type { IEvent } from 'etcd3'

/**
 * What a watch covers and from when. Keys are whole etcd keys (a client's namespace included).
 * Read when the watch is created (again after a broken stream): an owner may give itself, with
 * getters, rather than an object and buffers kept for as long as it watches.
 */
export interface WatchRange {
  /** The key, or the first key of the range: bytes, or text (sent as UTF-8). */
  readonly key: Buffer | string
  /** End of the range (exclusive), or `'prefix'`: every key that starts with `key`; none: `key` alone. */
  readonly rangeEnd?: Buffer | 'prefix'
  /** Only this kind of event (filtered by etcd); none: both. */
  readonly only?: 'put' | 'delete'
  /**
   * The first revision to deliver, or `'now'`: from the revision after etcd's when it creates
   * the watch. A watch from a revision etcd has passed is caught up by etcd in passes (every
   * 100 ms), so start from `'now'` or from just after a read wherever possible.
   */
  readonly from: bigint | 'now'
  /**
   * Whether its owner acts on "no event came" and so needs to know when the watch is
   * {@link Watch.live}: only then does the hub ask etcd to confirm it (progress requests). An
   * owner may also ask later (the hub's `requestConfirmation`).
   */
  readonly confirm?: boolean
}

/**
 * Who hears what one watch sees (each call names the watch, so one listener object with methods
 * can serve). Called from the stream's handler: must not throw (caught).
 */
export interface WatchListener {
  /** The events of one etcd response, in revision order. */
  events(events: IEvent[], watch: Watch): void
  /**
   * The watch ended without our cancel: its create was refused (permission denied, a bad
   * range), its start revision was compacted, or it could not be resumed. Nothing more comes;
   * the owner reads again.
   */
  interrupted(reason: string, watch: Watch): void
  /** etcd created (or re-created, after a broken stream) the watch, at its `revision`. */
  created?(revision: bigint, watch: Watch): void
  /** etcd confirmed that every event of the watch up to its revision then was delivered. */
  live?(watch: Watch): void
}

/** Where a watch is in its life on the current stream. */
export const Phase = {
  /** Not sent on the current stream (none open yet, or it broke). */
  Unsent: 0,
  /** Create sent, not answered yet. */
  Creating: 1,
  /** Created by etcd. */
  Created: 2,
  /** Cancel sent (by us); waiting for etcd's answer. */
  Cancelling: 3,
  /** Over: cancelled, interrupted, or refused. */
  Done: 4,
} as const
export type Phase = (typeof Phase)[keyof typeof Phase]

/**
 * One watch's state in the hub: its id on the stream (chosen by us), its range, the revision to
 * resume from, and whether etcd confirmed it caught up. A few fields: well under 1 KB.
 */
export class Watch {
  phase: Phase = Phase.Unsent
  /** etcd's revision when it created the watch on the current stream. */
  createdAt: bigint | undefined
  /** Progress requests sent on the current stream before this watch's create. */
  progressMark = 0
  /** etcd confirmed every event up to its revision then was delivered (and none was missed). */
  isLive = false
  /** Resolves the promise of {@link cancel} once etcd confirmed it (or the stream went). */
  cancelled: (() => void) | undefined
  /** The next revision to deliver: from where it resumes after a broken stream. */
  next: bigint | 'now'
  /** Its requests (create, cancel) on the current stream that etcd has not answered yet. */
  awaiting = 0
  /** Its cancel went out on the current stream (it may wait for room in the hub's window). */
  cancelSent = false
  /** Its create waits in the hub's outbox for room in the window. */
  createQueued = false
  /**
   * Its create on the current stream asked for a revision after the one etcd answered with
   * (`now`, or ahead): then, with nothing written in between, etcd registered it synced.
   */
  createdAhead = false
  /** Its owner needs to know when it is live: the hub asks etcd to confirm it. */
  wantsConfirmation: boolean

  constructor(
    readonly id: number,
    readonly range: WatchRange,
    readonly listener: WatchListener,
    private readonly hub: { cancel(watch: Watch, afterTurn: boolean): Promise<void> },
  ) {
    this.next = range.from
    this.wantsConfirmation = range.confirm === true
  }

  /** Whether etcd confirmed the watch caught up and nothing interrupted it since. */
  get live(): boolean {
    return this.isLive && this.phase === Phase.Created
  }

  /** Whether the watch is over (cancelled, interrupted or refused). */
  get ended(): boolean {
    return this.phase === Phase.Done || this.phase === Phase.Cancelling
  }

  /**
   * Stops the watch: nothing is told after this. Resolves once etcd confirmed the cancel (or
   * the stream is gone): an event after that reaches nobody. Idempotent.
   *
   * `afterTurn`: the cancel goes out at the end of this turn of the event loop, after what the
   * owner does next (a waiter that now holds resolves its `lock()` first). Only for an owner
   * whose next step writes nothing the watch covers: etcd would still send that write to it.
   */
  cancel(afterTurn = false): Promise<void> {
    return this.hub.cancel(this, afterTurn)
  }
}
