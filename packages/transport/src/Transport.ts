/**
 * The Transport service: `connect(peer)` makes one attempt at an authenticated WebRTC link with an
 * allowed peer; whoever calls it (the engine's PeerManager) owns retries and backoff. The lower
 * peer id offers; the higher one knocks ("please offer") and answers, so there is one connection
 * per pair. Bad signatures and peers off the allow-list get a log line, no answer.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { Scope } from "effect"
import { Metrics } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import { makeIssuer } from "./AttemptIds.ts"
import { ConnectFailed, ConnectFailedReason } from "./ConnectAttempt.ts"
import * as IceServers from "./IceServers.ts"
import { Identity, isPeerId } from "./Identity.ts"
import type { PeerIdentity } from "./Identity.ts"
import * as Lanes from "./Lanes.ts"
import * as Native from "./Native.ts"
import type { RtcOptions } from "./Native.ts"
import * as PeerSlot from "./PeerSlot.ts"
import * as RateLimit from "./RateLimit.ts"
import * as Signal from "./Signal.ts"
import * as Signaling from "./Signaling.ts"
import * as TurnStreamBridge from "./TurnStreamBridge.ts"
import * as WebRtcLink from "./WebRtcLink.ts"
import type { LinkOptions } from "./WebRtcLink.ts"

export { ConnectFailed, ConnectFailedReason, describeConnectFailedReason } from "./ConnectAttempt.ts"

/** The transport cannot start: its configuration is invalid. */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  detail: Schema.String
}) {
  override get message(): string {
    return `transport: ${this.detail}`
  }
}

export interface TransportConfig {
  /** ws:// or wss:// URL of the signaling server. */
  readonly signalingUrl: string
  /** The allow-list: only these peers may connect. */
  readonly peers: ReadonlyArray<string>
  /** STUN/TURN servers, bind address, port range, MTU. None are needed on loopback or a LAN. */
  readonly rtc?: RtcOptions | undefined
  readonly link?: Partial<LinkOptions> | undefined
  /** Deadline for one connect (signaling, knock and offer, ICE, DTLS, AuthProofs). Default 15 s. */
  readonly connectTimeout?: Duration.Input | undefined
  /**
   * Parallel connections per peer link (Lanes.ts): at most `max` (1: one connection, as before),
   * chosen from the measured round trip unless `count` fixes it. Default: `CAN_SYNC_LANES`
   * (a number, 1 to 32), else DEFAULT_MAX_LANES.
   */
  readonly lanes?: PeerSlot.LaneConfig | undefined
  /** Bandwidth limits, bytes per second, for the agent and for each peer (RateLimit.ts). None by default. */
  readonly rates?: RateLimit.RateLimits | undefined
}

/** Lanes per link at most when nothing says otherwise. */
export const DEFAULT_MAX_LANES = Lanes.MAX_LANES

/** `CAN_SYNC_LANES` (1 to 32), else the default. */
const lanesFromEnv = (): PeerSlot.LaneConfig => {
  const wanted = Number(process.env.CAN_SYNC_LANES ?? "")
  return { max: Number.isInteger(wanted) && wanted >= 1 && wanted <= Lanes.MAX_LANES ? wanted : DEFAULT_MAX_LANES }
}

export interface TransportShape {
  /** Our own peer id. */
  readonly self: PeerId
  /**
   * One attempt at an authenticated link with an allowed peer, within the connect timeout: the
   * lower id offers; the higher knocks and answers the peer's offer (or the newest one that came
   * while no connect was pending). A newer offer or knock from a peer whose link is open closes
   * that link (reason `Replaced`): the peer restarted or gave the link up. Closing the scope
   * closes the link. At most one connect per peer at a time (else `Busy`).
   */
  readonly connect: (peer: PeerId) => Effect.Effect<WebRtcLink.WebRtcLink, ConnectFailed, Scope.Scope>
  /**
   * Completes when `peer` asks for a link (it knocked, or offered) or already has: a caller
   * waiting out a backoff may connect at once instead. Never completes for a peer not allowed.
   */
  readonly wake: (peer: PeerId) => Effect.Effect<void>
  /** Completes once registered with the signaling server (again after it restarts). */
  readonly registered: Effect.Effect<void>
  /** How many times we have registered with the signaling server (reconnects count). */
  readonly registrations: Effect.Effect<number>
  /** The signaling registration now (state, failures, last error, next retry): `/status` shows it. */
  readonly signaling: Effect.Effect<Signaling.SignalingStatus>
  /** The path of each peer's newest link (host, server-reflexive, relayed) as ICE selected it, its round trip and lanes. */
  readonly paths: Effect.Effect<ReadonlyMap<PeerId, PeerPath>>
}

