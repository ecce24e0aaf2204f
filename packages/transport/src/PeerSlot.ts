/**
 * One allowed peer as the transport sees it: the attempt in flight, the link open, the newest
 * offer kept for the next connect, the attempt ids it used. `connect` makes one attempt; the
 * transport routes the peer's verified signals here, one at a time. Retrying is the caller's.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { describeLinkCloseReason, LinkCloseReason, Metrics } from "@can-sync/core"
import type { LinkClosed, PeerId } from "@can-sync/core"
import { SeenIds } from "./AttemptIds.ts"
import * as ConnectAttempt from "./ConnectAttempt.ts"
import { ConnectFailed, ConnectFailedReason } from "./ConnectAttempt.ts"
import type { AttemptInput, AttemptParams } from "./ConnectAttempt.ts"
import type { PeerIdentity } from "./Identity.ts"
import type { RtcOptions } from "./Native.ts"
import * as Signal from "./Signal.ts"
import type { VerifiedSignal } from "./Signal.ts"
import type { SignalingClient } from "./Signaling.ts"
import type { LinkOptions, WebRtcLink } from "./WebRtcLink.ts"

export interface SlotConfig {
  readonly identity: PeerIdentity
  readonly signaling: SignalingClient
  readonly signalingUrl: string
  readonly rtc: RtcOptions
  readonly link: LinkOptions
  readonly connectTimeout: Duration.Duration
  /** Ids for our attempts and knocks (one issuer for the whole transport). */
  readonly nextSid: () => string
}

export interface PeerSlot {
  /** One attempt at an authenticated link (see TransportShape.connect). */
  readonly connect: Effect.Effect<WebRtcLink, ConnectFailed, Scope.Scope>
  /** Completes when the peer asks for a link: it knocked (we offer) or offered (we answer). */
  readonly wake: Effect.Effect<void>
  readonly onSignal: (signal: VerifiedSignal) => Effect.Effect<void>
  /** The signaling server could not deliver our signal `ref`. */
  readonly onUndeliverable: (ref: string) => Effect.Effect<void>
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

export const make = Effect.fnUntraced(function*(peer: PeerId, config: SlotConfig) {
  const { identity, signaling } = config
  const context = yield* Effect.context<never>()
  const clock = yield* Clock.Clock
  const weOffer = identity.peerId < peer
  const timeoutMillis = Duration.toMillis(config.connectTimeout)
  const seen = new SeenIds()

  // All state below changes only in synchronous steps (Effect.sync, native callbacks).
  let busy = false
  let inFlight: { readonly sid: string; readonly inbox: Queue.Queue<AttemptInput>; answered: boolean } | undefined
  let open: { readonly sid: string; readonly link: WebRtcLink } | undefined
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
        link: config.link,
        inbox,
        signal: (kind, body) => signaling.send(peer, Signal.sign(identity, peer, kind, sid, body), sid),
        onClosed: onClosed(sid)
      }
      const link = yield* (offer === undefined ? ConnectAttempt.offer(params) : ConnectAttempt.answer(params, offer)).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (inFlight === current) inFlight = undefined
        }))
      )
      open = { sid, link }
      yield* Effect.logInfo(`transport: connected to ${peer} (${weOffer ? "we offered" : "they offered"})`)
      return link
    })

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

  const onOffer = (signal: VerifiedSignal): Effect.Effect<void> => {
    if (weOffer) return Effect.logWarning(`transport: ignored an offer from ${peer}: the lower peer id makes the offers`)
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

  const onSignal = (signal: VerifiedSignal): Effect.Effect<void> => {
    switch (signal.kind) {
      case "offer":
        return onOffer(signal)
      case "knock":
        return onKnock(signal)
      case "answer":
      case "candidate":
        return Effect.sync(() => {
          if (inFlight === undefined || inFlight.sid !== signal.sid) return
          if (signal.kind === "answer") inFlight.answered = true
          Queue.offerUnsafe(inFlight.inbox, { _tag: "Signal", signal })
        })
    }
  }

  const onUndeliverable = (ref: string) =>
    Effect.sync(() => {
      if (inFlight !== undefined && inFlight.sid === ref) Queue.offerUnsafe(inFlight.inbox, { _tag: "Undeliverable" })
      if (waiter !== undefined && waiter.sid === ref) {
        Deferred.doneUnsafe(waiter.offer, Effect.fail(failed(peer, ConnectFailedReason.cases.PeerUnreachable.make({}))))
      }
    })

  const wake = Effect.suspend(() => (kept !== undefined || knocked ? Effect.void : Deferred.await(wakeSignal)))

  const slot: PeerSlot = { connect, wake, onSignal, onUndeliverable }
  return slot
})
