/**
 * Status: one model of what the agent is doing — every configured peer, always (never connected,
 * connected, or dropped), its state and why, its link, its last error, and progress both ways
 * counted per chunk, with a smoothed rate and ETA — plus the agent's own identity, signaling and
 * store. `/status`, the terminal display, the log lines, the web page and the backlog gauges all
 * render this one model. No I/O: the agent hands `make` the engine's sessions, the transport's
 * paths and signaling state and the store's size; a tick turns counters into rates.
 */
import * as Effect from "effect/Effect"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Scope } from "effect"
import type { PeerStats, SessionState } from "./ActorWiring.ts"
import { emptyStats } from "./ActorWiring.ts"
import type { PeerId } from "./Domain.ts"
import type { Role } from "./PeerLink.ts"
import type { SessionInfo } from "./PeerManager.ts"

/** A peer's counters before its first session (for renderers of peers never reached). */
export { emptyStats }

/** Why a connection attempt or session ended, as far as the state shown depends on it. */
export type FailureKind = "refused-by-us" | "refused-by-peer" | "no-signaling" | "other"

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/**
 * Classify an attempt's or session's failure by its tags (core cannot import the transport's
 * types): an authentication or allow-list refusal, an incompatible peer, no signaling, or other.
 */
export const classifyFailure = (error: unknown): FailureKind => {
  switch (tagOf(error)) {
    case "ConnectFailed": {
      const reason = typeof error === "object" && error !== null && "reason" in error ? tagOf(error.reason) : undefined
      if (reason === "NotAllowed" || reason === "AuthFailed") return "refused-by-us"
      if (reason === "RefusedByPeer") return "refused-by-peer" // its signed "refused": we are not on its allow-list
      if (reason === "SignalingUnavailable") return "no-signaling"
      return "other"
    }
    case "ProtocolVersionMismatch":
    case "PeerMismatch":
      return "refused-by-us"
    case "RemoteFailure": {
      // the peer ended the session for an incompatible protocol or identity (ErrorCode 1, 2)
      const code = typeof error === "object" && error !== null && "code" in error ? error.code : undefined
      return code === 1 || code === 2 ? "refused-by-peer" : "other"
    }
    default:
      return "other"
  }
}

/** What the engine's PeerManager knows of one dialed peer. */
export type SessionView = SessionInfo

/** The transport's view of a peer's newest link. */
export interface LinkView {
  readonly kind: string
  readonly rttMillis: number | undefined
  readonly lanes?: number | undefined
}

/** The signaling client's registration (the transport's SignalingStatus has this shape). */
export interface SignalingView {
  readonly url: string
  readonly state: "connecting" | "registered" | "failing"
  readonly registrations?: number | undefined
  readonly failures?: number | undefined
  readonly lastError?: string | undefined
  readonly lastErrorAt?: number | undefined
  readonly nextRetryAt?: number | undefined
}

export interface StoreView {
  readonly assets: number
  readonly bytes: number
}

/** The state shown for a peer; one word each, in the order an operator reads them. */
export type PeerState = "waiting-for-signaling" | "connecting" | "backoff" | "refused" | "reconciling" | "transferring" | "live"

/** Progress one way: "received" is the peer to us, "sent" us to the peer. */
export interface DirectionProgress {
  readonly assetsToGo: number
  /** Undefined when unknown (sent: no asset sent yet to estimate sizes from). */
  readonly bytesToGo: number | undefined
  /** True when bytesToGo is an estimate (sent: the peer's wants carry no sizes; average sent size). */
  readonly bytesToGoEstimated: boolean
  readonly assetsDone: number
  /** Counted per chunk as it moves, so a large asset shows progress while it crosses. */
  readonly bytesDone: number
  /** Smoothed (exponentially weighted, half-life HALF_LIFE) bytes per second. */
  readonly rateBytesPerSecond: number
  /** bytesToGo / rate, in whole seconds; undefined when nothing moves or nothing is left. */
  readonly etaSeconds: number | undefined
  /** Share of the current backlog done (bytes, else assets), 0 to 100; 100 when nothing is left. */
  readonly percent: number
}

