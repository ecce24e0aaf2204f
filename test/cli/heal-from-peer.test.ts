/**
 * Damage heals from a peer (issue 12, item 9), with real `can-sync` processes: content on B
 * overwritten in place (same size) or deleted is refused by `cat` (non-zero exit, never the wrong
 * bytes as a success), set aside by `verify`, and fetched again from A at the next sync, metadata
 * and all, until `verify` on B passes again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFile, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { all, hashesOf, Scenario, TEST_TIMEOUT } from "../e2e/Scenario.ts"

const objectPath = (data: string, hash: string) => join(data, "objects", hash.slice(0, 2), hash)

describe("can-sync heals damaged content from a peer", () => {
  it.live("a same-size corrupted file and a deleted one on B: cat fails, verify sets them aside, a sync with A brings the good bytes back", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("heal")
      const [a, b] = [s.path("a"), s.path("b")]
      const files = yield* s.smallFiles("files", "heal", 4)
      const big = yield* s.largeFile("big", "heal/big", 300 * 1024)
      const [signal, idA, idB] = yield* all([s.signal(), s.id(a), s.id(b), s.add(a, [...files.map((f) => f.path), big.path], { description: "from A" })])
      const expected = hashesOf([...files, big])
      const agentA = yield* s.agent("A", { data: a, signal: signal.url, peers: [idB] })
      let agentB = yield* s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      const before = yield* s.converged([a, b], { expected })
      yield* s.note("converged")
      expect(yield* agentB.proc.stop("SIGTERM", "10 seconds")).toEqual({ code: 0, signal: null })

      // Damage on B: the large file flipped in the middle (same size), a small one deleted.
      const good = yield* Effect.promise(() => readFile(objectPath(b, big.hash)))
      const bad = Buffer.from(good)
      bad[150 * 1024] = bad[150 * 1024]! ^ 0xff
      yield* Effect.promise(() => writeFile(objectPath(b, big.hash), bad))
      yield* Effect.promise(() => unlink(objectPath(b, files[0]!.hash)))

      const cat = yield* s.run(["cat", "--data", b, big.hash])
      expect(cat.code).toBe(1)
      expect(cat.stderr).toMatch(new RegExp(`^can-sync: store unavailable \\(read\\): content of ${big.hash} is damaged`))
      expect(cat.bytes.length).toBeLessThan(big.size)

      const verified = yield* s.verify(b)
      expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 1, stderr: "can-sync: 2 damaged asset(s)\n" })
      expect(verified.stdout).toContain(`DAMAGED  ${big.hash}  content is damaged`)
      expect(verified.stdout).toContain(`DAMAGED  ${files[0]!.hash}  content file is missing`)
      expect((yield* s.ls(b)).map((r) => r.hash).sort()).toEqual([...expected].filter((h) => h !== big.hash && h !== files[0]!.hash).sort())

      // The next sync with A fetches good copies; B's listing is A's again, metadata and all.
      agentB = yield* s.agent("B again", { data: b, signal: signal.url, peers: [agentA] })
      expect(yield* s.converged([a, b], { expected })).toEqual(before)
      expect((yield* Effect.promise(() => readFile(objectPath(b, big.hash)))).equals(good)).toBe(true)
      const healthy = yield* s.verify(b)
      expect({ code: healthy.code, stdout: healthy.stdout }).toEqual({ code: 0, stdout: "5 assets checked, 0 damaged\n" })
      const catAgain = yield* s.run(["cat", "--data", b, big.hash])
      expect({ code: catAgain.code, stderr: catAgain.stderr }).toEqual({ code: 0, stderr: "" })
      expect(catAgain.bytes.equals(good)).toBe(true)
    }), TEST_TIMEOUT)
})
