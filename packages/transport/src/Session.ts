/**
 * One attempt to connect to one peer: a PeerConnection, the signed offer/answer exchange with
 * trickled candidates (queued until the remote description is set), one data channel, and the
 * link once both sides have proved their keys over it. The transport routes this session's
 * verified signals into `inbox`; the session and everything it opened close with its scope.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type { Duration, Scope } from "effect"
import type { PeerId } from "@can-sync/core"
import type { PeerIdentity } from "./Identity.ts"
import * as Native from "./Native.ts"
import type { RtcOptions } from "./Native.ts"
import type { SignalKind, VerifiedSignal } from "./Signal.ts"
import type { SignalingUnavailable } from "./Signaling.ts"
import * as WebRtcLink from "./WebRtcLink.ts"
import type { ChannelBinding, LinkOptions, Role } from "./WebRtcLink.ts"

/** The attempt failed before a link was authenticated. */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", {
  peer: Schema.String,
  reason: Schema.String
}) {}

export type SessionInput =
  | { readonly _tag: "Signal"; readonly signal: VerifiedSignal }
  /** The signaling server could not deliver one of our signals: the peer is not connected. */
  | { readonly _tag: "Undeliverable" }

export interface SessionParams {
  readonly identity: PeerIdentity
  readonly remotePeer: PeerId
  readonly sid: string
  readonly rtc: RtcOptions
  readonly link: LinkOptions
  /** Deadline for the whole attempt: signaling, ICE, DTLS, channel open and AuthProofs. */
  readonly timeout: Duration.Input
  readonly inbox: Queue.Dequeue<SessionInput>
  /** Send a signed signal of this session to the peer. */
  readonly signal: (kind: SignalKind, body: string) => Effect.Effect<void, SignalingUnavailable>
}

export const CHANNEL_LABEL = "can-sync"

type PcEvent =
  | { readonly _tag: "Description"; readonly sdp: string; readonly type: string }
  | { readonly _tag: "Candidate"; readonly candidate: string; readonly mid: string }
  | { readonly _tag: "State"; readonly state: string }