export interface PeerStatus {
  readonly peer: PeerId
  readonly state: PeerState
  /** The engine's own session state (connecting, handshake, reconciling, live, backoff), if dialed. */
  readonly sessionState: SessionState | undefined
  /** When this state began (as the tracker observed it; ms since the epoch). */
  readonly since: number
  /** Whether a session ever opened: "dropped" had one and has none now. */
  readonly connection: "never-connected" | "connected" | "dropped"
  readonly role: Role | undefined
  /** While backing off (or refused, or waiting): when the next attempt starts. */
  readonly nextRetryAt: number | undefined
  readonly refused: { readonly by: "us" | "peer"; readonly reason: string } | undefined
  readonly path: { readonly kind: string; readonly rttMillis: number | undefined; readonly lanes: number | undefined } | undefined
  /** Kept after the peer disconnects (and across later sessions) until a newer error. */
  readonly lastError: { readonly message: string; readonly at: number } | undefined
  readonly sessions: number
  readonly restarts: number
  readonly received: DirectionProgress
  readonly sent: DirectionProgress
}

/** Something worth a line on the web page: a state change, an error, assets moved. */
export interface StatusEvent {
  readonly at: number
  readonly peer: PeerId | undefined
  readonly kind: "state" | "error" | "transfer"
  readonly text: string
}

export interface AgentStatus {
  readonly at: number
  readonly version: string
  readonly peerId: PeerId
  readonly signaling: SignalingView
  readonly store: StoreView | undefined
  /** Every configured peer, in the configured order; never removed. */
  readonly peers: ReadonlyArray<PeerStatus>
  readonly totals: { readonly received: DirectionProgress; readonly sent: DirectionProgress }
  /** The newest last: at most MAX_EVENTS. */
  readonly recent: ReadonlyArray<StatusEvent>
}

/** Half-life of the rate's smoothing: long enough for a steady ETA, short enough to follow a change. */
export const HALF_LIFE = Duration.seconds(5)
export const TICK = Duration.seconds(1)
export const MAX_EVENTS = 50

/** What one tick reads. */
export interface Input {
  readonly version: string
  readonly peerId: PeerId
  readonly peers: ReadonlyArray<PeerId>
  readonly sessions: ReadonlyArray<SessionView>
  readonly links: ReadonlyMap<PeerId, LinkView>
  readonly signaling: SignalingView
  readonly store: StoreView | undefined
}

/** A direction's counters, before smoothing. */
interface Counts {
  readonly assetsToGo: number
  readonly bytesToGo: number | undefined
  readonly bytesToGoEstimated: boolean
  readonly assetsDone: number
  readonly bytesDone: number
  /** Bytes of the assets done (whole assets only): the recent events say how much each batch was. */
  readonly assetBytesDone: number
}

/** Assets and bytes still to come from the peer, as far as the engine counts them. */
const receivedCounts = (s: PeerStats): Counts => {
  const assetsToGo = Math.max(0, s.hashesWanted - s.assetsReceived - s.verificationFailures)
  return {
    assetsToGo,
    bytesToGo: assetsToGo === 0 ? 0 : Math.max(0, s.bytesWanted - s.chunkBytesReceived),
    bytesToGoEstimated: false,
    assetsDone: s.assetsReceived,
    bytesDone: s.chunkBytesReceived,
    assetBytesDone: s.bytesReceived
  }
}

/** Assets the peer asked for and has not got yet; bytes estimated from the average size sent so far. */
const sentCounts = (s: PeerStats): Counts => {
  const assetsToGo = Math.max(0, s.hashesWantedByPeer - s.assetsSent)
  const inFlight = Math.max(0, s.chunkBytesSent - s.bytesSent)
  const estimate = s.assetsSent === 0 ? 0 : Math.round(assetsToGo * (s.bytesSent / s.assetsSent)) - inFlight
  // sizes differ: an estimate the asset in flight already passed says nothing (unknown, not 0)
  const bytesToGo = assetsToGo === 0 ? 0 : estimate > 0 ? estimate : undefined
  return {
    assetsToGo,
    bytesToGo,
    bytesToGoEstimated: assetsToGo > 0,
    assetsDone: s.assetsSent,
    bytesDone: s.chunkBytesSent,
    assetBytesDone: s.bytesSent
  }
}

