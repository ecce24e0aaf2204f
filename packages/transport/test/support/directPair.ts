/**
 * Two real peer connections in this process, wired to each other directly (descriptions and
 * candidates passed by hand, no signaling server), ICE bound to 127.0.0.1. For link-level tests
 * that need to play a misbehaving peer with a bare data channel.
 */
import { Deferred, Effect } from "effect"
import type { Scope } from "effect"
import * as Native from "../../src/Native.ts"
import type { DataChannel, PeerConnection } from "../../src/Native.ts"
import type { ChannelBinding } from "../../src/WebRtcLink.ts"
import type { PeerIdentity } from "../../src/Identity.ts"

export interface DirectPair {
  readonly offerer: PeerConnection
  readonly answerer: PeerConnection
  /** Both fingerprints, once both descriptions exist (before any channel opens). */
  readonly binding: () => ChannelBinding | undefined
  /** The channel the answerer receives. */
  readonly answererChannel: Effect.Effect<DataChannel>
}

export const directPair = (offererId: PeerIdentity, answererId: PeerIdentity, onAnswererChannel?: (dc: DataChannel) => void): Effect.Effect<DirectPair, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Native.useLibrary
    const rtc = { bindAddress: "127.0.0.1" }
    const offerer = yield* Native.peerConnection("offerer", rtc)
    const answerer = yield* Native.peerConnection("answerer", rtc)
    const channel = yield* Deferred.make<DataChannel>()
    let offer: string | undefined
    let answer: string | undefined
    const early: Array<[string, string]> = []
    offerer.onLocalDescription((sdp, type) => {
      offer = sdp
      answerer.setRemoteDescription(sdp, type)
    })
    answerer.onLocalDescription((sdp, type) => {
      answer = sdp
      offerer.setRemoteDescription(sdp, type)
      for (const [c, mid] of early.splice(0)) offerer.addRemoteCandidate(c, mid)
    })
    offerer.onLocalCandidate((c, mid) => answerer.addRemoteCandidate(c, mid))
    answerer.onLocalCandidate((c, mid) => (answer === undefined ? early.push([c, mid]) : offerer.addRemoteCandidate(c, mid)))
    answerer.onDataChannel((dc) => {
      onAnswererChannel?.(dc)
      Deferred.doneUnsafe(channel, Effect.succeed(dc))
    })
    const binding = (): ChannelBinding | undefined => {
      const offererFingerprint = offer === undefined ? undefined : Native.fingerprintOf(offer)
      const answererFingerprint = answer === undefined ? undefined : Native.fingerprintOf(answer)
      return offererFingerprint === undefined || answererFingerprint === undefined
        ? undefined
        : { offerer: offererId.peerId, answerer: answererId.peerId, offererFingerprint, answererFingerprint }
    }
    return { offerer, answerer, binding, answererChannel: Deferred.await(channel) }
  })
