/**
 * Large assets between agents in separate processes: 64 MiB each way at once arrive intact, and an
 * agent killed with SIGKILL in the middle of receiving one recovers on restart — resuming from the
 * partial it kept, leaving no temp file or partial behind and never listing a partial asset.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { stat } from "node:fs/promises"
import { join } from "node:path"
import { notYet } from "../kit/Eventually.ts"
import type { AssetRecord } from "./Scenario.ts"
import { all, Scenario, TEST_TIMEOUT } from "./Scenario.ts"

const MiB = 1024 * 1024

/** The size of the file at `path`, or -1 when there is none. */
const sizeOf = (path: string) => Effect.promise(() => stat(path).then((st) => st.size, () => -1))

describe("can-sync sync: large assets", () => {
  it.live("64 MiB each way at once converge, and every byte verifies on both sides", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("large")
      const [a, b] = [s.path("a"), s.path("b")]
      const [bigA, bigB] = yield* all([s.largeFile("big-a", "large/a", 64 * MiB), s.largeFile("big-b", "large/b", 64 * MiB)])
      const [signal, [hashA], [hashB]] = yield* all([s.signal(), s.add(a, [bigA.path]), s.add(b, [bigB.path])])
      // The store names content by its SHA-256.
      expect(hashA).toBe(bigA.hash)
      expect(hashB).toBe(bigB.hash)

      const [idA, idB] = yield* all([s.id(a), s.id(b)])
      const [agentA, agentB] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      ])
      const listing = yield* s.converged([a, b], { expected: new Set([bigA.hash, bigB.hash]) })
      expect(listing.map((r) => r.size)).toEqual([64 * MiB, 64 * MiB])

      for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
        expect(yield* agent.peer(peer)).toMatchObject({
          assetsReceived: 1,
          bytesReceived: 64 * MiB,
          assetsSent: 1,
          bytesSent: 64 * MiB,
          verificationFailures: 0,
          redundantReceives: 0
        })
      }
      // Rehash everything on disk: the received copies are byte for byte what was added.
      for (const data of [a, b]) {
        const verified = yield* s.verify(data)
        expect(verified.stdout).toContain("2 assets checked, 0 damaged")
        expect(verified.code).toBe(0)
        expect(yield* s.tmpFiles(data)).toEqual([])
      }
    }), TEST_TIMEOUT)

  it.live("an agent killed with SIGKILL while receiving recovers on restart: it resumes, no leftover, no partial asset listed", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("sigkill")
      const [a, b] = [s.path("a"), s.path("b")]
      const big = yield* s.largeFile("big", "sigkill/big", 128 * MiB)
      const [signal, [hash]] = yield* all([s.signal(), s.add(a, [big.path], { description: "big one" })])
      const [idA, idB] = yield* all([s.id(a), s.id(b)])
      yield* s.agent("A", { data: a, signal: signal.url, peers: [idB] })
      const first = yield* s.agent("B", { data: b, signal: signal.url, peers: [idA] })

      // Wait until B is writing the asset into its partial (past a checkpoint): the transfer is under way.
      const partialPath = join(b, "partial", hash!)
      const partial = yield* s.wait("B to be receiving the large asset", Effect.gen(function*() {
        const size = yield* sizeOf(partialPath)
        return size >= 12 * MiB ? { size } : notYet(`partial/${hash}: ${size} bytes`)
      }), "60 seconds", { interval: "10 millis" })
      expect(partial.size).toBeLessThan(big.size)
      expect(yield* first.proc.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" })
      // The kill interrupted a write: the partial is kept (to resume from), and no object file exists.
      expect(yield* sizeOf(partialPath)).toBeGreaterThan(0)
      const objectPath = join(b, "objects", hash!.slice(0, 2), hash!)
      expect(yield* Effect.promise(() => stat(objectPath).then(() => "present", () => "absent"))).toBe("absent")

      const second = yield* s.agent("B restarted", { data: b, signal: signal.url, peers: [idA] })
      // Opening the store removed the dead process's temp files.
      expect((yield* s.tmpFiles(b)).filter((name) => name.startsWith(`${first.proc.pid}-`))).toEqual([])

      // From the restart on, B never lists the asset before its whole content is in place.
      const violations: Array<string> = []
      const inspect = (data: string, records: ReadonlyArray<AssetRecord>) =>
        Effect.gen(function*() {
          const listed = records.find((r) => r.hash === hash)
          if (data !== b || listed === undefined) return
          if (listed.size !== big.size) violations.push(`listed with size ${listed.size}`)
          const onDisk = yield* sizeOf(objectPath)
          if (onDisk !== big.size) violations.push(`listed while its file holds ${onDisk} bytes`)
        })
      yield* s.converged([a, b], { expected: new Set([hash!]), inspect })
      expect(violations).toEqual([])

      // Resumed from the partial's last checkpoint: fewer bytes than the whole asset crossed again.
      const received = yield* s.counters(second, idA, (p) => p.assetsReceived >= 1)
      expect(received).toMatchObject({ verificationFailures: 0 })
      expect(received.bytesReceived).toBeLessThan(big.size)
      const verified = yield* s.verify(b)
      expect(verified.stdout).toContain("1 assets checked, 0 damaged")
      expect(verified.code).toBe(0)
      expect(yield* s.tmpFiles(b)).toEqual([])
      expect(yield* sizeOf(partialPath)).toBe(-1)
    }), TEST_TIMEOUT)
})