/** A direction's smoothing state, kept by the tracker across ticks. */
interface Meter {
  at: number
  bytes: number
  assets: number
  assetBytes: number
  rate: number
  /** Sum of weights so far: divides the rate so the first seconds are not biased towards 0. */
  weight: number
  /** bytesDone and assetsDone when the current backlog appeared. */
  baseBytes: number
  baseAssets: number
  busy: boolean
}

const newMeter = (now: number, c: Counts): Meter => ({
  at: now,
  bytes: c.bytesDone,
  assets: c.assetsDone,
  assetBytes: c.assetBytesDone,
  rate: 0,
  weight: 0,
  baseBytes: c.bytesDone,
  baseAssets: c.assetsDone,
  busy: c.assetsToGo > 0
})

/** Advance a meter to `now` (a tick): the bytes since the last tick update the smoothed rate. */
const advance = (m: Meter, c: Counts, now: number) => {
  const seconds = (now - m.at) / 1000
  if (seconds <= 0) return
  const moved = Math.max(0, c.bytesDone - m.bytes)
  if (!m.busy && c.assetsToGo > 0) {
    // a new backlog: progress counts from here (bytes of this tick included)
    m.baseBytes = m.bytes
    m.baseAssets = m.assets
  }
  if (c.assetsToGo === 0 && moved === 0) {
    m.rate = 0
    m.weight = 0
  } else {
    const keep = Math.pow(0.5, seconds / Duration.toSeconds(HALF_LIFE))
    m.rate = keep * m.rate + (1 - keep) * (moved / seconds)
    m.weight = keep * m.weight + (1 - keep)
  }
  m.busy = c.assetsToGo > 0
  m.at = now
  m.bytes = c.bytesDone
  m.assets = c.assetsDone
  m.assetBytes = c.assetBytesDone
}

const progress = (c: Counts, m: Meter): DirectionProgress => {
  const rate = m.weight > 0 ? m.rate / m.weight : 0
  const bytesDone = Math.max(0, c.bytesDone - m.baseBytes)
  const assetsDone = Math.max(0, c.assetsDone - m.baseAssets)
  const percent = c.assetsToGo === 0
    ? 100
    : c.bytesToGo !== undefined && !c.bytesToGoEstimated && bytesDone + c.bytesToGo > 0
    ? (100 * bytesDone) / (bytesDone + c.bytesToGo)
    : (100 * assetsDone) / (assetsDone + c.assetsToGo)
  return {
    assetsToGo: c.assetsToGo,
    bytesToGo: c.bytesToGo,
    bytesToGoEstimated: c.bytesToGoEstimated,
    assetsDone: c.assetsDone,
    bytesDone: c.bytesDone,
    rateBytesPerSecond: Math.round(rate),
    etaSeconds: c.bytesToGo !== undefined && c.bytesToGo > 0 && rate >= 1 ? Math.ceil(c.bytesToGo / rate) : undefined,
    percent: Math.min(100, Math.max(0, Math.floor(percent * 10) / 10))
  }
}

const total = (all: ReadonlyArray<DirectionProgress>): DirectionProgress => {
  const sum = (f: (d: DirectionProgress) => number) => all.reduce((n, d) => n + f(d), 0)
  const assetsToGo = sum((d) => d.assetsToGo)
  const unknown = all.some((d) => d.bytesToGo === undefined)
  const bytesToGo = unknown ? undefined : sum((d) => d.bytesToGo ?? 0)
  const rate = sum((d) => d.rateBytesPerSecond)
  const weighted = all.filter((d) => d.assetsToGo > 0)
  return {
    assetsToGo,
    bytesToGo,
    bytesToGoEstimated: all.some((d) => d.bytesToGoEstimated),
    assetsDone: sum((d) => d.assetsDone),
    bytesDone: sum((d) => d.bytesDone),
    rateBytesPerSecond: rate,
    etaSeconds: bytesToGo !== undefined && bytesToGo > 0 && rate >= 1 ? Math.ceil(bytesToGo / rate) : undefined,
    percent: weighted.length === 0 ? 100 : Math.floor((10 * weighted.reduce((n, d) => n + d.percent, 0)) / weighted.length) / 10
  }
}

