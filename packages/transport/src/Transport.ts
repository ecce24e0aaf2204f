/**
 * The Transport service: keeps one authenticated WebRTC link with every allowed peer, handed to
 * the engine through `links`, and re-establishes it with backoff whenever it closes. The lower
 * peer id always offers; the higher one knocks ("please offer") when it has no link, so there is
 * one connection per pair. Bad signatures and peers off the allow-list get a log line, no answer.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberHandle from "effect/FiberHandle"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { Metrics } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import { Identity, isPeerId } from "./Identity.ts"
import * as Native from "./Native.ts"
import type { RtcOptions } from "./Native.ts"
import * as Session from "./Session.ts"
import type { SessionInput } from "./Session.ts"
import * as Signal from "./Signal.ts"
import type { VerifiedSignal } from "./Signal.ts"
import * as Signaling from "./Signaling.ts"
import * as WebRtcLink from "./WebRtcLink.ts"
import type { LinkOptions } from "./WebRtcLink.ts"

export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: Schema.String
}) {}

export interface TransportConfig {
  /** ws:// or wss:// URL of the signaling server. */
  readonly signalingUrl: string
  /** The allow-list: only these peers may connect, and the transport keeps a link to each. */
  readonly peers: ReadonlyArray<string>
  /** STUN/TURN servers, bind address, port range, MTU. None are needed on loopback or a LAN. */
  readonly rtc?: RtcOptions | undefined
  readonly link?: Partial<LinkOptions> | undefined
  /** Deadline for one connection attempt (signaling, ICE, DTLS, AuthProofs). Default 15 s. */
  readonly connectTimeout?: Duration.Input | undefined
  /** First retry delay in ms (default 500); doubles per failure, with jitter, up to `maxReconnectDelay` (30 s). */
  readonly reconnectDelay?: number | undefined
  readonly maxReconnectDelay?: number | undefined
}

export interface TransportShape {
  /** Our own peer id. */
  readonly self: PeerId
  /**
   * Every authenticated link with an allowed peer, whichever side connected. At most one link per
   * peer is live: a newer one for the same peer replaces (closes) the older. When a link closes,
   * for whatever reason, the transport reconnects; the consumer just runs one session per link.
   * One consumer.
   */
  readonly links: Stream.Stream<WebRtcLink.WebRtcLink>
  /** Completes once registered with the signaling server (again after it restarts). */
  readonly registered: Effect.Effect<void>
  /** How many times we have registered with the signaling server (reconnects count). */
  readonly registrations: Effect.Effect<number>
}

type SlotEvent =
  | { readonly _tag: "Signal"; readonly signal: VerifiedSignal }
  | { readonly _tag: "Undeliverable"; readonly sid: string }
  | { readonly _tag: "Ended"; readonly sid: string; readonly linkedFor: number | undefined; readonly reason: string }
  | { readonly _tag: "Timer"; readonly generation: number }

/** The `errors` metric kind for why a link closed or an attempt failed (undefined: not an error). */
const errorKind = (reason: string): string | undefined =>
  reason.startsWith("heartbeat timeout")
    ? "heartbeat"
    : reason.startsWith("protocol violation")
    ? "protocol"
    : reason.startsWith("authentication failed")
    ? "auth"
    : reason.startsWith("closed") || reason === "interrupted"
    ? undefined
    : "link"

/** A link that stayed up this long resets the backoff. */
const STABLE_LINK_MILLIS = 10_000

/** Session ids: "<boot ms>.<counter>", ordered, so a replayed (older) offer or knock is ignored. */
const makeSids = () => {
  const boot = Date.now()
  let counter = 0
  return () => `${boot}.${++counter}`
}
const sidOrder = (sid: string): readonly [number, number] => {
  const [boot, counter] = sid.split(".").map(Number)
  return [Number.isFinite(boot) ? boot! : -1, Number.isFinite(counter) ? counter! : -1]
}
const isNewer = (sid: string, than: string | undefined): boolean => {
  if (than === undefined) return true
  const [a, b] = sidOrder(sid)
  const [c, d] = sidOrder(than)
  return a > c || (a === c && b > d)
}

