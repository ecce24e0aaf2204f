/**
 * One allowed peer as the transport sees it: the attempt in flight, the link open, the newest
 * offer kept for the next connect, the attempt ids it used. `connect` makes one attempt; the
 * transport routes the peer's verified signals here, one at a time. Retrying is the caller's.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { describeLinkCloseReason, LinkCloseReason, Metrics } from "@can-sync/core"
import type { LinkClosed, PeerId } from "@can-sync/core"
import { SeenIds } from "./AttemptIds.ts"
import * as ConnectAttempt from "./ConnectAttempt.ts"
import { ConnectFailed, ConnectFailedReason } from "./ConnectAttempt.ts"
import type { AttemptInput, AttemptLink, AttemptParams } from "./ConnectAttempt.ts"
import type { PeerIdentity } from "./Identity.ts"
import * as Lanes from "./Lanes.ts"
import type { RtcOptions } from "./Native.ts"
import * as Signal from "./Signal.ts"
import type { VerifiedSignal } from "./Signal.ts"
import type { SignalingClient } from "./Signaling.ts"
import type { LinkOptions, WebRtcLink } from "./WebRtcLink.ts"
import { RTT_PROBES } from "./WebRtcLink.ts"

export interface SlotConfig {
  readonly identity: PeerIdentity
  readonly signaling: SignalingClient
  readonly signalingUrl: string
  readonly rtc: RtcOptions
  readonly link: LinkOptions
  readonly connectTimeout: Duration.Duration
  /** Ids for our attempts and knocks (one issuer for the whole transport). */
  readonly nextSid: () => string
  /** Striping (Lanes.ts): at most `max` lanes per link (1: never stripe); `count` fixes the count instead of choosing it from the RTT. */
  readonly lanes: LaneConfig
}

export interface LaneConfig {
  readonly max: number
  readonly count?: number | undefined
}

export interface PeerSlot {
  /** One attempt at an authenticated link (see TransportShape.connect). */
  readonly connect: Effect.Effect<WebRtcLink, ConnectFailed, Scope.Scope>
  /** Completes when the peer asks for a link: it knocked (we offer) or offered (we answer). */
  readonly wake: Effect.Effect<void>
  readonly onSignal: (signal: VerifiedSignal) => Effect.Effect<void>
  /** The signaling server could not deliver our signal `ref`. */
  readonly onUndeliverable: (ref: string) => Effect.Effect<void>
  /** Lanes of the open link (undefined: no link open). */
  readonly lanes: Effect.Effect<number | undefined>
}

/** The `errors` metric kind of a closed link (undefined: an orderly close, not an error). */
export const linkErrorKind = (reason: LinkCloseReason): string | undefined => {
  switch (reason._tag) {
    case "ClosedLocally":
    case "ClosedByPeer":
    case "Replaced":
      return undefined
    case "HeartbeatTimeout":
      return "heartbeat"
    case "AuthFailed":
      return "auth"
    case "LinkProtocolViolation":
      return "protocol"
    case "ConnectionLost":
      return "link"
  }
}

/** The `errors` metric kind of a failed connect (undefined: not an error). */
export const connectErrorKind = (reason: ConnectFailedReason): string | undefined => {
  switch (reason._tag) {
    case "Busy":
    case "NotAllowed":
      return undefined
    case "AuthFailed":
      return "auth"
    case "ClosedEarly": {
      const kind = linkErrorKind(reason.reason)
      return kind === undefined || kind === "link" ? "connect" : kind
    }
    default:
      return "connect"
  }
}

const failed = (peer: PeerId, reason: ConnectFailedReason) => new ConnectFailed({ peer, reason })

/**
 * Lane attempts in flight at once. At 100 ms a lane takes ~0.7 s (signaling, ICE, DTLS, SCTP,
 * AuthProof): with 3 at once all 32 lanes were open 10 s after the link, with 16 after 2.3 s
 * (bench/wan.ts, lanesUpSeconds). Each costs a handful of signaling relays: one peer's lanes stay
 * well inside the server's per-connection rate (Signaling.ts); an agent dialing many long-path
 * peers at once is slowed by its signaling client, which paces relays under the rate the server
 * announces, rather than having relays dropped.
 */
