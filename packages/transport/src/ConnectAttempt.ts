/**
 * One attempt to connect to one peer: a PeerConnection, the signed offer/answer exchange with
 * trickled candidates (queued until the remote description is set), one data channel, and the
 * link once both sides have proved their keys over it. The transport routes this attempt's
 * verified signals into `inbox`; everything the attempt opened closes with its scope.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type { Scope } from "effect"
import { describeLinkCloseReason, LinkCloseReason } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import type { ChannelBinding, SdpRole } from "./Binding.ts"
import * as IceServers from "./IceServers.ts"
import * as Lanes from "./Lanes.ts"
import type { PeerIdentity } from "./Identity.ts"
import * as Native from "./Native.ts"
import type { RtcOptions } from "./Native.ts"
import type { SignalKind, VerifiedSignal } from "./Signal.ts"
import type { SignalingUnavailable } from "./Signaling.ts"
import * as WebRtcLink from "./WebRtcLink.ts"
import type { LinkOptions } from "./WebRtcLink.ts"

/** Why an attempt gave no link; callers match on `_tag`. */
export const ConnectFailedReason = Schema.TaggedUnion({
  /** No authenticated link within the connect timeout. */
  Timeout: { millis: Schema.Number },
  /** We are not registered with the signaling server (it is down or restarting). */
  SignalingUnavailable: { url: Schema.String },
  /** The signaling server says the peer is not connected to it. */
  PeerUnreachable: {},
  /** The peer is not on the allow-list (or is ourselves). */
  NotAllowed: {},
  /** The peer refused us (a signed "refused" signal): we are not on its allow-list. */
  RefusedByPeer: {},
  /** Another connect to the same peer is in progress. */
  Busy: {},
  /** The peer started a newer attempt (a new offer, or a knock after answering) while this one ran. */
  Superseded: {},
  /** The peer's offer or answer cannot be used (no DTLS fingerprint, refused by the library). */
  BadDescription: { detail: Schema.String },
  /** ICE or DTLS failed: the peer connection failed or closed. */
  IceFailed: { detail: Schema.String },
  /** The channel's AuthProof did not prove the expected peer, key or binding. */
  AuthFailed: { detail: Schema.String },
  /** The channel closed before it was authenticated, for another reason. */
  ClosedEarly: { reason: LinkCloseReason }
})
export type ConnectFailedReason = typeof ConnectFailedReason.Type

export const describeConnectFailedReason = (reason: ConnectFailedReason): string =>
  ConnectFailedReason.match(reason, {
    Timeout: ({ millis }) => `timed out after ${millis} ms`,
    SignalingUnavailable: ({ url }) => `not registered with the signaling server ${url}`,
    PeerUnreachable: () => "the peer is not connected to the signaling server",
    NotAllowed: () => "not on the allow-list",
    RefusedByPeer: () => "the peer refused us: we are not on its allow-list",
    Busy: () => "another attempt with this peer is in progress",
    Superseded: () => "the peer started a newer attempt",
    BadDescription: ({ detail }) => `unusable description: ${detail}`,
    IceFailed: ({ detail }) => `the connection failed: ${detail}`,
    AuthFailed: ({ detail }) => `authentication failed: ${detail}`,
    ClosedEarly: ({ reason }) => `the channel closed before authentication: ${describeLinkCloseReason(reason)}`
  })

/** The attempt failed before a link was authenticated. */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", {
  peer: Schema.String,
  reason: ConnectFailedReason,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `could not connect to ${this.peer}: ${describeConnectFailedReason(this.reason)}`
  }
}

export type AttemptInput =
  | { readonly _tag: "Signal"; readonly signal: VerifiedSignal }
  /** The signaling server could not deliver one of our signals: the peer is not connected. */
  | { readonly _tag: "Undeliverable" }
  /** The peer started a newer attempt: give this one up. */
  | { readonly _tag: "Superseded" }
  /** The peer refused this attempt: we are not on its allow-list. */
  | { readonly _tag: "Refused" }

