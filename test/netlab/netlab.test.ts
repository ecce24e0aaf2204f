/**
 * The network lab itself: an emulated link delays, drops and rate-limits what crosses it in the
 * direction asked, "down" cuts it until "up" (a TCP connection survives the gap), and closing
 * the lab leaves no namespace or emulator behind. Skips with one line where namespaces are denied.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Schedule, Scope } from "effect"
import { execFileSync } from "node:child_process"
import * as Netlab from "./Netlab.ts"
import { toolPath } from "./NetTool.ts"

const probe = await Effect.runPromise(Netlab.canCreateNamespaces)
if (!probe.ok) console.warn(`netlab tests skipped: ${probe.reason}`)

const node = (...args: ReadonlyArray<string | number>) => [process.execPath, toolPath, ...args.map(String)]

interface PingResult {
  readonly sent: number
  readonly received: number
  readonly rtts: ReadonlyArray<number>
}
interface TcpResult {
  readonly bytes: number
  readonly sha256: string
  readonly seconds: number
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN

/** `count` UDP pings A → B at `intervalMs`; B echoes them. */
const ping = (p: Netlab.Pair, count: number, intervalMs: number) =>
  Effect.scoped(
    Effect.gen(function*() {
      const echo = yield* p.b.spawn(node("udp-echo", 7000))
      yield* echo.nextLine("10 seconds", "udp-echo ready")
      const pinger = yield* p.a.spawn(node("udp-ping", p.addressB, 7000, count, intervalMs))
      return JSON.parse(yield* pinger.nextLine(Duration.seconds(count * intervalMs / 1000 + 15), "ping results")) as PingResult
    })
  )

/** `bytes` over TCP A → B: what each end counted and hashed. */
const tcp = (p: Netlab.Pair, bytes: number, within: Duration.Input, whileRunning: Effect.Effect<void, Netlab.NetlabError> = Effect.void) =>
  Effect.scoped(
    Effect.gen(function*() {
      const sink = yield* p.b.spawn(node("tcp-sink", 7001))
      yield* sink.nextLine("10 seconds", "tcp-sink ready")
      const sender = yield* p.a.spawn(node("tcp-send", p.addressB, 7001, bytes))
      yield* whileRunning
      const received = JSON.parse(yield* sink.nextLine(within, "the sink's count")) as TcpResult
      const sent = JSON.parse(yield* sender.nextLine("10 seconds", "the sender's count")) as TcpResult
      return { sent, received }
    })
  )

const alive = (pid: number) => {
  try {
    return process.kill(pid, 0)
  } catch {
    return false
  }
}

const namespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" })

