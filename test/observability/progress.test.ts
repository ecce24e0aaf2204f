/**
 * What `sync` shows while it runs (Progress.ts), rendered from the status model (core Status.ts):
 * log lines for machines (a line per state change at once, a summary every `every` of the Clock),
 * and for a terminal the live block (bars, %, rate, ETA both ways; never wider than the screen)
 * and the region that writes log lines above it. The real command under a real terminal is
 * terminal.test.ts.
 */
import { emptyStats } from "@can-sync/core/Status"
import type { PeerId } from "@can-sync/core"
import * as Status from "@can-sync/core/Status"
import * as Logging from "@can-sync/cli/Logging"
import * as Progress from "@can-sync/cli/Progress"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"

const peer = "abcdefghijklmnopqrstuvwxyz234567" as PeerId
const self = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" as PeerId

/** The model for one peer at `at`, through the real tracker (1 MB/s arriving of 10 MB wanted). */
const model = (tracker: ReturnType<typeof Status.makeTracker>, at: number, state: Status.SessionView["state"], received: number) =>
  tracker.update({
    version: "0.1.0",
    peerId: self,
    peers: [peer],
    sessions: [{
      peer,
      role: "dialer",
      state,
      restarts: 0,
      lastError: undefined,
      lastErrorAt: undefined,
      lastFailure: undefined,
      nextRetryAt: undefined,
      stats: { ...emptyStats, sessions: 1, hashesWanted: 10, bytesWanted: 10_000_000, chunkBytesReceived: received, hashesWantedByPeer: 2 }
    }],
    links: new Map([[peer, { kind: "host", rttMillis: 2 }]]),
    signaling: { url: "ws://127.0.0.1:1", state: "registered" },
    store: { assets: 3, bytes: 3_000 }
  }, at, true)

describe("Progress", () => {
  it.effect("logLines: a line when a peer's state changes, and a summary every `every` of the Clock", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const tracker = Status.makeTracker(0)
      const ref = yield* SubscriptionRef.make(model(tracker, 0, "connecting", 0))
      yield* Effect.forkChild(Progress.logLines({ changes: SubscriptionRef.changes(ref) }, "30 seconds").pipe(
        Effect.provide(Logging.layer({ json: true, write: (line) => lines.push(line) }))
      ))
      const messages = () => lines.map((l) => (JSON.parse(l) as Logging.LogRecord).message)
      yield* TestClock.adjust("1 second")
      expect(messages()).toEqual([`peer ${peer} connecting`])
      yield* TestClock.adjust("29 seconds")
      yield* SubscriptionRef.set(ref, model(tracker, 30_000, "connecting", 0))
      expect(messages()).toEqual([`peer ${peer} connecting`, `peer ${peer} summary`])
      yield* SubscriptionRef.set(ref, model(tracker, 31_000, "live", 1_000_000))
      expect(messages().at(-1)).toBe(`peer ${peer} transferring`)
      expect(JSON.parse(lines.at(-1) ?? "{}")).toMatchObject({
        peer,
        state: "live",
        phase: "transferring",
        assets_to_go: 10,
        bytes_to_go: 9_000_000,
        bytes_received: 1_000_000,
        assets_to_send: 2
      })
    }))

  it("render: a total line and each peer with bar, %, rate and ETA both ways, never as wide as the terminal", () => {
    const tracker = Status.makeTracker(0)
    model(tracker, 0, "live", 0)
    let s = model(tracker, 1000, "live", 1_000_000)
    for (let t = 2; t <= 4; t++) s = model(tracker, t * 1000, "live", t * 1_000_000)
    for (const columns of [200, 100, 80, 50, 30, 12]) {
      const lines = Progress.render(s, columns)
      for (const line of lines) expect([...line].length, `${columns} columns: ${line}`).toBeLessThan(columns)
    }
    const wide = Progress.render(s, 200)
    expect(wide[1]).toMatch(/^total .*↓ \[#{8}-+\]\s+40% +1\.00 MB\/s ETA 0:06 .*↑/)
    expect(wide[2]).toMatch(/^abcdefghijkl  transferring host 2ms .*↓ \[#+-+\]\s+40% +1\.00 MB\/s ETA 0:06/)
    const narrow = Progress.render(s, 80)
    expect(narrow).toContainEqual(expect.stringMatching(/^abcdefghijkl  transferring  host 2ms$/))
    expect(narrow).toContainEqual(expect.stringMatching(/^ {2}↓ \[#+-+\]\s+40% +1\.00 MB\/s ETA 0:06 +10 left$/))
  })

  it("makeRegion: a log line goes above the block, which is cleared and drawn again below it in the same write", () => {
    const writes: Array<string> = []
    const region = Progress.makeRegion({ columns: () => 80, write: (t) => writes.push(t) })
    region.draw(() => ["block 1", "block 2"])
    // the cursor waits at the block's top: clearing needs no row count (resizes may rewrap the block)
    expect(writes.at(-1)).toBe("block 1\nblock 2\n\x1b[2A")
    region.log("a log line")
    expect(writes.at(-1)).toBe("\r\x1b[Ja log line\nblock 1\nblock 2\n\x1b[2A")
    region.redraw()
    expect(writes.at(-1)).toBe("\r\x1b[Jblock 1\nblock 2\n\x1b[2A")
    region.close()
    expect(writes.at(-1)).toBe("\x1b[2B")
  })

  it.effect("terminal: draws the model at each change into the region", () =>
    Effect.gen(function*() {
      const writes: Array<string> = []
      const region = Progress.makeRegion({ columns: () => 100, write: (t) => writes.push(t) })
      const tracker = Status.makeTracker(0)
      yield* Progress.terminal({ changes: Stream.make(model(tracker, 0, "live", 0), model(tracker, 1000, "live", 2_000_000)) }, region)
      expect(writes).toHaveLength(2)
      expect(writes[1]).toMatch(/^\r\x1b\[Jcan-sync 0\.1\.0/)
      expect(writes[1]).toContain("2.00 MB/s")
    }))
})