export interface AttemptParams {
  readonly identity: PeerIdentity
  readonly remotePeer: PeerId
  readonly sid: string
  readonly rtc: RtcOptions
  readonly link: LinkOptions
  readonly inbox: Queue.Dequeue<AttemptInput>
  /** Send a signed signal of this attempt to the peer. */
  readonly signal: (kind: SignalKind, body: string) => Effect.Effect<void, SignalingUnavailable>
  /** Called once when the link closes (authenticated or not). */
  readonly onClosed?: WebRtcLink.LinkParams["onClosed"]
  /**
   * Striping: `max` > 1 marks our description as able to stripe over that many lanes;
   * `laneOf` marks our offer as one more lane of the link of that attempt id.
   */
  readonly lanes?: { readonly max: number; readonly laneOf?: string | undefined } | undefined
  /** Report the link's path (off for extra lanes: they take the first lane's). */
  readonly reportPath?: boolean | undefined
}

/**
 * An attempt's authenticated link, how many lanes the peer said it can stripe over (1: none), and
 * whether ICE found both ends on one address (one host: more lanes would only cost CPU).
 */
export type AttemptLink = WebRtcLink.WebRtcLink & { readonly lane: WebRtcLink.LanePort; readonly remoteLanes: number; readonly sameHost: boolean }

export const CHANNEL_LABEL = "can-sync"

type PcEvent =
  | { readonly _tag: "Description"; readonly sdp: string; readonly type: string }
  | { readonly _tag: "Candidate"; readonly candidate: string; readonly mid: string }
  | { readonly _tag: "State"; readonly state: string }
  | { readonly _tag: "IceState"; readonly state: string }
  | { readonly _tag: "Gathering"; readonly state: string }

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

const lost = (detail: string) => LinkCloseReason.cases.ConnectionLost.make({ detail })

/**
 * A connection not up this long after both sides' candidates are known will not come up (the
 * library itself gives up on ICE only after ~40 s): the attempt fails saying how far it got (no
 * candidate pair, or a pair but no DTLS handshake), and is retried.
 */
const ICE_CHECKS_DEADLINE = "10 seconds"
/** When the selected pair is read again after the link opened (it may change), then every 30 s. */
const PATH_RECHECKS = ["1 second", "5 seconds"] as const

const typesOf = (types: ReadonlySet<string>) => (types.size === 0 ? "none" : [...types].join(", "))

/**
 * Why a connection is not up by the deadline: no candidate pair, or a pair but no DTLS handshake
 * (the peer's side stuck, or DTLS packets lost). Built from what the attempt saw, with no call
 * into the library, which may be what is stuck.
 */
const describeNotUp = (seen: {
  readonly iceConnected: boolean
  readonly localTypes: ReadonlySet<string>
  readonly remoteTypes: ReadonlySet<string>
  readonly trouble: string | undefined
}): string => {
  const candidates = `(ours: ${typesOf(seen.localTypes)}; theirs: ${typesOf(seen.remoteTypes)})`
  return seen.iceConnected
    ? `ICE found a path but the DTLS handshake did not finish within ${ICE_CHECKS_DEADLINE} ${candidates}`
    : `no candidate pair succeeded within ${ICE_CHECKS_DEADLINE} ${candidates}${seen.trouble === undefined ? "" : `; ${seen.trouble}`}`
}