interface Candidate {
  readonly candidate: string
  readonly mid: string
}
const parseCandidate = (body: string): Candidate | undefined => {
  try {
    const value: unknown = JSON.parse(body)
    if (typeof value === "object" && value !== null && "candidate" in value && "mid" in value) {
      const { candidate, mid } = value
      if (typeof candidate === "string" && typeof mid === "string") return { candidate, mid }
    }
  } catch {
    // not JSON: refused below
  }
  return undefined
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const run = (
  params: SessionParams,
  role: Role,
  offer: VerifiedSignal | undefined
): Effect.Effect<WebRtcLink.WebRtcLink, ConnectFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const { identity, remotePeer } = params
    const fingerprints: { offer: string | undefined; answer: string | undefined } = { offer: undefined, answer: undefined }
    let remotePublicKey = offer?.publicKey
    const binding = (): ChannelBinding | undefined =>
      fingerprints.offer === undefined || fingerprints.answer === undefined
        ? undefined
        : role === "offerer"
        ? { offerer: identity.peerId, answerer: remotePeer, offererFingerprint: fingerprints.offer, answererFingerprint: fingerprints.answer }
        : { offerer: remotePeer, answerer: identity.peerId, offererFingerprint: fingerprints.offer, answererFingerprint: fingerprints.answer }

    // a handful of events per attempt (descriptions, candidates, states); a flood is dropped
    const events = yield* Queue.bounded<PcEvent>(256)
    const pc = yield* Native.peerConnection(`${role}:${remotePeer.slice(0, 8)}`, params.rtc)
    const pending = yield* WebRtcLink.make({
      identity,
      role,
      remotePeer,
      remotePublicKey: () => remotePublicKey,
      binding,
      options: params.link
    })
    const fail = (reason: string) => Effect.sync(() => pending.fail(reason))

    // Every handler registered once, in one synchronous step, before anything can fire.
    yield* Effect.sync(() => {
      pc.onLocalDescription((sdp, type) => Queue.offerUnsafe(events, { _tag: "Description", sdp, type }))
      pc.onLocalCandidate((candidate, mid) => Queue.offerUnsafe(events, { _tag: "Candidate", candidate, mid }))
      pc.onStateChange((state) => Queue.offerUnsafe(events, { _tag: "State", state }))
      let channelTaken = false
      pc.onDataChannel((dc) => {
        if (role === "offerer" || channelTaken || dc.getLabel() !== CHANNEL_LABEL) {
          dc.close()
          return
        }
        channelTaken = true
        pending.attach(dc)
      })
      if (role === "offerer") pending.attach(pc.createDataChannel(CHANNEL_LABEL))
    })

    const send = (kind: SignalKind, body: string) =>
      params.signal(kind, body).pipe(
        Effect.catchTag("SignalingUnavailable", () => fail("the signaling server is unreachable"))
      )

    // Remote candidates wait until a remote description is set.
    let remoteSet = false
    const early: Array<Candidate> = []
    /**
     * The offerer's own candidates wait until the answer is applied. libdatachannel hands the
     * answer to ICE before it records it as the remote description, so a check from the answerer
     * landing in between connects ICE, and the DTLS handshake that follows finds no fingerprint to
     * check the answerer's certificate against: it refuses it ("DTLS alert: unknown CA" at the
     * answerer) and the attempt fails. Seen on loopback under load, in a few attempts in a hundred.
     * An answerer that does not know our address cannot send that check.
     */
    const held: Array<string> = []

    // Local events: sign and send our description and candidates; a failed connection fails the link.
    yield* Effect.forkScoped(
      forEachQueued(events, (event) => {
        switch (event._tag) {
          case "Description":
            if (role === "offerer" && event.type === "offer") {
              fingerprints.offer = Native.fingerprintOf(event.sdp)
              return send("offer", event.sdp)
            }
            if (role === "answerer" && event.type === "answer") {
              fingerprints.answer = Native.fingerprintOf(event.sdp)
              return send("answer", event.sdp)
            }
            return Effect.void
          case "Candidate": {
            const body = JSON.stringify({ candidate: event.candidate, mid: event.mid })
            if (role === "offerer" && !remoteSet) {
              held.push(body) // ours, gathered locally: a handful, no cap needed
              return Effect.void
            }
            return send("candidate", body)
          }
          case "State":
            return event.state === "failed" || event.state === "closed"
              ? fail(`the peer connection ${event.state}`)
              : Effect.void
        }
      })
    )


    const addCandidate = (c: Candidate) =>
      Effect.sync(() => {
        try {
          pc.addRemoteCandidate(c.candidate, c.mid)
        } catch {
          // a candidate the library cannot use is not fatal: others may work
        }
      })
    const setRemote = (sdp: string, type: "offer" | "answer") =>
      Effect.suspend(() => {
        try {
          pc.setRemoteDescription(sdp, type)
        } catch (e) {
          return fail(`the ${type} was refused by the library: ${errorText(e)}`)
        }
        remoteSet = true
        const queued = early.splice(0)
        return Effect.forEach(queued, addCandidate, { discard: true }).pipe(
          Effect.andThen(Effect.forEach(held.splice(0), (body) => send("candidate", body), { discard: true }))
        )
      })

    if (role === "answerer") {
      fingerprints.offer = Native.fingerprintOf(offer!.body)
      if (fingerprints.offer === undefined) return yield* new ConnectFailed({ peer: remotePeer, reason: "the offer has no DTLS fingerprint" })
      yield* setRemote(offer!.body, "offer")
    }

    yield* Effect.forkScoped(
      forEachQueued(params.inbox, (input) => {
        if (input._tag === "Undeliverable") return fail("the peer is not connected to the signaling server")
        const signal = input.signal
        switch (signal.kind) {
          case "answer":
            if (role !== "offerer" || remoteSet) return Effect.void
            fingerprints.answer = Native.fingerprintOf(signal.body)
            if (fingerprints.answer === undefined) return fail("the answer has no DTLS fingerprint")
            remotePublicKey = signal.publicKey
            return setRemote(signal.body, "answer")
          case "candidate": {
            const candidate = parseCandidate(signal.body)
            if (candidate === undefined) return Effect.void
            if (!remoteSet) {
              if (early.length < 64) early.push(candidate)
              return Effect.void
            }
            return addCandidate(candidate)
          }
          default:
            return Effect.void
        }
      })
    )

    return yield* pending.authenticate.pipe(
      Effect.timeoutOrElse({
        duration: params.timeout,
        orElse: () =>
          Effect.andThen(
            fail("timed out"),
            Effect.fail(new ConnectFailed({ peer: remotePeer, reason: "timed out" }))
          )
      }),
      Effect.catchTag("LinkClosed", (e) => Effect.fail(new ConnectFailed({ peer: remotePeer, reason: e.reason })))
    )
  })

/** Process every element of a queue in order, forever (until the fiber is interrupted). */
const forEachQueued = <A>(queue: Queue.Dequeue<A>, f: (a: A) => Effect.Effect<void>): Effect.Effect<never> =>
  Effect.forever(Effect.flatMap(Queue.take(queue), f))

/** Offer to `remotePeer` (we have the lower id); the peer's key comes with its signed answer. */
export const offer = Effect.fn("Session.offer")(function*(params: SessionParams) {
  return yield* run(params, "offerer", undefined)
})

/** Answer a verified offer from `remotePeer`. */
export const answer = Effect.fn("Session.answer")(function*(params: SessionParams, offer: VerifiedSignal) {
  return yield* run(params, "answerer", offer)
})
