/**
 * EngineConfig: every knob of the sync engine in one place, with the protocol's own constants
 * (version, flow-control windows) beside them. PeerActor, PeerManager and the tests read only
 * this; the CLI builds one from its flags and config file.
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Backoff from "./Backoff.ts"
import type { PeerId } from "./Domain.ts"
import { DEFAULT_MAX_FRAME_BYTES } from "./Frame.ts"

/** The wire protocol spoken by this engine; a peer announcing another version is refused. */
export const PROTOCOL_VERSION = 1

/** Software name and version sent in Hello, for the peer's logs. */
export const AGENT = "can-sync-engine/0.1.0"

/**
 * Protocol limit: hashes a side may have requested (Want) and not yet seen answered (by the
 * asset or by an Error naming the hash). The sender's queue of wanted assets is sized from it,
 * so it never grows with the store.
 */
export const MAX_OUTSTANDING_WANTS = 4096

/**
 * Protocol limit: Offer frames a side may have sent and not yet seen answered (each Offer is
 * answered by one Want with `last = true`). The receiving side's inbox is sized from it.
 */
export const MAX_UNANSWERED_OFFERS = 16

/** Protocol limit: digests in one DigestChunk, Offer or Want frame. */
export const MAX_DIGESTS_PER_FRAME = 1000

/** Default largest asset accepted from a peer (announced size and bytes streamed): 64 GiB. */
export const DEFAULT_MAX_ASSET_BYTES = 64 * 1024 ** 3

export interface EngineConfig {
  /** This agent's peer id, announced in Hello (the transport authenticates it). */
  readonly localPeerId: PeerId
  /** Fallback incremental query of the local store, in case its event stream missed a change. */
  readonly pollInterval: Duration.Duration
  /**
   * Content bytes per AssetChunk frame (lowered if the peer accepts only smaller frames). A 128 KiB
   * frame fits one 256 KiB WebRTC message and divides the store's 1 MiB reads evenly: against
   * 64 KiB, both agents spent less CPU per MiB on loopback (bench/sync.ts), the per-frame work
   * being half as often.
   */
  readonly chunkBytes: number
  /** Digests per DigestChunk / Offer / Want frame (at most MAX_DIGESTS_PER_FRAME). */
  readonly digestChunkSize: number
  /** Largest frame this side accepts; announced in Hello. */
  readonly maxFrameBytes: number
  /** Frames waiting for the link in each session's outbox. */
  readonly outboxCapacity: number
  /** Asset frames waiting for the receiver (which writes to the store). */
  readonly inboundCapacity: number
  /** Hashes this side keeps requested and unanswered (at most MAX_OUTSTANDING_WANTS). */
  readonly wantWindow: number
  /** Offers this side keeps unanswered (at most MAX_UNANSWERED_OFFERS). */
  readonly offerWindow: number
  /** Hashes remembered per peer as "the peer has this": never pushed to it again. */
  readonly echoCapacity: number
  /**
   * The largest asset accepted from a peer: larger ones (by the size its digest or Offer
   * announces) are never asked for, and a header announcing more is a protocol violation.
   */
  readonly maxAssetBytes: number
  /** The largest digest set accepted from a peer during reconcile. */
  readonly maxRemoteDigests: number
  /** Delay before a failed outbound session is started again (reset once a session is live). */
  readonly restartBackoff: Schedule.Schedule<Duration.Duration, unknown>
}


export const defaults: Omit<EngineConfig, "localPeerId"> = {
  pollInterval: Duration.seconds(30),
  chunkBytes: 128 * 1024,
  digestChunkSize: MAX_DIGESTS_PER_FRAME,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  outboxCapacity: 32,
  inboundCapacity: 32,
  wantWindow: MAX_OUTSTANDING_WANTS,
  offerWindow: MAX_UNANSWERED_OFFERS,
  echoCapacity: 100_000,
  maxAssetBytes: DEFAULT_MAX_ASSET_BYTES,
  maxRemoteDigests: 10_000_000,
  restartBackoff: Backoff.exponential()
}

export interface EngineConfigInput extends Partial<Omit<EngineConfig, "localPeerId" | "pollInterval">> {
  readonly localPeerId: PeerId
  readonly pollInterval?: Duration.Input | undefined
}

/** A full config from the given fields and the defaults; windows are clamped to the protocol limits. */
export const make = (input: EngineConfigInput): EngineConfig => {
  const merged = { ...defaults, ...withoutUndefined(input) }
  return {
    ...merged,
    localPeerId: input.localPeerId,
    pollInterval: input.pollInterval === undefined ? defaults.pollInterval : Duration.fromInputUnsafe(input.pollInterval),
    digestChunkSize: clamp(merged.digestChunkSize, 1, MAX_DIGESTS_PER_FRAME),
    wantWindow: clamp(merged.wantWindow, 1, MAX_OUTSTANDING_WANTS),
    offerWindow: clamp(merged.offerWindow, 1, MAX_UNANSWERED_OFFERS),
    chunkBytes: Math.max(1024, merged.chunkBytes),
    outboxCapacity: Math.max(1, merged.outboxCapacity),
    inboundCapacity: Math.max(1, merged.inboundCapacity),
    maxAssetBytes: Math.max(0, Math.floor(merged.maxAssetBytes))
  }
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, Math.floor(n)))

const withoutUndefined = <A extends object>(a: A): Partial<A> =>
  Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as Partial<A>
