/**
 * One transport in this process and a peer played by hand over a real signaling server: which of
 * the peer's offers the transport takes (a replay or an older boot's is ignored, a restarted
 * peer's is taken), connects that fail at once, and the `errors` metric kinds derived from
 * close and failure reasons.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, References } from "effect"
import type { Scope } from "effect"
import { LinkCloseReason } from "@can-sync/core"
import { Identity } from "../src/Identity.ts"
import type { PeerIdentity } from "../src/Identity.ts"
import { connectErrorKind, linkErrorKind } from "../src/PeerSlot.ts"
import * as Signal from "../src/Signal.ts"
import * as Signaling from "../src/Signaling.ts"
import { ConnectFailedReason, Transport } from "../src/Transport.ts"
import type { ConnectFailed } from "../src/Transport.ts"
import { captureLogs, waitUntil } from "./support/processes.ts"

/** An in-memory identity whose id sorts below `other` (it makes the offers). */
const identityBelow = (other: string): PeerIdentity => {
  for (;;) {
    const identity = Identity.generate()
    if (identity.peerId < other) return identity
  }
}

describe("PeerSlot", () => {
  it.live("ignores a replayed offer and one from an older boot, and takes a restarted peer's even if its clock stepped back", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0 })
      const a = Identity.generate()
      const peer = identityBelow(a.peerId)
      const logs = captureLogs()
      const transport = yield* Transport.make({ signalingUrl: server.url, peers: [peer.peerId] }).pipe(
        Effect.provideService(Identity, a),
        Effect.provide(Layer.merge(logs.layer, Layer.succeed(References.MinimumLogLevel, "Debug")))
      )
      const hand = yield* Signaling.connect({ url: server.url, identity: peer })
      yield* Effect.all([hand.registered, transport.registered])
      const offer = (sid: string) => hand.send(a.peerId, Signal.sign(peer, a.peerId, "offer", sid, "v=0"), sid)
      // boot ids used to be the boot time: the restarted peer's clock stepped back by a day
      const sids = ["1733220000000.7", "1733220000000.7", "1733220000000.3", "1733133600000.1", "1733220000000.8", "1733133600000.2"]
      yield* Effect.forEach(sids, offer, { discard: true })
      const about = (line: string) => line.includes("offer") && line.includes(peer.peerId)
      yield* waitUntil("every offer to be judged", () => logs.lines.filter(about).length === sids.length, "10 seconds")
      expect(logs.lines.filter(about)).toEqual([
        `transport: ${peer.peerId} offered (1733220000000.7)`,
        `transport: ignored a stale offer 1733220000000.7 from ${peer.peerId}`,
        `transport: ignored a stale offer 1733220000000.3 from ${peer.peerId}`,
        `transport: ${peer.peerId} offered (1733133600000.1)`,
        `transport: ignored a stale offer 1733220000000.8 from ${peer.peerId}`,
        `transport: ${peer.peerId} offered (1733133600000.2)`
      ])
      // the offer taken is kept for the next connect: the peer asked for a link
      yield* transport.wake(peer.peerId).pipe(Effect.timeout("1 second"))
    }).pipe(Effect.scoped))

  it.live("fails a connect at once for a peer off the allow-list, or while another is pending; without signaling, by the deadline", () =>
    Effect.gen(function*() {
      const a = Identity.generate()
      const peer = Identity.generate()
      // nothing listens there: the transport never registers
      const transport = yield* Transport.make({ signalingUrl: "ws://127.0.0.1:9", peers: [peer.peerId], connectTimeout: "300 millis" }).pipe(
        Effect.provideService(Identity, a)
      )
      const reasonOf = (connect: Effect.Effect<unknown, ConnectFailed, Scope.Scope>) =>
        connect.pipe(Effect.scoped, Effect.flip, Effect.map((e) => e.reason._tag))
      expect(yield* reasonOf(transport.connect(Identity.generate().peerId))).toBe("NotAllowed")
      const first = yield* Effect.forkChild(reasonOf(transport.connect(peer.peerId)))
      yield* Effect.sleep("50 millis")
      expect(yield* reasonOf(transport.connect(peer.peerId))).toBe("Busy")
      expect(yield* Fiber.join(first)).toBe("SignalingUnavailable")
      // the slot is free again
      expect(yield* reasonOf(transport.connect(peer.peerId))).toBe("SignalingUnavailable")
    }).pipe(Effect.scoped))

  it("derives the errors metric kind from the reason's tag", () => {
    const close = LinkCloseReason.cases
    expect(linkErrorKind(close.ClosedLocally.make({}))).toBeUndefined()
    expect(linkErrorKind(close.ClosedByPeer.make({}))).toBeUndefined()
    expect(linkErrorKind(close.Replaced.make({}))).toBeUndefined()
    expect(linkErrorKind(close.HeartbeatTimeout.make({ silentMillis: 4200 }))).toBe("heartbeat")
    expect(linkErrorKind(close.AuthFailed.make({ detail: "x" }))).toBe("auth")
    expect(linkErrorKind(close.LinkProtocolViolation.make({ detail: "x" }))).toBe("protocol")
    expect(linkErrorKind(close.ConnectionLost.make({ detail: "x" }))).toBe("link")
    const connect = ConnectFailedReason.cases
    expect(connectErrorKind(connect.Timeout.make({ millis: 15_000 }))).toBe("connect")
    expect(connectErrorKind(connect.PeerUnreachable.make({}))).toBe("connect")
    expect(connectErrorKind(connect.AuthFailed.make({ detail: "x" }))).toBe("auth")
    expect(connectErrorKind(connect.ClosedEarly.make({ reason: close.LinkProtocolViolation.make({ detail: "x" }) }))).toBe("protocol")
    expect(connectErrorKind(connect.ClosedEarly.make({ reason: close.ConnectionLost.make({ detail: "x" }) }))).toBe("connect")
    expect(connectErrorKind(connect.Busy.make({}))).toBeUndefined()
    expect(connectErrorKind(connect.NotAllowed.make({}))).toBeUndefined()
  })
})