const make = Effect.fn("Transport.make")(function*(config: TransportConfig) {
  const identity = yield* Identity
  const self = identity.peerId
  // acquired first so that it is released last: cleanup() runs after every connection closed
  yield* Native.useLibrary

  const linkOptions: LinkOptions = { ...WebRtcLink.defaultLinkOptions, ...config.link }
  const invalidOptions = WebRtcLink.checkOptions(linkOptions)
  if (invalidOptions !== undefined) return yield* new TransportError({ reason: `link options: ${invalidOptions}` })
  for (const peer of config.peers) {
    if (!isPeerId(peer)) return yield* new TransportError({ reason: `not a peer id: "${peer}"` })
  }
  const allowed = new Set(config.peers.filter((peer): peer is PeerId => peer !== self))
  const rtc = config.rtc ?? {}
  const connectTimeout = config.connectTimeout ?? "15 seconds"
  const baseDelay = config.reconnectDelay ?? 500
  const maxDelay = config.maxReconnectDelay ?? 30_000
  const nextSid = makeSids()

  const signaling = yield* Signaling.connect({ url: config.signalingUrl, identity })
  const links = yield* Queue.bounded<WebRtcLink.WebRtcLink, Cause.Done>(16)
  yield* Effect.addFinalizer(() => Queue.end(links))
  const mailboxes = new Map<PeerId, Queue.Queue<SlotEvent>>()
  for (const peer of allowed) mailboxes.set(peer, yield* Queue.bounded<SlotEvent>(64))

  /** One peer's connection state machine; all its decisions are taken here, one event at a time. */
  const runSlot = (peer: PeerId, mailbox: Queue.Queue<SlotEvent>) =>
    Effect.gen(function*() {
      const weOffer = self < peer
      const sessionFiber = yield* FiberHandle.make<void, never>()
      const timerFiber = yield* FiberHandle.make<void, never>()
      let current: { readonly sid: string; readonly inbox: Queue.Queue<SessionInput>; answered: boolean } | undefined
      let failures = 0
      let timerGeneration = 0
      let lastOfferSid: string | undefined
      let lastKnockAt = 0

      /** The next attempt, after `delay` and once registered with signaling (no point before). */
      const schedule = (delay: number) =>
        Effect.suspend(() => {
          const generation = ++timerGeneration
          return FiberHandle.run(timerFiber)(
            Effect.sleep(delay).pipe(
              Effect.andThen(signaling.registered),
              Effect.andThen(Queue.offer(mailbox, { _tag: "Timer", generation }))
            )
          )
        })

      const session = (sid: string, inbox: Queue.Queue<SessionInput>, offer: VerifiedSignal | undefined) => {
        let linkedAt: number | undefined
        let reason = "interrupted"
        const params: Session.SessionParams = {
          identity,
          remotePeer: peer,
          sid,
          rtc,
          link: linkOptions,
          timeout: connectTimeout,
          inbox,
          signal: (kind, body) => signaling.send(peer, Signal.sign(identity, peer, kind, sid, body), sid)
        }
        return Effect.gen(function*() {
          const link = yield* (offer === undefined ? Session.offer(params) : Session.answer(params, offer))
          linkedAt = Date.now()
          yield* Effect.logInfo(`transport: connected to ${peer} (${weOffer ? "we offered" : "they offered"})`)
          yield* Queue.offer(links, link)
          reason = (yield* link.closeReason).reason
          yield* Effect.logInfo(`transport: link to ${peer} closed: ${reason}`)
          const kind = errorKind(reason)
          if (kind !== undefined) yield* Metrics.recordError(kind)
        }).pipe(
          Effect.catchTag("ConnectFailed", (e) =>
            Effect.suspend(() => {
              reason = e.reason
              const kind = errorKind(e.reason)
              return Metrics.recordError(kind === undefined || kind === "link" ? "connect" : kind)
            })
          ),
          Effect.scoped,
          Effect.onExit(() =>
            Queue.offer(mailbox, {
              _tag: "Ended",
              sid,
              linkedFor: linkedAt === undefined ? undefined : Date.now() - linkedAt,
              reason
            })
          )
        )
      }

      const start = (sid: string, offer: VerifiedSignal | undefined) =>
        Effect.gen(function*() {
          const inbox = yield* Queue.bounded<SessionInput>(64)
          current = { sid, inbox, answered: false }
          timerGeneration++
          yield* FiberHandle.clear(timerFiber)
          yield* FiberHandle.run(sessionFiber)(session(sid, inbox, offer))
        })

      const knock = Effect.gen(function*() {
        const sent = yield* signaling.send(peer, Signal.sign(identity, peer, "knock", "", String(Date.now())), "").pipe(
          Effect.as(true),
          Effect.catchTag("SignalingUnavailable", () => Effect.succeed(false))
        )
        if (sent) yield* Effect.logDebug(`transport: knocked on ${peer}`)
        yield* schedule(Signaling.backoffMillis(failures++, baseDelay, maxDelay))
      })

      const onSignal = (signal: VerifiedSignal): Effect.Effect<void> => {
        switch (signal.kind) {
          case "offer":
            if (weOffer) {
              return Effect.logWarning(`transport: ignored an offer from ${peer}: the lower peer id makes the offers`)
            }
            if (!isNewer(signal.sid, lastOfferSid)) {
              return Effect.logDebug(`transport: ignored a stale offer ${signal.sid} from ${peer}`)
            }
            lastOfferSid = signal.sid
            return start(signal.sid, signal)
          case "answer":
          case "candidate":
            if (current !== undefined && current.sid === signal.sid) {
              if (signal.kind === "answer") current.answered = true
              Queue.offerUnsafe(current.inbox, { _tag: "Signal", signal })
            }
            return Effect.void
          case "knock": {
            const at = Number(signal.body)
            if (!weOffer || !(at > lastKnockAt)) return Effect.void
            lastKnockAt = at
            // An unanswered offer is still on its way to the peer: let it arrive.
            if (current !== undefined && !current.answered) return Effect.void
            return Effect.andThen(
              Effect.logDebug(`transport: ${peer} knocked; offering now`),
              start(nextSid(), undefined)
            )
          }
        }
      }

      const onEvent = (event: SlotEvent): Effect.Effect<void> => {
        switch (event._tag) {
          case "Signal":
            return onSignal(event.signal)
          case "Undeliverable":
            if (current !== undefined && current.sid === event.sid) {
              Queue.offerUnsafe(current.inbox, { _tag: "Undeliverable" })
            }
            return Effect.void
          case "Ended": {
            if (current === undefined || current.sid !== event.sid) return Effect.void
            current = undefined
            failures = event.linkedFor !== undefined && event.linkedFor >= STABLE_LINK_MILLIS ? 0 : failures + 1
            const delay = Signaling.backoffMillis(Math.max(0, failures - 1), baseDelay, maxDelay)
            const log = event.linkedFor === undefined
              ? Effect.logInfo(`transport: could not connect to ${peer}: ${event.reason}; retrying in ${delay} ms`)
              : Effect.logDebug(`transport: reconnecting to ${peer} in ${delay} ms`)
            return Effect.andThen(log, schedule(delay))
          }
          case "Timer":
            if (event.generation !== timerGeneration || current !== undefined) return Effect.void
            return weOffer ? start(nextSid(), undefined) : knock
        }
      }

      yield* schedule(0)
      return yield* Effect.forever(Effect.flatMap(Queue.take(mailbox), onEvent))
    }).pipe(Effect.scoped, Effect.annotateLogs({ peer }))

  for (const [peer, mailbox] of mailboxes) yield* Effect.forkScoped(runSlot(peer, mailbox))

  const route = (inbound: Signaling.Inbound): Effect.Effect<void> => {
    if (inbound._tag === "Undeliverable") {
      const mailbox = mailboxes.get(inbound.to as PeerId)
      return mailbox === undefined || inbound.ref === undefined
        ? Effect.void
        : Effect.asVoid(Queue.offer(mailbox, { _tag: "Undeliverable", sid: inbound.ref }))
    }
    const verified = Signal.verify(self, inbound.from, inbound.data)
    if (Result.isFailure(verified)) {
      const e = verified.failure
      return Effect.andThen(
        Effect.logWarning(`transport: refused a signal claiming to come from ${e.claimedFrom}: ${e.reason}`),
        Metrics.recordError("auth")
      )
    }
    const signal = verified.success
    const mailbox = mailboxes.get(signal.from)
    if (mailbox === undefined) {
      return signal.kind === "offer" || signal.kind === "knock"
        ? Effect.andThen(
          Effect.logWarning(`transport: refused connection from ${signal.from}: not on the allow-list`),
          Metrics.recordError("not_allowed")
        )
        : Effect.void
    }
    return Effect.asVoid(Queue.offer(mailbox, { _tag: "Signal", signal }))
  }
  yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(signaling.inbound), route)).pipe(Effect.ignore))

  yield* Effect.logInfo(`transport: ${self} up; allow-list: ${allowed.size === 0 ? "(empty)" : [...allowed].join(", ")}`)
  const shape: TransportShape = {
    self,
    // one link per pull, so a consumer taking links one at a time never drops a queued one
    links: Stream.fromEffectRepeat(Queue.take(links)),
    registered: signaling.registered,
    registrations: signaling.registrations
  }
  return shape
}) satisfies (config: TransportConfig) => Effect.Effect<TransportShape, TransportError, Scope.Scope | Identity>

export class Transport extends Context.Service<Transport, TransportShape>()("@can-sync/transport/Transport") {
  /** A transport for the life of the current scope (closing it closes every link and cleans up). */
  static readonly make = make
  static readonly layer = (config: TransportConfig): Layer.Layer<Transport, TransportError, Identity> =>
    Layer.effect(Transport, make(config))
}
