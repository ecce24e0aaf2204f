/**
 * One peer link carried over several WebRTC connections ("lanes"), each its own SCTP association
 * with its own congestion window, so a long or lossy path is not limited to what one association
 * carries. The sender stripes engine frames over the lanes with a per-link sequence number,
 * giving each lane at most about a megabyte more than its peer has taken, to the least loaded;
 * the receiver takes from every lane at once and merges the frames back in order, holding up to
 * 32 MiB that came ahead of a gap. The engine sees one ordered PeerLink.
 * Also here: the SDP marks that negotiate striping, and how many lanes a path gets.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { Frame, LinkClosed, LinkCloseReason } from "@can-sync/core"
import type { EncodedFrame } from "@can-sync/core"
import type { SdpRole } from "./Binding.ts"
import type { LanePort, LinkStats, WebRtcLink } from "./ChannelLink.ts"

/**
 * The most lanes one link may have. Under loss each lane carries about MSS / (RTT · √p), so the
 * aggregate grows with the count (bench/wan.ts, 2026-12-03: at 100 ms and 1 % loss 32 lanes moved
 * 2.4-2.7 MB/s where 16 moved 1.1-2.1; at 50 ms and 1 % loss 18 moved 4.7 where 9 moved 2.5).
 */
export const MAX_LANES = 32

// ---- negotiation: marks in the signed SDPs -----------------------------------------------------

const capable = (role: SdpRole) => new RegExp(`^a=x-can-sync-lanes-${role === "offerer" ? "offer" : "answer"}:(\\d+)\\s*$`, "m")
const LANE_OF = /^a=x-can-sync-lane-of:([0-9a-z]{1,32}\.[0-9]{1,16})\s*$/m

/**
 * The SDP to sign and send, written as `role`: `lanes` (> 1) says we can stripe over up to that
 * many lanes; `laneOf` says this offer opens one more lane of the link whose attempt id it names.
 * Peers that do not know the marks ignore them (an unknown `a=` line) and are never striped to.
 * The mark names the role because libdatachannel copies an offer's unknown attributes into its
 * answer: an answer repeating the offer's mark says nothing about the answerer.
 */
export const markSdp = (
  sdp: string,
  role: SdpRole,
  marks: { readonly lanes?: number | undefined; readonly laneOf?: string | undefined }
): string => {
  const lines: Array<string> = []
  if (marks.lanes !== undefined && marks.lanes > 1) lines.push(`a=x-can-sync-lanes-${role === "offerer" ? "offer" : "answer"}:${marks.lanes}`)
  if (marks.laneOf !== undefined && role === "offerer") lines.push(`a=x-can-sync-lane-of:${marks.laneOf}`)
  return lines.length === 0 ? sdp : `${sdp.trimEnd()}\r\n${lines.join("\r\n")}\r\n`
}

/** How many lanes the peer that wrote `sdp` as `role` can stripe over (1: it cannot). */
export const lanesOf = (sdp: string, role: SdpRole): number => {
  const match = capable(role).exec(sdp)
  return match === null ? 1 : Math.max(1, Math.min(MAX_LANES, Number(match[1])))
}

/** The attempt id of the link this offer adds a lane to, if it is a lane offer. */
export const laneOf = (sdp: string): string | undefined => LANE_OF.exec(sdp)?.[1]

/**
 * Lanes for a path of this round trip: one on a LAN or loopback (a single association is not
 * window-limited there, and every lane costs a connection), then one per millisecond of round
 * trip, at most `max` (so 20 at 20 ms, 32 from 32 ms): one association carries about window / RTT,
 * and under loss about MSS / (RTT · √p), so a long path wants many (bench/wan.ts, 2026-12-04: at
 * 20 ms and 0.1 % loss 22 lanes moved 23-25 MB/s where 8 moved 15; at 50 ms, 32 moved 16.4 where
 * 17 moved 12.5).
 */
export const lanesFor = (rttMillis: number, max: number): number =>
  rttMillis < 5 ? 1 : Math.max(1, Math.min(max, MAX_LANES, Math.ceil(rttMillis)))

// ---- the striped link ----------------------------------------------------------------------------