const LANE_ATTEMPTS_AT_ONCE = 16

export const make = Effect.fnUntraced(function*(peer: PeerId, config: SlotConfig) {
  const { identity, signaling } = config
  const context = yield* Effect.context<never>()
  const clock = yield* Clock.Clock
  const weOffer = identity.peerId < peer
  const timeoutMillis = Duration.toMillis(config.connectTimeout)
  const seen = new SeenIds()
  // a striped frame carries its sequence number: a link that may stripe takes frames that much larger
  const linkOptions: LinkOptions = config.lanes.max > 1 ? { ...config.link, maxFrameBytes: config.link.maxFrameBytes + Lanes.SEQ_BYTES } : config.link

  // All state below changes only in synchronous steps (Effect.sync, native callbacks).
  let busy = false
  let inFlight: { readonly sid: string; readonly inbox: Queue.Queue<AttemptInput>; answered: boolean } | undefined
  let open: {
    readonly sid: string
    readonly link: WebRtcLink
    /** set when the link is striped: where its extra lanes live, and the lane offers already answered */
    readonly striped?: { readonly link: Lanes.StripedLink; readonly scope: Scope.Scope; readonly laneSids: Set<string> }
  } | undefined
  /** Lane attempts in flight (either side), by attempt id: their signals go here. */
  const laneInboxes = new Map<string, Queue.Queue<AttemptInput>>()
  let kept: { readonly offer: VerifiedSignal; readonly at: number } | undefined
  let waiter: { readonly sid: string; readonly offer: Deferred.Deferred<VerifiedSignal, ConnectFailed> } | undefined
  let knocked = false
  let wakeSignal = Deferred.makeUnsafe<void>()

  const fireWake = () => {
    const woken = wakeSignal
    wakeSignal = Deferred.makeUnsafe<void>()
    Deferred.doneUnsafe(woken, Effect.void)
  }

  const runLogged = (effect: Effect.Effect<void>) =>
    Effect.runForkWith(context)(Effect.annotateLogs(effect, { peer }))

  /** Called by the link itself, synchronously, as it closes. */
  const onClosed = (sid: string) => (closed: LinkClosed, authenticated: boolean) => {
    if (open?.sid === sid) open = undefined
    if (!authenticated) return
    const kind = linkErrorKind(closed.reason)
    runLogged(Effect.andThen(
      Effect.logInfo(`transport: link to ${peer} closed: ${describeLinkCloseReason(closed.reason)}`),
      kind === undefined ? Effect.void : Metrics.recordError(kind)
    ))
  }

  const attempt = (sid: string, offer: VerifiedSignal | undefined) =>
    Effect.gen(function*() {
      const inbox = yield* Queue.bounded<AttemptInput>(64)
      const current = { sid, inbox, answered: false }
      inFlight = current
      const params: AttemptParams = {
        identity,
        remotePeer: peer,
        sid,
        rtc: config.rtc,
        link: linkOptions,
        inbox,
        signal: (kind, body) => signaling.send(peer, Signal.sign(identity, peer, kind, sid, body), sid),
        onClosed: onClosed(sid),
        lanes: { max: config.lanes.max }
      }
      const attempted = yield* (offer === undefined ? ConnectAttempt.offer(params) : ConnectAttempt.answer(params, offer)).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (inFlight === current) inFlight = undefined
        }))
      )
      yield* Effect.logInfo(`transport: connected to ${peer} (${weOffer ? "we offered" : "they offered"})`)
      if (config.lanes.max <= 1 || attempted.remoteLanes <= 1) {
        open = { sid, link: attempted }
        return attempted as WebRtcLink
      }
      // both sides can stripe: the engine gets the striped link; the offerer opens more lanes as the path asks
      const scope = yield* Scope.Scope
      const max = Math.min(config.lanes.max, attempted.remoteLanes)
      const striped = yield* Lanes.make(attempted, (count) =>
        count > 1 ? Effect.logInfo(`transport: link to ${peer} now has ${count} lanes`) : Effect.void)
      open = { sid, link: striped, striped: { link: striped, scope, laneSids: new Set() } }
      if (weOffer) yield* Effect.forkIn(grow(sid, attempted, striped, scope, max), scope)
      return striped as WebRtcLink
    })

  /**
   * The round trip of a fresh link: the shortest of its first heartbeats, its RTT probes (a busy
   * host delays some), or of those that came back within 6 s (undefined if none did).
   */
  const firstRtt = (link: WebRtcLink) =>
    link.stats.pipe(
      Effect.flatMap((s) => (s.pongsReceived < RTT_PROBES ? Effect.fail("fewer pongs") : Effect.succeed(s.minRttMillis))),
      Effect.retry(Schedule.spaced("100 millis")),
      Effect.timeoutOption("6 seconds"),
      Effect.flatMap((rtt) => (Option.isSome(rtt) ? Effect.succeed(rtt.value) : Effect.map(link.stats, (s) => s.minRttMillis)))
    )

  /** The offerer: as many lanes as the path asks for (or as configured), each one attempt. */
  const grow = (sid: string, primary: AttemptLink, striped: Lanes.StripedLink, scope: Scope.Scope, max: number) =>
    Effect.gen(function*() {
      const rtt = yield* firstRtt(primary)
      // one host (loopback) never needs lanes, whatever a loaded machine's round trips say
      const target = config.lanes.count !== undefined
        ? Math.min(config.lanes.count, max)
        : rtt === undefined || primary.sameHost
        ? 1
        : Lanes.lanesFor(rtt, max)
      yield* Effect.logInfo(`transport: link to ${peer}: round trip ${rtt === undefined ? "unknown" : `${rtt} ms`}${primary.sameHost ? " on one host" : ""}, ${target} lane${target === 1 ? "" : "s"} (at most ${max})`)
      yield* Effect.forEach(
        Array.from({ length: target - 1 }, (_, i) => i),
        () => laneAttempt(config.nextSid(), undefined, sid, striped, scope, max),
        { concurrency: LANE_ATTEMPTS_AT_ONCE, discard: true }
      )
    })

  /** One more lane of `striped`: we offer (`offer` undefined) or answer the peer's lane offer. */
  const laneAttempt = (laneSid: string, offer: VerifiedSignal | undefined, linkSid: string, striped: Lanes.StripedLink, linkScope: Scope.Scope, max: number) =>
    Effect.gen(function*() {
      const inbox = yield* Queue.bounded<AttemptInput>(64)
      laneInboxes.set(laneSid, inbox)
      const scope = yield* Scope.fork(linkScope)
      const params: AttemptParams = {
        identity,
        remotePeer: peer,
        sid: laneSid,
        rtc: config.rtc,
        link: Lanes.laneLinkOptions(linkOptions),
        inbox,
        signal: (kind, body) => signaling.send(peer, Signal.sign(identity, peer, kind, laneSid, body), laneSid),
        lanes: { max, laneOf: linkSid },
        reportPath: false
      }
      const lane = yield* (offer === undefined ? ConnectAttempt.offer(params) : ConnectAttempt.answer(params, offer)).pipe(
        Scope.provide(scope),
        Effect.timeoutOrElse({
          duration: config.connectTimeout,
          orElse: () => Effect.fail(failed(peer, ConnectFailedReason.cases.Timeout.make({ millis: timeoutMillis })))
        }),
        Effect.onExit((exit) => (exit._tag === "Failure" ? Scope.close(scope, exit) : Effect.void)),
        Effect.ensuring(Effect.sync(() => laneInboxes.delete(laneSid)))
      )
      yield* striped.addLane(lane)
    }).pipe(
      Effect.catchTag("ConnectFailed", (e) => Effect.logInfo(`transport: one more lane to ${peer}: ${e.message}`)),
      Effect.annotateLogs({ peer })
    )

  /** The answering side: the newest offer kept, if still fresh, else knock and wait for one. */
  const nextOffer = Effect.suspend(() => {
    const fresh = kept !== undefined && clock.currentTimeMillisUnsafe() - kept.at < timeoutMillis ? kept.offer : undefined
    kept = undefined
    if (fresh !== undefined) return Effect.succeed(fresh)
    const sid = config.nextSid()
    const offer = Deferred.makeUnsafe<VerifiedSignal, ConnectFailed>()
    waiter = { sid, offer }
    return signaling.send(peer, Signal.sign(identity, peer, "knock", sid, ""), sid).pipe(
      Effect.catchTag("SignalingUnavailable", (e) =>
        Effect.fail(failed(peer, ConnectFailedReason.cases.SignalingUnavailable.make({ url: e.url })))),
      Effect.andThen(Effect.logDebug(`transport: knocked on ${peer}`)),
      Effect.andThen(Deferred.await(offer)),
      Effect.ensuring(Effect.sync(() => {
        if (waiter?.offer === offer) waiter = undefined
      }))
    )
  })

  const once = Effect.gen(function*() {
    yield* signaling.registered
    if (weOffer) {
      knocked = false
      return yield* attempt(config.nextSid(), undefined)
    }
    const offer = yield* nextOffer
    return yield* attempt(offer.sid, offer)
  })

  const whyTimedOut = Effect.map(signaling.isRegistered, (registered) =>
    failed(
      peer,
      registered
        ? ConnectFailedReason.cases.Timeout.make({ millis: timeoutMillis })
        : ConnectFailedReason.cases.SignalingUnavailable.make({ url: config.signalingUrl })
    ))

  /** One attempt in the attempt's own scope: closed at once if it fails, else with the caller's. */
  const attemptScoped = Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Scope.Scope)
    return yield* once.pipe(
      Scope.provide(scope),
      Effect.timeoutOrElse({ duration: config.connectTimeout, orElse: () => Effect.flip(whyTimedOut) }),
      Effect.onExit((exit) => (exit._tag === "Failure" ? Scope.close(scope, exit) : Effect.void)),
      Effect.tapError((e) => {
        const kind = connectErrorKind(e.reason)
        return Effect.andThen(
          Effect.logInfo(`transport: ${e.message}`),
          kind === undefined ? Effect.void : Metrics.recordError(kind)
        )
      })
    )
  })

  // `busy` is taken and its release installed in one uninterruptible step
  const connect: Effect.Effect<WebRtcLink, ConnectFailed, Scope.Scope> = Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      if (busy) return Effect.fail(failed(peer, ConnectFailedReason.cases.Busy.make({})))
      busy = true
      return restore(attemptScoped).pipe(Effect.ensuring(Effect.sync(() => {
        busy = false
      })))
    })
  ).pipe(Effect.annotateLogs({ peer }))

  const replaceOpen = (why: string) =>
    Effect.suspend(() => {
      const current = open
      if (current === undefined) return Effect.void
      open = undefined
      return Effect.andThen(
        Effect.logInfo(`transport: ${peer} ${why}: the older link is replaced`),
        current.link.closeBecause(LinkCloseReason.cases.Replaced.make({}))
      )
    })

  /** A lane offer: answered in the scope of the open link it names, if that link is striped and has room. */
  const onLaneOffer = (signal: VerifiedSignal, linkSid: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const striped = open?.sid === linkSid ? open.striped : undefined
      if (striped === undefined) return Effect.logDebug(`transport: ignored a lane offer from ${peer} for link ${linkSid}: not the open striped link`)
      const max = Math.min(config.lanes.max, Lanes.lanesOf(signal.body, "offerer"))
      if (striped.laneSids.has(signal.sid) || striped.laneSids.size + 1 >= max) {
        return Effect.logDebug(`transport: ignored lane offer ${signal.sid} from ${peer}: repeated, or ${max} lanes already`)
      }
      striped.laneSids.add(signal.sid)
      return Effect.asVoid(Effect.forkIn(laneAttempt(signal.sid, signal, linkSid, striped.link, striped.scope, max), striped.scope))
    })

  const onOffer = (signal: VerifiedSignal): Effect.Effect<void> => {
    if (weOffer) return Effect.logWarning(`transport: ignored an offer from ${peer}: the lower peer id makes the offers`)
    const linkSid = Lanes.laneOf(signal.body)
    if (linkSid !== undefined) return onLaneOffer(signal, linkSid)
    if (!seen.accept(signal.sid)) return Effect.logDebug(`transport: ignored a stale offer ${signal.sid} from ${peer}`)
    return Effect.andThen(
      Effect.andThen(Effect.logDebug(`transport: ${peer} offered (${signal.sid})`), replaceOpen("offered again")),
      Effect.sync(() => {
        if (inFlight !== undefined) Queue.offerUnsafe(inFlight.inbox, { _tag: "Superseded" })
        if (waiter !== undefined) {
          Deferred.doneUnsafe(waiter.offer, Effect.succeed(signal))
          waiter = undefined
        } else {
          kept = { offer: signal, at: clock.currentTimeMillisUnsafe() }
        }
        fireWake()
      })
    )
  }

  const onKnock = (signal: VerifiedSignal): Effect.Effect<void> => {
    if (!weOffer || !seen.accept(signal.sid)) return Effect.void
    return Effect.andThen(
      replaceOpen("knocked"),
      Effect.sync(() => {
        // an unanswered offer is on its way to the peer: let it arrive; an answered one it gave up
        if (inFlight?.answered === true) Queue.offerUnsafe(inFlight.inbox, { _tag: "Superseded" })
        if (!busy) knocked = true
        fireWake()
      })
    )
  }

  /**
   * The peer refused our offer or knock: we are not on its allow-list. The attempt it names fails
   * at once (RefusedByPeer) instead of timing out, and the operator reads why.
   */
  const onRefused = (signal: VerifiedSignal): Effect.Effect<void> =>
    Effect.suspend(() => {
      const attempt = inFlight?.sid === signal.sid ? inFlight : undefined
      const knock = waiter?.sid === signal.sid ? waiter : undefined
      if (attempt === undefined && knock === undefined) return Effect.void
      if (attempt !== undefined) Queue.offerUnsafe(attempt.inbox, { _tag: "Refused" })
      if (knock !== undefined) Deferred.doneUnsafe(knock.offer, Effect.fail(failed(peer, ConnectFailedReason.cases.RefusedByPeer.make({}))))
      return Effect.logWarning(`transport: peer ${peer} refused us: we are not on its allow-list (add ${config.identity.peerId} to its --peer list)`)
    })

  const onSignal = (signal: VerifiedSignal): Effect.Effect<void> => {
    switch (signal.kind) {
      case "offer":
        return onOffer(signal)
      case "knock":
        return onKnock(signal)
      case "refused":
        return onRefused(signal)
      case "answer":
      case "candidate":
        return Effect.sync(() => {
          const lane = laneInboxes.get(signal.sid)
          if (lane !== undefined) return void Queue.offerUnsafe(lane, { _tag: "Signal", signal })
          if (inFlight === undefined || inFlight.sid !== signal.sid) return
          if (signal.kind === "answer") inFlight.answered = true
          Queue.offerUnsafe(inFlight.inbox, { _tag: "Signal", signal })
        })
    }
  }

  const onUndeliverable = (ref: string) =>
    Effect.sync(() => {
      const lane = laneInboxes.get(ref)
      if (lane !== undefined) Queue.offerUnsafe(lane, { _tag: "Undeliverable" })
      if (inFlight !== undefined && inFlight.sid === ref) Queue.offerUnsafe(inFlight.inbox, { _tag: "Undeliverable" })
      if (waiter !== undefined && waiter.sid === ref) {
        Deferred.doneUnsafe(waiter.offer, Effect.fail(failed(peer, ConnectFailedReason.cases.PeerUnreachable.make({}))))
      }
    })

  const wake = Effect.suspend(() => (kept !== undefined || knocked ? Effect.void : Deferred.await(wakeSignal)))

  const lanes = Effect.sync(() => (open === undefined ? undefined : open.striped?.link.laneCount() ?? 1))

  const slot: PeerSlot = { connect, wake, onSignal, onUndeliverable, lanes }
  return slot
})
