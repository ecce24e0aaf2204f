/**
 * The embedded store's range fingerprints (`ranges`, issue 13 item 1): after every kind of write —
 * an ingest, a local edit, a peer's merge, content set aside by verify, and writes by a second
 * store on the same directory (another process) — its fingerprints and items equal a fresh
 * recomputation from the full digest list.
 */
import type { AssetHash, CanStoreShape } from "@can-sync/core"
import * as Fingerprints from "@can-sync/core/Fingerprints"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import { tempDir } from "./fixtures/stores.ts"

const bytes = (seed: number) => new TextEncoder().encode(`range asset ${seed} `.repeat(1 + (seed % 7)))

const ingestSeeds = (store: CanStoreShape, seeds: ReadonlyArray<number>) =>
  Effect.forEach(seeds, (seed) => store.ingest(Stream.make(bytes(seed)), { description: `asset ${seed}` }).pipe(Effect.map((r) => r.hash)))

/** The reference: a memory source over every digest `list` gives (hash, size, metadata version). */
const recomputed = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const digests = []
    let since = 0
    while (true) {
      const page = yield* store.list({ since, limit: 500 })
      digests.push(...page.digests)
      if (page.done) break
      since = page.next
    }
    const items = digests
      .map((d) => ({ hash: d.hash as string, size: d.size, updatedAt: d.updatedAt, origin: d.metaOrigin }))
      .sort((x, y) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0))
    return { items, source: Fingerprints.memorySource(items) }
  })

const hex = (fp: Fingerprints.Fingerprint) => `${fp.count}:${Buffer.from(fp.sum).toString("hex")}`

/** Every short prefix, and the 4-, 5- and 6-digit prefixes of every item: whole-table and item-listed ranges. */
const prefixesOf = (items: ReadonlyArray<{ readonly hash: string }>) => {
  const out = new Set<string>([""])
  for (let i = 0; i < 256; i++) {
    out.add(i.toString(16).padStart(2, "0"))
    if (i < 16) out.add(i.toString(16))
  }
  for (const { hash } of items) for (const n of [3, 4, 5, 6]) out.add(hash.slice(0, n))
  return [...out]
}

/** The store's ranges agree with the recomputation on fingerprints and items; returns the item count. */
const agrees = (store: CanStoreShape, what: string) =>
  Effect.gen(function*() {
    const ranges = store.ranges
    assert.isDefined(ranges, "the embedded store provides ranges")
    if (ranges === undefined) return 0
    const { items, source } = yield* recomputed(store)
    const prefixes = prefixesOf(items)
    const expected = (yield* source.fingerprints(prefixes)).map(hex)
    const actual = (yield* ranges.fingerprints(prefixes)).map(hex)
    assert.deepStrictEqual(actual, expected, `fingerprints after ${what}`)
    assert.deepStrictEqual(yield* ranges.items(prefixes), yield* source.items(prefixes), `items after ${what}`)
    return items.length
  })

describe("EmbeddedStore ranges", () => {
  it.live("fingerprints and items match a fresh recomputation after ingest, edit, merge, verify and another process's writes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("can-ranges-")
      const store = yield* EmbeddedStore.make({ dataDir: dir })
      const first = yield* ingestSeeds(store, Array.from({ length: 60 }, (_, i) => i))
      assert.strictEqual(yield* agrees(store, "the first ingest (the table's build)"), 60)

      yield* ingestSeeds(store, [100, 101, 102])
      assert.strictEqual(yield* agrees(store, "more ingests"), 63)

      yield* store.editMeta(first[3]!, { description: "edited" })
      assert.strictEqual(yield* agrees(store, "a local edit"), 63)

      const current = Option.getOrThrow(yield* store.stat(first[4]!)).meta
      const merged = yield* store.mergeMeta(first[4]!, { ...current, tags: ["peer"], updatedAt: current.updatedAt + 5000, origin: "peer-x" }, "peer-x")
      assert.isTrue(merged.applied)
      assert.strictEqual(yield* agrees(store, "a peer's merge"), 63)

      // Damaged content: verify sets it aside, and it leaves the items as it leaves the digests.
      const damaged = first[5]! as AssetHash
      yield* Effect.promise(() => writeFile(join(dir, "objects", damaged.slice(0, 2), damaged), "damaged"))
      const verified = Array.from(yield* Stream.runCollect(store.verify))
      assert.deepStrictEqual(verified.filter((v) => !v.ok).map((v) => v.hash), [damaged])
      assert.strictEqual(yield* agrees(store, "verify set content aside"), 62)
      const bucket = damaged.slice(0, Fingerprints.BUCKET_DIGITS)
      const listed = (yield* store.ranges!.items([bucket]))[0]!
      assert.isFalse(listed.some((item) => item.hash === damaged))

      // Another process: a second store on the same directory ingests, edits, merges and verifies.
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* EmbeddedStore.make({ dataDir: dir })
        yield* ingestSeeds(other, [200, 201, 202, 203])
        yield* other.editMeta(first[6]!, { tags: ["from another process"] })
        const theirs = Option.getOrThrow(yield* other.stat(first[7]!)).meta
        yield* other.mergeMeta(first[7]!, { ...theirs, description: "merged elsewhere", updatedAt: theirs.updatedAt + 9000, origin: "peer-y" }, "peer-y")
        const alsoDamaged = first[8]! as AssetHash
        yield* Effect.promise(() => writeFile(join(dir, "objects", alsoDamaged.slice(0, 2), alsoDamaged), "damaged too"))
        yield* Stream.runDrain(other.verify)
        // The good copy of the first damaged asset comes back through the other process.
        yield* other.ingest(Stream.make(bytes(5)))
      }))
      assert.strictEqual(yield* agrees(store, "another process's writes"), 62 + 4 - 1 + 1)

      // A store opened afterwards builds its table from the rows alone, and agrees too.
      const reopened = yield* EmbeddedStore.make({ dataDir: dir })
      assert.strictEqual(yield* agrees(reopened, "a fresh open"), 66)
      const sameFingerprint = (yield* reopened.ranges!.fingerprints([""]))[0]!
      assert.isTrue(Fingerprints.equals(sameFingerprint, (yield* store.ranges!.fingerprints([""]))[0]!))
    }).pipe(Effect.scoped), 60_000)
})
