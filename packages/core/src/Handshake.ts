/**
 * Handshake: the Hello both sides send first (protocol version, peer id, agent, largest frame
 * accepted) and the check of the peer's. A different protocol version or a Hello naming another
 * peer than the transport authenticated ends the session with a typed error (and a fatal Error
 * frame to the peer); otherwise it settles the frame sizes both sides can accept, and whether
 * both speak range reconciliation and resumable transfers (`features`).
 */
import * as Effect from "effect/Effect"
import { AGENT, PROTOCOL_VERSION } from "./EngineConfig.ts"
import type { CanStoreShape } from "./CanStore.ts"
import type { EngineConfig } from "./EngineConfig.ts"
import * as Frame from "./Frame.ts"
import type * as Proto from "./proto/sync.ts"
import type { Limits } from "./ActorWiring.ts"
import { PeerMismatch, ProtocolVersionMismatch } from "./SyncErrors.ts"

/** Frame overhead around an AssetChunk's data (type, length, hash field, bytes field header). */
const CHUNK_OVERHEAD = 256
/** Generous upper bound of one encoded digest (hash, numbers, origin up to ~300 characters). */
const DIGEST_BOUND = 512

/** Hello.features: this side reconciles by ranges (frame 0x0F, docs/protocol.md "Range reconciliation"). */
export const RANGES_FEATURE = "ranges/1"

/** Hello.features: this side sends from the offsets Wants ask for, and asks them when it holds a partial (docs/protocol.md "Resumable transfers"). */
export const RESUME_FEATURE = "resume/1"

/**
 * What this side announces: range reconciliation when its store keeps range fingerprints;
 * resumable transfers when its store keeps partials (any store can send from an offset, but a
 * peer is only told so by stores that resume themselves, which keeps one switch per store).
 */
export const features = (store: CanStoreShape): Array<string> => [
  ...(store.ranges !== undefined ? [RANGES_FEATURE] : []),
  ...(store.partial !== undefined ? [RESUME_FEATURE] : [])
]

export const hello = (config: EngineConfig, version: number = PROTOCOL_VERSION, announced: Array<string> = []): Frame.Frame =>
  Frame.make("Hello", {
    protocolVersion: version,
    peerId: config.localPeerId,
    agent: AGENT,
    maxFrameBytes: config.maxFrameBytes,
    features: announced
  })

/** Both sides announce range reconciliation: the session reconciles by ranges, not by listing every digest. */
export const bothSpeakRanges = (announced: ReadonlyArray<string>, peerHello: Proto.Hello): boolean =>
  announced.includes(RANGES_FEATURE) && peerHello.features.includes(RANGES_FEATURE)

/** Both sides announce resumable transfers: Wants may carry offsets, AssetHeaders say where content starts. */
export const bothResume = (announced: ReadonlyArray<string>, peerHello: Proto.Hello): boolean =>
  announced.includes(RESUME_FEATURE) && peerHello.features.includes(RESUME_FEATURE)

/** Check the peer's Hello against the authenticated peer id; settle the sizes to use. */
export const check = (
  config: EngineConfig,
  expectedPeer: string,
  peerHello: Proto.Hello,
  announced: ReadonlyArray<string> = []
): Effect.Effect<Limits, ProtocolVersionMismatch | PeerMismatch> => {
  if (peerHello.protocolVersion !== PROTOCOL_VERSION) {
    return Effect.fail(
      new ProtocolVersionMismatch({ peer: expectedPeer, local: PROTOCOL_VERSION, remote: peerHello.protocolVersion })
    )
  }
  if (peerHello.peerId !== expectedPeer) {
    return Effect.fail(new PeerMismatch({ expected: expectedPeer, announced: peerHello.peerId }))
  }
  // A peer that announces no limit (0) gets the protocol default.
  const peerMax = peerHello.maxFrameBytes > 0 ? peerHello.maxFrameBytes : Frame.DEFAULT_MAX_FRAME_BYTES
  return Effect.succeed({
    chunkBytes: Math.max(1024, Math.min(config.chunkBytes, peerMax - CHUNK_OVERHEAD)),
    peerMaxFrameBytes: peerMax,
    digestChunkSize: Math.max(1, Math.min(config.digestChunkSize, Math.floor((peerMax - 64) / DIGEST_BOUND))),
    peerAgent: peerHello.agent,
    ranges: bothSpeakRanges(announced, peerHello),
    resume: bothResume(announced, peerHello)
  })
}
