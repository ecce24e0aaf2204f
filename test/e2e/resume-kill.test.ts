/**
 * Resumable transfers end to end (issue 13 item 2): the receiving `can-sync sync` agent is killed
 * with SIGKILL at five random points of a 1 GiB transfer and restarted each time; the sender's own
 * counters show at most 1.3 GiB of content crossed in all, the asset arrives once and verifies.
 * Heavy (3 GiB on tmpfs, a minute of two busy cores): runs with CAN_SYNC_RESUME_TEST=1 (CI sets it).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import { notYet } from "../kit/Eventually.ts"
import { seeded } from "../kit/Seeded.ts"
import { all, Scenario } from "./Scenario.ts"

const enabled = process.env.CAN_SYNC_RESUME_TEST === "1"
const MiB = 1024 * 1024
const GiB = 1024 * MiB
const KILLS = 5

/** The size of the file at `path`, or -1 when there is none. */
const sizeOf = (path: string) => Effect.promise(() => stat(path).then((st) => st.size, () => -1))

describe.skipIf(!enabled)("can-sync sync: a transfer resumes after the receiver is killed (CAN_SYNC_RESUME_TEST=1)", () => {
  it.live("the receiving agent SIGKILLed at 5 random points of 1 GiB: at most 1.3 GiB sent, the asset arrives once, verify clean", () =>
    Effect.gen(function*() {
      const random = seeded("resume-kill")
      const started = Date.now()
      const phases: Array<string> = []
      const phase = (name: string) => Effect.sync(() => void phases.push(`${name} ${((Date.now() - started) / 1000).toFixed(1)} s`))
      const s = yield* Scenario.make("resume-kill")
      const [a, b] = [s.path("a"), s.path("b")]
      const big = yield* s.largeFile("big", `resume-kill/${random.seed}`, GiB)
      const [signal, [hash]] = yield* all([s.signal(), s.add(a, [big.path], { description: "one GiB" })])
      yield* Effect.promise(() => unlink(big.path)) // tmpfs: keep only the stores' copies
      const [idA, idB] = yield* all([s.id(a), s.id(b)])
      const sender = yield* s.agent("A", { data: a, signal: signal.url, peers: [idB] })
      let receiver = yield* s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      yield* phase("1 GiB added, agents up")

      // One kill point in each sixth of the asset (the first from 3 %), at a random byte of it.
      const points = Array.from({ length: KILLS }, (_, i) => Math.floor((GiB * (i + 0.2 + 0.7 * (random.int(1000) / 1000))) / (KILLS + 1)))
      const partial = join(b, "partial", hash!)
      for (const [i, point] of points.entries()) {
        yield* s.wait(`B's partial to reach ${(point / MiB).toFixed(0)} MiB (kill ${i + 1} of ${KILLS})`, sizeOf(partial).pipe(
          Effect.map((size) => (size >= point ? size : notYet(`${(size / MiB).toFixed(1)} MiB`)))
        ), "90 seconds", { interval: "20 millis" })
        expect(yield* receiver.proc.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" })
        yield* phase(`kill ${i + 1}`)
        receiver = yield* s.agent(`B (restart ${i + 1})`, { data: b, signal: signal.url, peers: [idA] })
      }

      // The sender's /status says when it is done (cheap to poll, unlike `ls` processes competing with the transfer);
      // it counts every content byte it put on a link, cut transfers included.
      const sent = yield* s.counters(sender, idB, (p) => p.assetsSent >= 1, "150 seconds")
      const listing = yield* s.converged([a, b], { expected: new Set([hash!]), timeout: "60 seconds" })
      expect(listing.map((r) => r.size)).toEqual([GiB])
      yield* phase("converged")
      const crossed = (sent as { readonly chunkBytesSent?: number }).chunkBytesSent
      const summary = `1 GiB with ${KILLS} kills of the receiver at ${points.map((p) => `${(p / MiB).toFixed(0)} MiB`).join(", ")}: ` +
        `${((crossed ?? 0) / MiB).toFixed(0)} MiB sent`
      yield* s.note(summary)
      expect(crossed, "A's /status reports chunkBytesSent").toBeTypeOf("number")
      expect(crossed!).toBeGreaterThanOrEqual(GiB)
      expect(crossed!).toBeLessThanOrEqual(1.3 * GiB)
      expect(sent.assetsSent).toBe(1) // arrived once: the cut transfers never completed
      const verified = yield* s.verify(b)
      expect(verified.stdout).toContain("1 assets checked, 0 damaged")
      expect(verified.code).toBe(0)
      expect(yield* sizeOf(partial)).toBe(-1)
      yield* phase("verified")
      console.log(`${summary}; ${phases.join(", ")}`)
    }), 240_000)
})