const run = (
  params: AttemptParams,
  role: SdpRole,
  offer: VerifiedSignal | undefined
): Effect.Effect<AttemptLink, ConnectFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const { identity, remotePeer } = params
    const mark = (sdp: string) => Lanes.markSdp(sdp, role, { lanes: params.lanes?.max, laneOf: params.lanes?.laneOf })
    let remoteLanes = offer === undefined ? 1 : Lanes.lanesOf(offer.body, "offerer")
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
      options: params.link,
      onClosed: params.onClosed
    })
    // how ICE goes: candidate types on both sides, whether gathering ended, the TURN servers' state
    const startedAt = Date.now()
    const iceServers = params.rtc.iceServers ?? []
    const turnShown = IceServers.parseAll(iceServers.filter((url) => /^turn/i.test(url.trim())))
    const turnServers = turnShown._tag === "Success" ? turnShown.success.shown.join(", ") : "TURN"
    const localTypes = new Set<string>()
    const remoteTypes = new Set<string>()
    let gathered = false
    /** ICE found a working pair (DTLS and SCTP may still be on their way). */
    let iceConnected = false
    let connected = false
    const checking = yield* Deferred.make<void>()
    const startChecksClock = () => {
      if (gathered && remoteSet) Deferred.doneUnsafe(checking, Effect.void)
    }
    /** Why the attempt failed, when we know better than the link's close reason. */
    let failure: ConnectFailedReason | undefined
    const fail = (reason: ConnectFailedReason) =>
      Effect.sync(() => {
        failure ??= reason
        pending.fail(lost(describeConnectFailedReason(reason)))
      })

    // Every handler registered once, in one synchronous step, before anything can fire.
    yield* Effect.sync(() => {
      pc.onLocalDescription((sdp, type) => Queue.offerUnsafe(events, { _tag: "Description", sdp, type }))
      pc.onLocalCandidate((candidate, mid) => Queue.offerUnsafe(events, { _tag: "Candidate", candidate, mid }))
      pc.onStateChange((state) => Queue.offerUnsafe(events, { _tag: "State", state }))
      pc.onIceStateChange((state) => Queue.offerUnsafe(events, { _tag: "IceState", state }))
      pc.onGatheringStateChange((state) => Queue.offerUnsafe(events, { _tag: "Gathering", state }))
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
        Effect.catchTag("SignalingUnavailable", (e) => fail(ConnectFailedReason.cases.SignalingUnavailable.make({ url: e.url })))
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
              return send("offer", mark(event.sdp))
            }
            if (role === "answerer" && event.type === "answer") {
              fingerprints.answer = Native.fingerprintOf(event.sdp)
              return send("answer", mark(event.sdp))
            }
            return Effect.void
          case "Candidate": {
            const type = IceServers.candidateType(event.candidate)
            if (type !== undefined) localTypes.add(type)
            const body = JSON.stringify({ candidate: event.candidate, mid: event.mid })
            if (role === "offerer" && !remoteSet) {
              held.push(body) // ours, gathered locally: a handful, no cap needed
              return Effect.void
            }
            return send("candidate", body)
          }
          case "Gathering":
            return event.state === "complete" ? gatheringDone : Effect.void
          case "IceState":
            if (event.state === "connected" || event.state === "completed") iceConnected = true
            return Effect.void
          case "State":
            if (event.state === "connected") connected = true
            return event.state === "failed" || event.state === "closed"
              ? fail(ConnectFailedReason.cases.IceFailed.make({ detail: `the peer connection ${event.state}` }))
              : Effect.void
        }
      })
    )

    /** Gathering ended: with TURN configured and no relayed candidate, say why once (and fail at once if relay-only). */
    const gatheringDone = Effect.suspend(() => {
      gathered = true
      startChecksClock()
      if (!IceServers.hasTurn(iceServers)) return Effect.void
      const trouble = localTypes.has("relay")
        ? undefined
        : IceServers.troubleSince(startedAt) ?? "the TURN server gave no relayed candidate (unreachable, or it refused the allocation)"
      const line = IceServers.reportTurnState(trouble, turnServers)
      const report = line === undefined ? Effect.void : trouble === undefined ? Effect.logInfo(line) : Effect.logError(line)
      return params.rtc.relayOnly === true && trouble !== undefined
        ? Effect.andThen(report, fail(ConnectFailedReason.cases.IceFailed.make({ detail: `no relayed candidate (--ice-relay-only): ${trouble}` })))
        : report
    })
    const notUp = () => describeNotUp({ iceConnected, localTypes, remoteTypes, trouble: IceServers.troubleSince(startedAt) })
    yield* Effect.forkScoped(
      Deferred.await(checking).pipe(
        Effect.andThen(Effect.sleep(ICE_CHECKS_DEADLINE)),
        Effect.andThen(Effect.suspend(() => (connected ? Effect.void : fail(ConnectFailedReason.cases.IceFailed.make({ detail: notUp() })))))
      )
    )

    const addCandidate = (c: Candidate) =>
      Effect.sync(() => {
        const type = IceServers.candidateType(c.candidate)
        if (type !== undefined) remoteTypes.add(type)
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
          return fail(ConnectFailedReason.cases.BadDescription.make({ detail: `the ${type} was refused by the library: ${errorText(e)}` }))
        }
        remoteSet = true
        startChecksClock()
        const queued = early.splice(0)
        return Effect.forEach(queued, addCandidate, { discard: true }).pipe(
          Effect.andThen(Effect.forEach(held.splice(0), (body) => send("candidate", body), { discard: true }))
        )
      })

    if (role === "answerer") {
      fingerprints.offer = Native.fingerprintOf(offer!.body)
      if (fingerprints.offer === undefined) {
        return yield* new ConnectFailed({
          peer: remotePeer,
          reason: ConnectFailedReason.cases.BadDescription.make({ detail: "the offer has no DTLS fingerprint" })
        })
      }
      yield* setRemote(offer!.body, "offer")
    }

    yield* Effect.forkScoped(
      forEachQueued(params.inbox, (input) => {
        if (input._tag === "Undeliverable") return fail(ConnectFailedReason.cases.PeerUnreachable.make({}))
        if (input._tag === "Superseded") return fail(ConnectFailedReason.cases.Superseded.make({}))
        if (input._tag === "Refused") return fail(ConnectFailedReason.cases.RefusedByPeer.make({}))
        const signal = input.signal
        switch (signal.kind) {
          case "answer":
            if (role !== "offerer" || remoteSet) return Effect.void
            fingerprints.answer = Native.fingerprintOf(signal.body)
            if (fingerprints.answer === undefined) {
              return fail(ConnectFailedReason.cases.BadDescription.make({ detail: "the answer has no DTLS fingerprint" }))
            }
            remotePublicKey = signal.publicKey
            remoteLanes = Lanes.lanesOf(signal.body, "answerer")
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

    const link = yield* pending.authenticate.pipe(
      Effect.catchTag("LinkClosed", (e) =>
        Effect.fail(
          new ConnectFailed({
            peer: remotePeer,
            reason: failure ?? (e.reason._tag === "AuthFailed"
              ? ConnectFailedReason.cases.AuthFailed.make({ detail: e.reason.detail })
              : ConnectFailedReason.cases.ClosedEarly.make({ reason: e.reason })),
            cause: e
          })
        )
      ),
      Effect.onInterrupt(() => Effect.sync(() => pending.fail(LinkCloseReason.cases.ClosedLocally.make({}))))
    )
    // which path the link took (host, server-reflexive, relayed): logged, and told to the transport
    let path: IceServers.IcePath | undefined
    const readPath = Effect.suspend(() => {
      const now = IceServers.pathOf(pc.getSelectedCandidatePair())
      if (now === undefined || (path !== undefined && IceServers.describePath(now) === IceServers.describePath(path))) return Effect.void
      const changed = path !== undefined
      path = now
      params.rtc.onPath?.(remotePeer, now, Effect.map(link.stats, (s) => s.rttMillis))
      return Effect.logInfo(`transport: ${changed ? "path changed" : "path"} to ${remotePeer}: ${IceServers.describePath(now)}`).pipe(
        Effect.annotateLogs({ ice_path: now.kind, ice_local: now.local, ice_remote: now.remote })
      )
    })
    if (params.reportPath !== false) {
      yield* readPath
      yield* Effect.forkScoped(
        Effect.forEach(PATH_RECHECKS, (after) => Effect.andThen(Effect.sleep(after), readPath), { discard: true }).pipe(
          Effect.andThen(Effect.forever(Effect.andThen(Effect.sleep("30 seconds"), readPath)))
        )
      )
    }
    const lane = link.lane
    if (lane === undefined) return yield* Effect.die(new Error("a channel link without its lane port"))
    const host = (address: string) => address.replace(/:\d+$/, "")
    const sameHost = path !== undefined && host(path.localAddress) === host(path.remoteAddress)
    return { ...link, lane, remoteLanes, sameHost }
  })

/** Process every element of a queue in order, forever (until the fiber is interrupted). */
const forEachQueued = <A>(queue: Queue.Dequeue<A>, f: (a: A) => Effect.Effect<void>): Effect.Effect<never> =>
  Effect.forever(Effect.flatMap(Queue.take(queue), f))

/** Offer to `remotePeer` (we have the lower id); the peer's key comes with its signed answer. */
export const offer = Effect.fn("ConnectAttempt.offer")(function*(params: AttemptParams) {
  return yield* run(params, "offerer", undefined)
})

/** Answer a verified offer from `remotePeer`. */
export const answer = Effect.fn("ConnectAttempt.answer")(function*(params: AttemptParams, offer: VerifiedSignal) {
  return yield* run(params, "answerer", offer)
})