/**
 * The receive window of every lane after the first: the least that still takes the largest frame
 * twice (ChannelLink.checkOptions), so 32 lanes hold at most 16 + 31 × 8 MiB at the receiver, plus
 * what the merge holds (HOLD_BUDGET_BYTES), only when its store stops taking frames
 * (`CAN_SYNC_LANES` lowers the bound). A lane on a long path carries a few MB/s, far below what
 * this window allows.
 */
export const laneLinkOptions = <O extends { readonly maxFrameBytes: number; readonly receiveWindowBytes: number }>(primary: O): O => ({
  ...primary,
  receiveWindowBytes: Math.min(primary.receiveWindowBytes, 2 * primary.maxFrameBytes)
})

/**
 * Frames that came ahead of a gap are held up to this many bytes; past it each lane's reader waits,
 * after its next frame, until that one goes out. So a receiver holds at most the lanes' windows,
 * this, and one frame per lane.
 */
const HOLD_BUDGET_BYTES = 32 * 1024 * 1024

/**
 * The most a lane is given beyond what its peer has taken (bench/wan.ts, 2026-12-04, 64 MiB at
 * 100 ms: 1 MiB moved 4.2 MB/s at 1 % loss where the lanes' whole credit, 8 MiB, moved 2.4-2.6,
 * since everything went to the lanes open at the start and waited behind the slowest; 2 MiB moved
 * 3.8, 512 KiB 4.1, and without loss 1 MiB loses least).
 */
const LANE_LOAD_BYTES = 1024 * 1024

/** Bytes of the per-link sequence number in front of every striped frame. */
export const SEQ_BYTES = 8

export type Lane = WebRtcLink & { readonly lane: LanePort }

export interface StripedLink extends WebRtcLink {
  /** Carry frames over one more authenticated lane too; false (and the lane closed) if this link has closed. */
  readonly addLane: (lane: Lane) => Effect.Effect<boolean>
  /** Lanes carrying the link now. */
  readonly laneCount: () => number
}

const isOrderly = (reason: LinkCloseReason) => reason._tag === "ClosedLocally" || reason._tag === "ClosedByPeer"

const writeSeq = (target: Uint8Array, seq: number) => {
  const view = new DataView(target.buffer, target.byteOffset, SEQ_BYTES)
  view.setUint32(0, Math.floor(seq / 2 ** 32), false)
  view.setUint32(4, seq >>> 0, false)
}

const readSeq = (frame: Uint8Array): number => {
  const view = new DataView(frame.buffer, frame.byteOffset, SEQ_BYTES)
  return view.getUint32(0, false) * 2 ** 32 + view.getUint32(4, false)
}

const sumStats = (all: ReadonlyArray<LinkStats>): LinkStats => {
  const first = all[0]!
  const sum = (f: (s: LinkStats) => number) => all.reduce((n, s) => n + f(s), 0)
  return {
    ...first,
    framesSent: sum((s) => s.framesSent),
    bytesSent: sum((s) => s.bytesSent),
    framesReceived: sum((s) => s.framesReceived),
    bytesReceived: sum((s) => s.bytesReceived),
    bufferedBytes: sum((s) => s.bufferedBytes),
    peakBufferedBytes: Math.max(...all.map((s) => s.peakBufferedBytes)),
    sendCredit: sum((s) => s.sendCredit),
    creditWaitMillis: first.creditWaitMillis,
    bufferWaitMillis: first.bufferWaitMillis,
    creditGrants: sum((s) => s.creditGrants),
    creditGrantedBytes: sum((s) => s.creditGrantedBytes)
  }
}

/**
 * A striped link over `primary` (already authenticated; both peers marked their SDPs). More lanes
 * come with `addLane`. Its readers run in, and its lanes close with, the current scope. The first
 * lane to close closes the link: an orderly close (either side) closes the others gracefully, a
 * failure fails them. Frames sent on a lane that failed are not sent again on another: the
 * session ends, as it would on a single connection, and the next one reconciles.
 */