const stateOf = (
  session: SessionView | undefined,
  signaling: SignalingView,
  received: Counts,
  sent: Counts
): { readonly state: PeerState; readonly refused: PeerStatus["refused"] } => {
  const none = { refused: undefined }
  if (session === undefined) return { state: signaling.state === "registered" ? "connecting" : "waiting-for-signaling", ...none }
  switch (session.state) {
    case "live":
      return { state: received.assetsToGo > 0 || sent.assetsToGo > 0 ? "transferring" : "live", ...none }
    case "handshake":
    case "reconciling":
      // the first wants are served before the reconcile is over: once assets move, that is what to show
      return { state: received.assetsToGo > 0 || sent.assetsToGo > 0 ? "transferring" : "reconciling", ...none }
    case "connecting":
      return { state: signaling.state === "registered" ? "connecting" : "waiting-for-signaling", ...none }
    case "backoff":
      if (session.lastFailure === "refused-by-us" || session.lastFailure === "refused-by-peer") {
        const by = session.lastFailure === "refused-by-us" ? "us" : "peer"
        return { state: "refused", refused: { by, reason: session.lastError ?? "refused" } }
      }
      if (session.lastFailure === "no-signaling" || signaling.state !== "registered") return { state: "waiting-for-signaling", ...none }
      return { state: "backoff", ...none }
  }
}

/** Bytes as people read them (SI units), for the events' text. */
const size = (bytes: number): string => {
  const units = ["B", "kB", "MB", "GB", "TB"]
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/**
 * The stateful part of the model: rate meters, when each state began, and recent events. `update`
 * with `tick: true` advances rates and records events (once per TICK); without, it only reads.
 */
export const makeTracker = (now: number) => {
  const meters = new Map<string, Meter>()
  const states = new Map<PeerId, { state: PeerState; since: number; errorAt: number | undefined; error: string | undefined }>()
  let signalingState: SignalingView["state"] | undefined
  const events: Array<StatusEvent> = []
  const startedAt = now
  const record = (event: StatusEvent) => {
    events.push(event)
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS)
  }

  const update = (input: Input, at: number, tick: boolean): AgentStatus => {
    const byPeer = new Map(input.sessions.map((s) => [s.peer, s]))
    const configured = [...input.peers, ...input.sessions.map((s) => s.peer).filter((p) => !input.peers.includes(p))]
    if (tick && signalingState !== input.signaling.state) {
      if (signalingState !== undefined || input.signaling.state === "failing") {
        const why = input.signaling.state === "failing" && input.signaling.lastError !== undefined ? `: ${input.signaling.lastError}` : ""
        record({ at, peer: undefined, kind: input.signaling.state === "failing" ? "error" : "state", text: `signaling ${input.signaling.state}${why}` })
      }
      signalingState = input.signaling.state
    }
    const peers = configured.map((peer): PeerStatus => {
      const session = byPeer.get(peer)
      const stats = session?.stats
      const received = stats === undefined ? receivedCounts(emptyStats) : receivedCounts(stats)
      const sent = stats === undefined ? sentCounts(emptyStats) : sentCounts(stats)
      const meter = (direction: string, c: Counts) => {
        const key = `${peer} ${direction}`
        let m = meters.get(key)
        if (m === undefined) {
          m = newMeter(startedAt, c)
          meters.set(key, m)
        }
        const assetsBefore = m.assets
        const bytesBefore = m.assetBytes
        if (tick) {
          advance(m, c, at)
          if (c.assetsDone > assetsBefore) {
            const n = c.assetsDone - assetsBefore
            record({
              at,
              peer,
              kind: "transfer",
              text: `${direction} ${n} asset${n === 1 ? "" : "s"} (${size(Math.max(0, c.assetBytesDone - bytesBefore))})`
            })
          }
        }
        return progress(c, m)
      }
      const { state, refused } = stateOf(session, input.signaling, received, sent)
      const previous = states.get(peer)
      const errorAt = session?.lastErrorAt
      if (tick) {
        // retries of a peer that is away (connecting, backoff, connecting, ...) are not news
        const away = (x: PeerState) => x === "connecting" || x === "backoff" || x === "waiting-for-signaling"
        if (previous !== undefined && previous.state !== state && !(away(previous.state) && away(state))) {
          record({ at, peer, kind: "state", text: refused === undefined ? state : `refused by ${refused.by}: ${refused.reason}` })
        }
        // each new error once (a peer offline for an hour fails the same way at every retry)
        if (errorAt !== undefined && errorAt !== previous?.errorAt && session?.lastError !== undefined && session.lastError !== previous?.error) {
          record({ at, peer, kind: "error", text: session.lastError })
        }
      }
      const since = previous === undefined ? at : previous.state === state ? previous.since : at
      if (tick || previous === undefined) states.set(peer, { state, since, errorAt, error: session?.lastError ?? previous?.error })
      const link = input.links.get(peer)
      const sessions = stats?.sessions ?? 0
      const inSession = session?.state === "live" || session?.state === "reconciling" || session?.state === "handshake"
      return {
        peer,
        state,
        sessionState: session?.state,
        since,
        connection: inSession ? "connected" : sessions > 0 ? "dropped" : "never-connected",
        role: session?.role,
        nextRetryAt: session?.state === "backoff" ? session.nextRetryAt : undefined,
        refused,
        path: link === undefined || !inSession ? undefined : { kind: link.kind, rttMillis: link.rttMillis, lanes: link.lanes },
        lastError: session?.lastError !== undefined && session.lastErrorAt !== undefined
          ? { message: session.lastError, at: session.lastErrorAt }
          : undefined,
        sessions,
        restarts: session?.restarts ?? 0,
        received: meter("received", received),
        sent: meter("sent", sent)
      }
    })
    return {
      at,
      version: input.version,
      peerId: input.peerId,
      signaling: input.signaling,
      store: input.store,
      peers,
      totals: { received: total(peers.map((p) => p.received)), sent: total(peers.map((p) => p.sent)) },
      recent: [...events]
    }
  }
  return { update }
}