/** A peer's newest link: the ICE path, the last heartbeat's round trip, and the connections carrying it now. */
export interface PeerPath extends IceServers.IcePath {
  readonly rttMillis: number | undefined
  /** Parallel connections (lanes) of the open link; undefined while none is open. */
  readonly lanes: number | undefined
}

const invalid = (detail: string) => new TransportError({ detail })

/** Lines about strangers: a burst of this many, then one per STRANGER_LINE_EVERY. */
export const STRANGER_LINE_BURST = 10
export const STRANGER_LINE_EVERY = Duration.seconds(6)

/**
 * Anyone who can reach the signaling server can send us signals; each refusal is counted
 * (`cansync.errors`), but its WARN line goes through a token bucket, so a flood costs a few lines
 * a minute, and the next line says how many were held back. Gives whether the line was written.
 */
const strangerLog = () => {
  const everyMillis = Duration.toMillis(STRANGER_LINE_EVERY)
  let tokens: number = STRANGER_LINE_BURST
  let refilledAt: number | undefined
  let held = 0
  return (line: string): Effect.Effect<boolean> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      tokens = Math.min(STRANGER_LINE_BURST, tokens + (refilledAt === undefined ? 0 : (now - refilledAt) / everyMillis))
      refilledAt = now
      if (tokens < 1) {
        held++
        return Effect.succeed(false)
      }
      tokens -= 1
      const more = held === 0 ? "" : ` (and ${held} more refused since the last such line, not logged)`
      held = 0
      return Effect.as(Effect.logWarning(`${line}${more}`), true)
    })
}

/**
 * Route what the signaling server hands us to the slot of the peer it concerns. A stranger's offer
 * or knock is refused, and (within the same token bucket as the log line, so a flood is not
 * amplified) told so by a signed "refused" signal: its operator then reads why it cannot connect.
 */
const router = (identity: PeerIdentity, signaling: Signaling.SignalingClient, slots: ReadonlyMap<PeerId, PeerSlot.PeerSlot>) => {
  const self = identity.peerId
  const stranger = strangerLog()
  return (inbound: Signaling.Inbound): Effect.Effect<void> => {
    if (inbound._tag === "Undeliverable") {
      const slot = slots.get(inbound.to as PeerId)
      return slot === undefined || inbound.ref === undefined ? Effect.void : slot.onUndeliverable(inbound.ref)
    }
    const verified = Signal.verify(self, inbound.from, inbound.data)
    if (Result.isFailure(verified)) {
      const e = verified.failure
      return Effect.andThen(stranger(`transport: ${e.message}`), Metrics.recordError("auth"))
    }
    const signal = verified.success
    const slot = slots.get(signal.from)
    if (slot !== undefined) return Effect.annotateLogs(slot.onSignal(signal), { peer: signal.from })
    if (signal.kind !== "offer" && signal.kind !== "knock") return Effect.void
    return Metrics.recordError("not_allowed").pipe(
      Effect.andThen(stranger(`transport: refused connection from ${signal.from}: not on the allow-list`)),
      Effect.flatMap((logged) =>
        logged
          ? signaling.send(signal.from, Signal.sign(identity, signal.from as PeerId, "refused", signal.sid, "")).pipe(Effect.ignore)
          : Effect.void
      )
    )
  }
}

