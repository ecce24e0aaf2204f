/**
 * Status: the one model every display renders. Fed synthetic engine counters at given instants
 * (the tracker takes the time as an argument; `make` runs on the TestClock), so no real time
 * passes: states for never-connected, dropped and refused peers, per-chunk progress, the
 * smoothed rate and a steady ETA, and the last error kept after a disconnect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { PeerStats } from "../src/ActorWiring.ts"
import { emptyStats } from "../src/ActorWiring.ts"
import type { PeerId } from "../src/Domain.ts"
import * as Status from "../src/Status.ts"

const a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" as PeerId
const b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" as PeerId
const registered: Status.SignalingView = { url: "ws://x", state: "registered" }

const session = (over: Omit<Partial<Status.SessionView>, "stats"> & { stats?: Partial<PeerStats> }): Status.SessionView => ({
  peer: a,
  role: "dialer",
  state: "live",
  restarts: 0,
  lastError: undefined,
  lastErrorAt: undefined,
  lastFailure: undefined,
  nextRetryAt: undefined,
  ...over,
  stats: { ...emptyStats, sessions: 1, ...over.stats }
})

const input = (sessions: ReadonlyArray<Status.SessionView>, signaling = registered): Status.Input => ({
  version: "0.1.0",
  peerId: b,
  peers: [a],
  sessions,
  links: new Map(),
  signaling,
  store: { assets: 1, bytes: 2 }
})

describe("Status", () => {
  it("lists a configured peer before any session: waiting for signaling, then connecting, never connected", () => {
    const tracker = Status.makeTracker(0)
    const down = tracker.update(input([], { url: "ws://x", state: "failing", lastError: "ECONNREFUSED" }), 1000, true)
    expect(down.peers).toHaveLength(1)
    expect(down.peers[0]).toMatchObject({ peer: a, state: "waiting-for-signaling", connection: "never-connected", sessions: 0 })
    expect(down.recent.at(-1)).toMatchObject({ kind: "error", text: "signaling failing: ECONNREFUSED" })
    const up = tracker.update(input([session({ state: "connecting", stats: { sessions: 0 } })]), 2000, true)
    expect(up.peers[0]).toMatchObject({ state: "connecting", connection: "never-connected", since: 2000 })
  })

  it("a dropped peer stays, backing off with its next retry and its last error", () => {
    const tracker = Status.makeTracker(0)
    tracker.update(input([session({ state: "live" })]), 1000, true)
    const dropped = tracker.update(
      input([session({ state: "backoff", restarts: 1, lastError: "link closed", lastErrorAt: 1500, lastFailure: "other", nextRetryAt: 4000 })]),
      2000,
      true
    )
    expect(dropped.peers[0]).toMatchObject({
      state: "backoff",
      connection: "dropped",
      nextRetryAt: 4000,
      lastError: { message: "link closed", at: 1500 },
      restarts: 1
    })
    expect(dropped.recent.map((e) => e.text)).toEqual(["backoff", "link closed"])
    // reconnected: the last error is still shown
    const again = tracker.update(input([session({ state: "live", restarts: 1, lastError: "link closed", lastErrorAt: 1500 })]), 3000, true)
    expect(again.peers[0]).toMatchObject({ state: "live", connection: "connected", lastError: { message: "link closed" } })
  })

  it("a refusal is shown as refused, by whom and why", () => {
    const tracker = Status.makeTracker(0)
    const refused = tracker.update(
      input([session({ state: "backoff", lastError: "authentication failed: bad proof", lastErrorAt: 1, lastFailure: "refused-by-us" })]),
      1000,
      true
    )
    expect(refused.peers[0]).toMatchObject({ state: "refused", refused: { by: "us", reason: "authentication failed: bad proof" } })
    expect(Status.classifyFailure({ _tag: "ConnectFailed", reason: { _tag: "AuthFailed" } })).toBe("refused-by-us")
    expect(Status.classifyFailure({ _tag: "ConnectFailed", reason: { _tag: "SignalingUnavailable" } })).toBe("no-signaling")
    expect(Status.classifyFailure({ _tag: "ConnectFailed", reason: { _tag: "Timeout" } })).toBe("other")
    expect(Status.classifyFailure({ _tag: "RemoteFailure", code: 1 })).toBe("refused-by-peer")
    expect(Status.classifyFailure({ _tag: "ConnectFailed", reason: { _tag: "RefusedByPeer" } })).toBe("refused-by-peer")
    expect(Status.classifyFailure({ _tag: "ProtocolVersionMismatch" })).toBe("refused-by-us")
  })

  it("counts bytes per chunk before the asset completes, with a smoothed rate and an ETA that counts down steadily", () => {
    const tracker = Status.makeTracker(0)
    const want = { hashesWanted: 1, bytesWanted: 20_000_000 }
    tracker.update(input([session({ stats: want })]), 0, true)
    const etas: Array<number | undefined> = []
    let last: Status.AgentStatus | undefined
    for (let t = 1; t <= 10; t++) {
      // 1 MB per second arrives in chunks; the asset is not complete yet
      last = tracker.update(input([session({ stats: { ...want, chunkBytesReceived: t * 1_000_000 } })]), t * 1000, true)
      etas.push(last.peers[0]?.received.etaSeconds)
    }
    const received = last?.peers[0]?.received
    expect(last?.peers[0]?.state).toBe("transferring")
    expect(received).toMatchObject({ assetsToGo: 1, assetsDone: 0, bytesDone: 10_000_000, bytesToGo: 10_000_000, percent: 50 })
    expect(received?.rateBytesPerSecond).toBe(1_000_000)
    expect(etas).toEqual([19, 18, 17, 16, 15, 14, 13, 12, 11, 10])
    expect(last?.totals.received).toMatchObject({ bytesToGo: 10_000_000, rateBytesPerSecond: 1_000_000, etaSeconds: 10 })
  })

  it("the sent direction estimates bytes to go from the average size sent; both directions count", () => {
    const tracker = Status.makeTracker(0)
    const stats = { hashesWantedByPeer: 4, assetsSent: 2, bytesSent: 2_000_000, chunkBytesSent: 2_500_000 }
    const now = tracker.update(input([session({ stats })]), 1000, true)
    expect(now.peers[0]?.sent).toMatchObject({ assetsToGo: 2, bytesToGo: 1_500_000, bytesToGoEstimated: true, bytesDone: 2_500_000 })
    expect(now.peers[0]?.received).toMatchObject({ assetsToGo: 0, bytesToGo: 0, percent: 100 })
    expect(now.peers[0]?.state).toBe("transferring")
  })

  it.effect("make: a tick every second publishes the model; current reads counters fresh", () =>
    Effect.gen(function*() {
      const stats = yield* Ref.make<Partial<PeerStats>>({ hashesWanted: 2, bytesWanted: 4_000_000 })
      const status = yield* Status.make({
        version: "0.1.0",
        peerId: b,
        peers: [a, b],
        sessions: Ref.get(stats).pipe(Effect.map((s) => [session({ stats: s })])),
        links: Effect.succeed(new Map([[a, { kind: "host", rttMillis: 3 }]])),
        signaling: Effect.succeed(registered),
        store: Effect.succeed(undefined)
      })
      yield* Ref.update(stats, (s) => ({ ...s, chunkBytesReceived: 2_000_000 }))
      yield* TestClock.adjust("1 second")
      const now = yield* status.current
      expect(now.peers.map((p) => p.peer)).toEqual([a, b])
      expect(now.peers[0]).toMatchObject({ path: { kind: "host", rttMillis: 3 }, received: { bytesDone: 2_000_000, percent: 50 } })
      expect(now.peers[0]?.received.rateBytesPerSecond).toBe(2_000_000)
      expect(now.peers[1]).toMatchObject({ state: "connecting", connection: "never-connected" })
      const first = yield* status.changes.pipe(Stream.take(1), Stream.runCollect)
      expect(first[0]?.peers[0]?.received.bytesDone).toBe(2_000_000)
    }))
})