/** Where a tick reads from (each read may fail or be slow; a failed read is shown as unknown). */
export interface Sources {
  readonly version: string
  readonly peerId: PeerId
  readonly peers: ReadonlyArray<PeerId>
  readonly sessions: Effect.Effect<ReadonlyArray<SessionView>>
  readonly links: Effect.Effect<ReadonlyMap<PeerId, LinkView>>
  readonly signaling: Effect.Effect<SignalingView>
  readonly store: Effect.Effect<StoreView | undefined>
}

export interface StatusShape {
  /** The model now: counters read fresh, rates as of the last tick. */
  readonly current: Effect.Effect<AgentStatus>
  /** The model at each tick (TICK), starting with the latest. */
  readonly changes: Stream.Stream<AgentStatus>
}

/** The agent's status for the life of the scope: a tick every TICK advances the rates and publishes the model. */
export const make = Effect.fn("Status.make")(function*(sources: Sources): Effect.fn.Return<StatusShape, never, Scope.Scope> {
  const tracker = makeTracker(yield* Clock.currentTimeMillis)
  const read = Effect.all({
    sessions: sources.sessions,
    links: sources.links,
    signaling: sources.signaling,
    store: sources.store.pipe(Effect.catchCause(() => Effect.succeed(undefined)))
  })
  const sample = (tick: boolean) =>
    Effect.gen(function*() {
      const { sessions, links, signaling, store } = yield* read
      const now = yield* Clock.currentTimeMillis
      return tracker.update({ version: sources.version, peerId: sources.peerId, peers: sources.peers, sessions, links, signaling, store }, now, tick)
    })
  const ref = yield* SubscriptionRef.make(yield* sample(true))
  yield* Effect.forkScoped(
    sample(true).pipe(Effect.flatMap((s) => SubscriptionRef.set(ref, s)), Effect.repeat(Schedule.spaced(TICK)), Effect.delay(TICK))
  )
  return { current: sample(false), changes: SubscriptionRef.changes(ref) }
})