const make = Effect.fn("Transport.make")(function*(config: TransportConfig) {
  const identity = yield* Identity
  const self = identity.peerId
  // acquired first so that it is released last: cleanup() runs after every connection closed
  yield* Native.useLibrary

  const link: LinkOptions = { ...WebRtcLink.defaultLinkOptions, ...config.link }
  const badOptions = WebRtcLink.checkOptions(link)
  if (badOptions !== undefined) return yield* invalid(`link options: ${badOptions}`)
  for (const peer of config.peers) {
    if (!isPeerId(peer)) return yield* invalid(`not a peer id: "${peer}"`)
  }
  const allowed = new Set(config.peers.filter((peer): peer is PeerId => peer !== self))
  const ice = IceServers.parseAll(config.rtc?.iceServers ?? [])
  if (Result.isFailure(ice)) return yield* invalid(ice.failure.message)
  if (config.rtc?.relayOnly === true && !ice.success.servers.some((s) => s.kind === "turn")) {
    return yield* invalid("relay-only ICE needs a turn: server")
  }
  // TURN over TCP or TLS: libjuice reaches each such server through a local UDP bridge
  const turnBridges = new Map<string, number>()
  const urls = config.rtc?.iceServers ?? []
  for (const [i, server] of ice.success.servers.entries()) {
    const url = urls[i]! // parseAll keeps the order of the URLs it was given
    if (IceServers.isStream(server) && !turnBridges.has(url)) {
      const bridge = yield* TurnStreamBridge.start(server).pipe(Effect.mapError((e) => invalid(e.message)))
      turnBridges.set(url, bridge.port)
    }
  }
  const paths = new Map<PeerId, { readonly path: IceServers.IcePath; readonly rttMillis: Effect.Effect<number | undefined> }>()
  const rtc: Native.RtcOptions = {
    ...config.rtc,
    turnBridges,
    onPath: (peer, path, rttMillis) => {
      paths.set(peer as PeerId, { path, rttMillis })
      config.rtc?.onPath?.(peer, path, rttMillis)
    }
  }

  const signaling = yield* Signaling.connect({ url: config.signalingUrl, identity })
  const slotConfig: PeerSlot.SlotConfig = {
    identity,
    signaling,
    signalingUrl: config.signalingUrl,
    rtc,
    link,
    connectTimeout: Duration.fromInputUnsafe(config.connectTimeout ?? "15 seconds"),
    nextSid: makeIssuer(),
    lanes: config.lanes ?? lanesFromEnv()
  }
  const slots = new Map<PeerId, PeerSlot.PeerSlot>()
  for (const peer of allowed) slots.set(peer, yield* PeerSlot.make(peer, slotConfig))

  const rates = RateLimit.make(config.rates ?? {})
  const route = router(identity, signaling, slots)
  yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(signaling.inbound), route)).pipe(Effect.ignore))

  yield* Effect.logInfo(`transport: ${self} up; allow-list: ${allowed.size === 0 ? "(empty)" : [...allowed].join(", ")}`)
  if (ice.success.servers.length > 0 || rtc.portRange !== undefined) {
    const ports = rtc.portRange === undefined ? "" : `; UDP ports ${rtc.portRange.begin}-${rtc.portRange.end}`
    yield* Effect.logInfo(`transport: ICE servers ${ice.success.shown.join(", ") || "(none)"}${rtc.relayOnly === true ? " (relay only)" : ""}${ports}`)
  }
  const shape: TransportShape = {
    self,
    connect: (peer) => {
      const slot = slots.get(peer)
      return slot === undefined
        ? Effect.fail(new ConnectFailed({ peer, reason: ConnectFailedReason.cases.NotAllowed.make({}) }))
        : Effect.map(slot.connect, rates.limit)
    },
    wake: (peer) => slots.get(peer)?.wake ?? Effect.never,
    registered: signaling.registered,
    registrations: signaling.registrations,
    signaling: signaling.status,
    paths: Effect.suspend(() =>
      Effect.forEach([...paths], ([peer, { path, rttMillis }]) =>
        Effect.zipWith(rttMillis, slots.get(peer)?.lanes ?? Effect.succeed(undefined), (rtt, lanes): readonly [PeerId, PeerPath] => [peer, { ...path, rttMillis: rtt, lanes }]))
    ).pipe(Effect.map((entries) => new Map(entries)))
  }
  return shape
}) satisfies (config: TransportConfig) => Effect.Effect<TransportShape, TransportError, Scope.Scope | Identity>

export class Transport extends Context.Service<Transport, TransportShape>()("@can-sync/transport/Transport") {
  /** A transport for the life of the current scope (closing it closes every link and cleans up). */
  static readonly make = make
  static readonly layer = (config: TransportConfig): Layer.Layer<Transport, TransportError, Identity> =>
    Layer.effect(Transport, make(config))
}