describe.skipIf(!probe.ok)("network lab", () => {
  it.live("a link with 25 ms each way gives a 50 ms round trip, and changing it at run time takes effect", () =>
    Effect.gen(function*() {
      const p = yield* Netlab.pair(Netlab.symmetric({ delayMs: 25 }))
      const slow = yield* ping(p, 20, 20)
      expect(slow.received).toBe(20)
      expect(median(slow.rtts)).toBeGreaterThanOrEqual(50)
      expect(median(slow.rtts)).toBeLessThan(50 + 60) // generous: two busy cores
      yield* p.link.set({ aToB: { delayMs: 5 }, bToA: { delayMs: 0 } })
      const fast = yield* ping(p, 20, 20)
      expect(median(fast.rtts)).toBeGreaterThanOrEqual(5)
      expect(median(fast.rtts)).toBeLessThan(median(slow.rtts) - 20)
    }))

  it.live("loss drops about the configured share of frames, in the configured direction only", () =>
    Effect.gen(function*() {
      const p = yield* Netlab.pair({ aToB: { lossRate: 0.2 } })
      const result = yield* ping(p, 500, 2)
      const stats = yield* p.link.stats
      // the emulator's own counts: it saw every ping (and a few background frames: ARP, IPv6
      // neighbour discovery) and dropped about a fifth; n ≥ 500 at 20 %: sd ≤ 1.8 points
      expect(stats.aToB.rx).toBeGreaterThanOrEqual(500)
      const share = stats.aToB.lost / stats.aToB.rx
      expect(share).toBeGreaterThan(0.12)
      expect(share).toBeLessThan(0.28)
      expect(stats.bToA.lost).toBe(0)
      // what the pinger saw agrees: every frame the link dropped is a missing reply (a busy host
      // may lose a few more in its own sockets, never fewer), and most came back
      expect(result.sent - result.received).toBeGreaterThanOrEqual(stats.aToB.lost - 5)
      expect(result.received).toBeGreaterThan(result.sent / 2)
      expect(stats.aToB.oversize + stats.bToA.oversize).toBe(0)
    }))

  it.live("TCP carries 16 MiB intact through 20 ms RTT and 0.1 % loss", () =>
    Effect.gen(function*() {
      const p = yield* Netlab.pair(Netlab.symmetric({ delayMs: 10, lossRate: 0.001 }))
      const { sent, received } = yield* tcp(p, 16 * 1024 * 1024, "90 seconds")
      expect(received.bytes).toBe(16 * 1024 * 1024)
      expect(received.sha256).toBe(sent.sha256)
      const stats = yield* p.link.stats
      expect(stats.aToB.lost).toBeGreaterThan(0)
    }))

  it.live("a rate limit holds TCP to about that rate", () =>
    Effect.gen(function*() {
      const rate = 2_000_000
      const p = yield* Netlab.pair({ aToB: { delayMs: 5, rateBytesPerSec: rate, queueBytes: 64 * 1024 }, bToA: { delayMs: 5 } })
      const { received } = yield* tcp(p, 4_000_000, "60 seconds")
      expect(received.bytes).toBe(4_000_000)
      // 4 MB at 2 MB/s (frame headers make it a little slower): not much faster than 2 s
      expect(received.seconds).toBeGreaterThan(1.7)
    }))

  it.live("down drops everything until up, and a TCP transfer started before resumes and completes", () =>
    Effect.gen(function*() {
      const p = yield* Netlab.pair(Netlab.symmetric({ delayMs: 5, rateBytesPerSec: 1_000_000, queueBytes: 64 * 1024 }))
      yield* p.link.down
      const cut = yield* ping(p, 10, 20)
      expect(cut.received).toBe(0)
      yield* p.link.up
      const restored = yield* ping(p, 10, 20)
      expect(restored.received).toBe(10)
      // 3 MB at 1 MB/s; the link goes down for 3 s once about 700 KB have crossed
      const { sent, received } = yield* tcp(
        p,
        3_000_000,
        "60 seconds",
        Effect.gen(function*() {
          yield* p.link.stats.pipe(
            Effect.flatMap((s) => (s.aToB.tx >= 500 ? Effect.void : Effect.fail(new Netlab.NetlabError({ step: "tcp-send", detail: "not 500 frames across yet" })))),
            Effect.retry(Schedule.spaced("50 millis")),
            Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.fail(new Netlab.NetlabError({ step: "tcp-send", detail: "fewer than 500 frames crossed in 30 s" })) })
          )
          yield* p.link.down
          yield* Effect.sleep("200 millis") // a frame the emulator was already sending may still leave
          const during = yield* p.link.stats
          yield* Effect.sleep("3 seconds")
          const after = yield* p.link.stats
          expect(after.aToB.tx).toBe(during.aToB.tx) // nothing crossed while down
          yield* p.link.up
        })
      )
      expect(received.bytes).toBe(3_000_000)
      expect(received.sha256).toBe(sent.sha256)
      expect(received.seconds).toBeGreaterThan(3) // its first byte came before the cut, its last after
    }))

  it.live("closing the lab removes its namespaces and stops its emulator, even when the test fails", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const p = yield* Scope.provide(scope)(Netlab.pair())
      const prefix = p.lab.prefix
      expect(namespaces()).toContain(`${prefix}-a`)
      const failed = yield* Scope.provide(scope)(Effect.fail("boom")).pipe(Effect.exit)
      yield* Scope.close(scope, failed)
      expect(Exit.isFailure(failed)).toBe(true)
      expect(namespaces()).not.toContain(prefix)
      expect(alive(p.link.pid)).toBe(false)
    }))
})
