/**
 * `ls` and `ls --json` over more records than one page (issue 13, a million assets): they read the
 * index a page at a time and write as they read, and still print exactly what the store holds —
 * every asset whose content is present, in change order, content set aside by verify left out
 * (also at a page's edge) — as the one line per record and the one-line JSON array they always printed.
 */
import { LocalOrigin } from "@can-sync/core/Domain"
import type { AssetHash, AssetRecord } from "@can-sync/core/Domain"
import * as AssetIndex from "@can-sync/store/AssetIndex"
import * as EmbeddedStore from "@can-sync/store/EmbeddedStore"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { tempDir } from "../kit/Files.ts"
import { cleanEnv, repoRoot, runCli } from "../kit/Process.ts"

/** More than two of ls's 5,000-record pages. */
const COUNT = 12_345
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex") as AssetHash

const ls = (args: ReadonlyArray<string>) =>
  runCli(args, { cwd: repoRoot, env: cleanEnv({}), deadline: "120 seconds" }).pipe(Effect.map((ran) => {
    expect({ code: ran.code, stderr: ran.stderr }).toEqual({ code: 0, stderr: "" })
    return ran.stdout
  }))

describe("ls over many pages", () => {
  it.live("prints every present asset in change order, as lines and as one JSON array, skipping set-aside content at page edges", () =>
    Effect.gen(function*() {
      const data = yield* tempDir("ls-pages")
      // Index rows written in bulk (ls reads only the index); a few set aside, two at a page's edge.
      const hashes = Array.from({ length: COUNT }, (_, i) => sha256(`ls page ${i}`))
      const absent = new Set([0, 4_999, 5_000, 5_001, 9_999, COUNT - 1].map((i) => hashes[i]!))
      const expected = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* EmbeddedStore.make({ dataDir: data })
        const index = yield* AssetIndex.open(AssetIndex.pathIn(data))
        yield* index.insertMany(hashes.map((hash, i) => ({
          hash,
          size: i,
          meta: { description: `asset ${i}`, tags: i % 2 === 0 ? ["even"] : [], trashed: i % 7 === 0, createdAt: 1_700_000_000_000 + i, updatedAt: 1_700_000_000_000 + i, origin: store.storeId }
        })), LocalOrigin, 1_700_000_000_000)
        for (const hash of absent) yield* index.markAbsent(hash, LocalOrigin, 1_700_000_000_000)
        // The reference: the store's own pages of digests, each looked up.
        const records: Array<AssetRecord> = []
        let since = 0
        while (true) {
          const page = yield* store.list({ since, limit: 1_000 })
          for (const digest of page.digests) records.push(...Option.toArray(yield* store.stat(digest.hash)))
          if (page.done) break
          since = page.next
        }
        return records
      }))
      expect(expected.length).toBe(COUNT - absent.size)
      const json = yield* ls(["ls", "--data", data, "--json"])
      expect(json).toBe(`${JSON.stringify(expected)}\n`)
      const lines = (yield* ls(["ls", "--data", data])).split("\n")
      expect(lines.pop()).toBe("")
      expect(lines.length).toBe(expected.length)
      expect(lines.map((line) => line.split("  ")[0])).toEqual(expected.map((r) => r.hash))
      expect(lines[1]).toBe(`${expected[1]!.hash}  ${expected[1]!.size}  ${new Date(expected[1]!.meta.createdAt).toISOString()}  asset 2 #even`)
    }).pipe(Effect.scoped), 180_000)
})
