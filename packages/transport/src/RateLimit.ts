/**
 * Bandwidth limits: token buckets of bytes per second, one per direction for the whole agent and
 * one per direction for each peer. A frame takes its bytes from the peer's bucket, then the
 * agent's, before it is written (sending) or before the engine sees it (receiving). A received
 * frame that waits stays in the link, so the link's credit window fills and stops the sender:
 * the receiver's limit reaches the sender through credit, with no message of its own.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { Frame } from "@can-sync/core"
import type { WebRtcLink } from "./ChannelLink.ts"

/** Bytes per second; an absent field is no limit. */
export interface RateLimits {
  /** Everything this agent sends, all peers together. */
  readonly send?: number | undefined
  /** Everything this agent receives, all peers together. */
  readonly receive?: number | undefined
  /** What it sends to each peer. */
  readonly sendPerPeer?: number | undefined
  /** What it receives from each peer. */
  readonly receivePerPeer?: number | undefined
}

/** How long a bucket may save up: a burst is at most this much of its rate. */
const BURST_SECONDS = 0.1

export interface TokenBucket {
  readonly bytesPerSecond: number
  /** Waits until `bytes` may pass. A frame larger than the burst passes into debt, which later takers wait out. */
  readonly take: (bytes: number) => Effect.Effect<void>
}

/**
 * A bucket of `bytesPerSecond`, full at first; takers are served in turn. It holds `capacity`
 * (default: a tenth of a second's worth, at least 64 KiB). Any unit works: signaling takes one
 * per relay (Signaling.ts).
 */
export const tokenBucket = (bytesPerSecond: number, capacity = Math.max(64 * 1024, bytesPerSecond * BURST_SECONDS)): TokenBucket => {
  const turn = Semaphore.makeUnsafe(1)
  let tokens = capacity
  let at: number | undefined
  const refill = (now: number) => {
    tokens = Math.min(capacity, tokens + (at === undefined ? 0 : ((now - at) / 1000) * bytesPerSecond))
    at = now
  }
  const wait: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    refill(now)
    return tokens >= 0 ? Effect.void : Effect.andThen(Effect.sleep(Math.ceil((-tokens / bytesPerSecond) * 1000)), wait)
  })
  return {
    bytesPerSecond,
    take: (bytes) => turn.withPermit(Effect.andThen(wait, Effect.sync(() => {
      tokens -= bytes
    })))
  }
}

/** The buckets one link's frames pass through, per direction (the peer's first, then the agent's). */
export interface LinkBuckets {
  readonly send: ReadonlyArray<TokenBucket>
  readonly receive: ReadonlyArray<TokenBucket>
}

const takeAll = (buckets: ReadonlyArray<TokenBucket>, bytes: number): Effect.Effect<void> =>
  buckets.length === 1 ? buckets[0]!.take(bytes) : Effect.forEach(buckets, (b) => b.take(bytes), { discard: true })

/**
 * The agent's limits: one bucket per limited direction, and for each peer its own (made once,
 * kept across that peer's links, so a reconnect does not refill it).
 */
export const make = (limits: RateLimits) => {
  const global = {
    send: limits.send === undefined ? [] : [tokenBucket(limits.send)],
    receive: limits.receive === undefined ? [] : [tokenBucket(limits.receive)]
  }
  const perPeer = new Map<string, LinkBuckets>()
  const bucketsOf = (peer: string): LinkBuckets => {
    let buckets = perPeer.get(peer)
    if (buckets === undefined) {
      buckets = {
        send: [...(limits.sendPerPeer === undefined ? [] : [tokenBucket(limits.sendPerPeer)]), ...global.send],
        receive: [...(limits.receivePerPeer === undefined ? [] : [tokenBucket(limits.receivePerPeer)]), ...global.receive]
      }
      perPeer.set(peer, buckets)
    }
    return buckets
  }
  /** `link`, its frames held to the limits of its peer and of the agent (itself when nothing is limited). */
  const limit = (link: WebRtcLink): WebRtcLink => {
    const { send, receive } = bucketsOf(link.remotePeer)
    if (send.length === 0 && receive.length === 0) return link
    return {
      ...link,
      send: send.length === 0
        ? link.send
        : (frame) => Effect.andThen(takeAll(send, Frame.byteLength(frame)), link.send(frame)),
      frames: receive.length === 0 ? link.frames : link.frames.pipe(Stream.mapEffect((frame) => Effect.as(takeAll(receive, frame.length), frame)))
    }
  }
  return { limit }
}

/** "10MB/s", "512KiB/s", "2.5 MB", "1000000": bytes per second; undefined if it is none of these. */
export const parseRate = (text: string): number | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*(?:\/\s*s)?\s*$/i.exec(text)
  if (match === null) return undefined
  const units: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }
  const bytes = Number(match[1]) * units[(match[2] ?? "B").toLowerCase()]!
  return Number.isFinite(bytes) && bytes >= 1 ? Math.round(bytes) : undefined
}
