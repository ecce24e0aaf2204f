/**
 * What `sync` shows while it runs (Progress.ts), driven by the TestClock: on a terminal the
 * per-peer block with its transfer rate and ETA; otherwise a log line per state change at once and
 * a summary per peer every `every`. No real time passes.
 */
import type { PeerStats } from "@can-sync/core"
import type { SessionInfo } from "@can-sync/core/PeerManager"
import * as Logging from "@can-sync/cli/Logging"
import * as Progress from "@can-sync/cli/Progress"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"

const peer = "abcdefghijklmnopqrstuvwxyz234567"

const stats = (received: number): PeerStats => ({
  sessions: 1,
  reconciles: 1,
  assetsSent: 0,
  bytesSent: 0,
  assetsReceived: 0,
  bytesReceived: received,
  redundantReceives: 0,
  verificationFailures: 0,
  echoesSuppressed: 0,
  digestsOffered: 0,
  hashesWanted: 10,
  bytesWanted: 10_000_000,
  hashesWantedByPeer: 0,
  metaSent: 0,
  metaApplied: 0
})

/** One peer whose state and received bytes the test sets. */
const fakeManager = () => {
  const now = { state: "connecting" as SessionInfo["state"], received: 0 }
  const info = (): SessionInfo => ({
    peer: peer as SessionInfo["peer"],
    role: "dialer",
    state: now.state,
    restarts: 0,
    lastError: undefined,
    lastErrorAt: undefined,
    nextRetryAt: undefined,
    stats: stats(now.received)
  })
  return { now, manager: { sessions: Effect.sync(() => [info()]) } }
}

describe("Progress", () => {
  it.effect("logLines: a line when a peer's state changes, and a summary every `every` of the Clock", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const { now, manager } = fakeManager()
      yield* Effect.forkChild(Progress.logLines(manager, "30 seconds").pipe(
        Effect.provide(Logging.layer({ json: true, write: (line) => lines.push(line) }))
      ))
      const messages = () => lines.map((l) => (JSON.parse(l) as Logging.LogRecord).message)
      yield* TestClock.adjust("1 second")
      expect(messages()).toEqual([`peer ${peer} connecting`])
      yield* TestClock.adjust("28 seconds")
      expect(messages()).toEqual([`peer ${peer} connecting`])
      yield* TestClock.adjust("1 second")
      expect(messages()).toEqual([`peer ${peer} connecting`, `peer ${peer} summary`])
      now.state = "live"
      yield* TestClock.adjust("1 second")
      expect(messages().at(-1)).toBe(`peer ${peer} live`)
      expect(JSON.parse(lines.at(-1) ?? "{}")).toMatchObject({ peer, state: "live", assets_to_go: 10, bytes_to_go: 10_000_000 })
    }))

  it.effect("terminal: redraws every second with the rate measured on the Clock, and the ETA", () =>
    Effect.gen(function*() {
      const frames: Array<string> = []
      const { now, manager } = fakeManager()
      now.state = "live"
      yield* Effect.forkChild(Progress.terminal(manager, (text) => frames.push(text)))
      yield* TestClock.adjust("1 second")
      now.received = 2_000_000
      yield* TestClock.adjust("1 second")
      expect(frames.length).toBe(3) // at 0 s, 1 s and 2 s
      expect(frames.at(-1)).toContain("2.0 MB/s ETA 4s")
      expect(frames.at(-1)).toMatch(/^\x1b\[1A\x1b\[J/) // the previous block is overwritten
    }))
})