export const make = Effect.fnUntraced(function*(primary: Lane, onLaneCount?: (count: number) => Effect.Effect<void>) {
  const scope = yield* Effect.scope
  const context = yield* Effect.context<never>()
  const out = yield* Queue.bounded<Uint8Array, LinkClosed | Cause.Done>(4)
  const lanes: Array<Lane> = []
  const closedSignal = Deferred.makeUnsafe<LinkClosed>()
  let closedWith: LinkClosed | undefined
  let readers = 0

  const closedError = () => closedWith ?? new LinkClosed({ peer: primary.remotePeer, reason: LinkCloseReason.cases.ClosedLocally.make({}) })

  // ---- sending: the lane with room and the least buffered; wait while none has room

  const sendLock = Semaphore.makeUnsafe(1)
  let nextSendSeq = 0
  let waiter: (() => void) | undefined
  const wake = () => waiter?.()

  /**
   * The lane with room that has the least on its way (buffered, or sent and not yet taken by the
   * peer), among those with less than LANE_LOAD_BYTES on it: frames are not committed to a lane far
   * ahead of what it moves, so a lane slowed by loss or still in slow start holds up the in-order
   * merge for little, and lanes that open later still get work. An idle lane always takes a frame.
   * (The peer gives credit back per frame once there are two lanes, so the count is current.)
   */
  const pick = (bytes: number): Lane | undefined => {
    let best: Lane | undefined
    let least = Infinity
    const capped = lanes.length > 1 // one lane has no other to go to: its credit alone bounds it
    for (const lane of lanes) {
      const load = lane.lane.room(bytes)
      if (load === undefined || (capped && load > 0 && load + bytes > LANE_LOAD_BYTES)) continue
      if (load < least) {
        best = lane
        least = load
      }
    }
    return best
  }

  const laneWithRoom = (bytes: number): Effect.Effect<Lane, LinkClosed> => {
    // the common case, decided at once: a lane has room now
    const now = closedWith === undefined ? pick(bytes) : undefined
    return now !== undefined ? Effect.succeed(now) : waitForLane(bytes)
  }

  const waitForLane = (bytes: number) =>
    Effect.callback<Lane, LinkClosed>((resume) => {
      const attempt = () => {
        if (closedWith !== undefined) {
          waiter = undefined
          return resume(Effect.fail(closedWith))
        }
        const lane = pick(bytes)
        if (lane !== undefined) {
          waiter = undefined
          resume(Effect.succeed(lane))
        }
      }
      waiter = attempt
      attempt()
      return Effect.sync(() => {
        waiter = undefined
      })
    })

  const send = (frame: EncodedFrame): Effect.Effect<void, LinkClosed> =>
    sendLock.withPermit(Effect.suspend(() => {
      const seq = new Uint8Array(SEQ_BYTES)
      return Effect.flatMap(laneWithRoom(SEQ_BYTES + Frame.byteLength(frame)), (lane) => {
        writeSeq(seq, nextSendSeq++)
        // the sequence number goes in front as one more part, not copied together with the frame
        return lane.send(frame instanceof Uint8Array ? [seq, frame] : [seq, ...frame]).pipe(Effect.mapError(() => closedError()))
      })
    }))

  // ---- receiving: one reader per lane; a frame waits (one per lane) until every earlier one went out
  // (an in-order frame with room downstream goes straight through)

  let nextSeq = 0
  const held = new Map<number, { readonly frame: Uint8Array; readonly delivered: Deferred.Deferred<void> }>()
  let heldBytes = 0
  const deliverLock = Semaphore.makeUnsafe(1)

  const deliver = deliverLock.withPermit(Effect.gen(function*() {
    for (;;) {
      const entry = held.get(nextSeq)
      if (entry === undefined) return
      held.delete(nextSeq)
      heldBytes -= entry.frame.length
      nextSeq++
      yield* Queue.offer(out, entry.frame)
      Deferred.doneUnsafe(entry.delivered, Effect.void)
    }
  }))

  const violation = (detail: string) => {
    const error = new LinkClosed({ peer: primary.remotePeer, reason: LinkCloseReason.cases.LinkProtocolViolation.make({ detail }) })
    closeAll(error)
    return Effect.fail(error)
  }

  const reader = (lane: Lane) =>
    Effect.gen(function*() {
      let last = -1
      for (;;) {
        const frame = yield* lane.lane.take
        if (frame.length < SEQ_BYTES) return yield* violation(`a striped frame of ${frame.length} bytes has no sequence number`)
        const seq = readSeq(frame)
        if (seq <= last || seq < nextSeq || held.has(seq)) return yield* violation(`striped frame ${seq} out of order (next ${nextSeq})`)
        last = seq
        // in order with nothing held and room downstream (always so on one lane): straight through.
        // A delivery waiting on a full queue leaves no room, so this never passes it.
        if (seq === nextSeq && held.size === 0 && Queue.offerUnsafe(out, frame.subarray(SEQ_BYTES))) {
          nextSeq++
          continue
        }
        const delivered = Deferred.makeUnsafe<void>()
        held.set(seq, { frame: frame.subarray(SEQ_BYTES), delivered })
        heldBytes += frame.length - SEQ_BYTES
        yield* deliver
        // keep taking (the peer gets its credit back, so its lane choice sees only what is on the
        // way) until the held frames pass the budget; then wait for our own to go out. The lane
        // that carries the next frame in order never waits: all it took before went out already.
        if (heldBytes > HOLD_BUDGET_BYTES) yield* Deferred.await(delivered)
      }
    }).pipe(
      Effect.catchCause((cause) =>
        Effect.sync(() => {
          readers--
          const failure = cause.reasons.find(Cause.isFailReason)?.error
          if (failure !== undefined && failure instanceof LinkClosed) {
            Queue.failCauseUnsafe(out, Cause.fail(failure))
            return
          }
          endIfDone()
        })
      )
    )

  /** Every lane ended in order (after the link closed): the frames end too, or fail if some never came. */
  const endIfDone = () => {
    if (readers > 0 || closedWith === undefined) return
    if (held.size === 0) Queue.endUnsafe(out)
    else Queue.failCauseUnsafe(out, Cause.fail(new LinkClosed({ peer: primary.remotePeer, reason: LinkCloseReason.cases.ConnectionLost.make({ detail: `${held.size} striped frames came after a gap that never filled` }) })))
  }

  // ---- closing: the first lane to close closes the link

  const closeAll = (closed: LinkClosed) => {
    if (closedWith !== undefined) return
    closedWith = closed
    Deferred.doneUnsafe(closedSignal, Effect.succeed(closed))
    wake()
    for (const lane of lanes) {
      Effect.runForkWith(context)(isOrderly(closed.reason) ? lane.close : lane.closeBecause(closed.reason))
    }
    endIfDone()
  }

  const addLane = (lane: Lane): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      if (closedWith !== undefined) return Effect.as(Effect.forkIn(lane.closeBecause(closedWith.reason), scope), false)
      lanes.push(lane)
      readers++
      lane.lane.onProgress(wake)
      // with two lanes or more the peer picks lanes by the bytes we have not given back: keep them current
      if (lanes.length > 1) for (const each of lanes) each.lane.grantEachFrame()
      return Effect.gen(function*() {
        yield* Effect.forkIn(reader(lane), scope)
        yield* Effect.forkIn(Effect.flatMap(lane.closeReason, (closed) => Effect.sync(() => closeAll(closed))), scope)
        wake()
        if (onLaneCount !== undefined) yield* onLaneCount(lanes.length)
        return true
      })
    })

  yield* addLane(primary)
  yield* Scope.addFinalizer(scope, Effect.suspend(() => link.close))

  const close: Effect.Effect<void> = Effect.suspend(() => {
    closeAll(new LinkClosed({ peer: primary.remotePeer, reason: LinkCloseReason.cases.ClosedLocally.make({}) }))
    return Effect.forEach(lanes, (lane) => lane.close, { concurrency: "unbounded", discard: true })
  })

  const link: StripedLink = {
    remotePeer: primary.remotePeer,
    sdpRole: primary.sdpRole,
    role: primary.role,
    send,
    frames: Stream.fromEffectRepeat(Queue.take(out)),
    closed: Effect.asVoid(Deferred.await(closedSignal)),
    close,
    closeReason: Deferred.await(closedSignal),
    closeBecause: (reason) =>
      Effect.sync(() => closeAll(new LinkClosed({ peer: primary.remotePeer, reason }))),
    stats: Effect.suspend(() => Effect.map(Effect.forEach([...lanes], (lane) => lane.stats), sumStats)),
    addLane,
    laneCount: () => lanes.length
  }
  return link
})
