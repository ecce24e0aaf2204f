/**
 * Range reconciliation as a specification: two random sets with random differences (assets on one
 * side only, and metadata-only differences) reconciled in memory — both sides end knowing exactly
 * the symmetric difference, whichever side starts; equal sets take one round trip; the incremental
 * fingerprint table equals a fresh computation; a peer that answers what it was not asked is refused.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue, Result } from "effect"
import fc from "fast-check"
import * as Fingerprints from "../src/Fingerprints.ts"
import * as Proto from "../src/proto/sync.ts"
import * as RangeFrames from "../src/RangeFrames.ts"
import type { RangeItem } from "../src/Fingerprints.ts"
import * as RangeReconcile from "../src/RangeReconcile.ts"

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")

/** A hash; with `crowded`, the first 8 hex digits come from {0, 1}, so ranges must split below the bucket table's depth. */
const hashArb = (crowded: boolean) =>
  crowded
    ? fc.tuple(fc.array(fc.constantFrom("0", "1"), { minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 28, maxLength: 28 }))
      .map(([head, tail]) => head.join("") + hex(tail))
    : fc.uint8Array({ minLength: 32, maxLength: 32 }).map(hex)

const versionArb = fc.record({ updatedAt: fc.integer({ min: 0, max: 2_000_000_000_000 }), origin: fc.constantFrom("store-a", "store-b", "store-c") })

/** Where each asset lives: both sides alike, one side only, or both with different metadata versions. */
const placement = fc.constantFrom("both", "both", "both", "both", "onlyA", "onlyB", "metaDiffers")

const scenario = (crowded: boolean) =>
  fc.uniqueArray(
    fc.record({ hash: hashArb(crowded), size: fc.nat({ max: 1_000_000 }), version: versionArb, other: versionArb, place: placement }),
    { selector: (r) => r.hash, maxLength: 400 }
  )

type Scenario = ReadonlyArray<{
  hash: string
  size: number
  version: { updatedAt: number; origin: string }
  other: { updatedAt: number; origin: string }
  place: string
}>

const sorted = (items: Array<RangeItem>) => items.sort((x, y) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0))

const sides = (assets: Scenario) => {
  const a: Array<RangeItem> = []
  const b: Array<RangeItem> = []
  for (const asset of assets) {
    const item = { hash: asset.hash, size: asset.size, ...asset.version }
    if (asset.place !== "onlyB") a.push(item)
    if (asset.place === "onlyA") continue
    if (asset.place === "metaDiffers") {
      // a metadata-only difference: another version (forced to differ from A's)
      const other = asset.other.updatedAt === asset.version.updatedAt && asset.other.origin === asset.version.origin
        ? { ...asset.other, updatedAt: asset.other.updatedAt + 1 }
        : asset.other
      b.push({ hash: asset.hash, size: asset.size, ...other })
    } else b.push(item)
  }
  return { a: sorted(a), b: sorted(b) }
}

const key = (item: RangeItem) => `${item.hash}/${item.updatedAt}/${item.origin}/${item.size}`
const keys = (items: ReadonlyArray<RangeItem>) => items.map(key).sort()

/** Reconcile `mine` (initiator) with `theirs` and check both outcomes against the true difference. */
const checkPair = (mine: ReadonlyArray<RangeItem>, theirs: ReadonlyArray<RangeItem>, options: RangeReconcile.Options) => {
  const run = RangeReconcile.runPair(
    RangeReconcile.make(Fingerprints.memorySource(mine), options),
    RangeReconcile.make(Fingerprints.memorySource(theirs), options)
  )
  const { initiator, responder, messages } = Effect.runSync(run)
  const theirsBy = new Map(theirs.map((i) => [i.hash, i]))
  const mineBy = new Map(mine.map((i) => [i.hash, i]))
  const onlyMine = mine.filter((i) => !theirsBy.has(i.hash))
  const onlyTheirs = theirs.filter((i) => !mineBy.has(i.hash))
  const differs = mine.filter((i) => {
    const t = theirsBy.get(i.hash)
    return t !== undefined && (t.updatedAt !== i.updatedAt || t.origin !== i.origin)
  })
  expect(keys(initiator.weLack)).toEqual(keys(onlyTheirs))
  expect(keys(initiator.theyLack)).toEqual(keys(onlyMine))
  expect(keys(responder.weLack)).toEqual(keys(onlyMine))
  expect(keys(responder.theyLack)).toEqual(keys(onlyTheirs))
  expect(keys(initiator.versionDiffers.map((d) => d.ours))).toEqual(keys(differs))
  expect(keys(initiator.versionDiffers.map((d) => d.theirs))).toEqual(keys(differs.map((i) => theirsBy.get(i.hash)!)))
  expect(keys(responder.versionDiffers.map((d) => d.theirs))).toEqual(keys(differs))
  expect(keys(responder.versionDiffers.map((d) => d.ours))).toEqual(keys(differs.map((i) => theirsBy.get(i.hash)!)))
  return messages
}

const optionSets: ReadonlyArray<RangeReconcile.Options> = [
  RangeReconcile.defaultOptions,
  // tiny lists: every difference is chased down through many splits
  { listThreshold: 1, maxList: 3, maxItems: 1_000_000 },
  { listThreshold: 0, maxList: 0, maxItems: 1_000_000 }
]

describe("RangeReconcile", () => {
  it("both sides end knowing exactly the symmetric difference (assets and metadata versions), either side starting", () => {
    fc.assert(
      fc.property(fc.boolean().chain(scenario), fc.constantFrom(...optionSets), (assets, options) => {
        const { a, b } = sides(assets)
        checkPair(a, b, options)
        checkPair(b, a, options)
      }),
      { numRuns: 200 }
    )
  })

  it("finds the differences between larger sets (5,000 items, 1 % differing) with the default options", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        let state = seed
        const next = () => (state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0)
        const assets = Array.from({ length: 5_000 }, (_, i) => {
          const r = (next() >>> 8) % 100
          const hash = hex(Uint8Array.from({ length: 32 }, () => next() >>> 24)).slice(0, 60) + i.toString(16).padStart(4, "0")
          return { hash, size: i, version: { updatedAt: 1_000 + i, origin: "s" }, other: { updatedAt: 2_000 + i, origin: "t" }, place: r === 0 ? "onlyA" : r === 1 ? "onlyB" : r === 2 ? "metaDiffers" : "both" }
        })
        const { a, b } = sides(assets)
        checkPair(a, b, RangeReconcile.defaultOptions)
      }),
      { numRuns: 5 }
    )
  })

  it("drive runs both sides at once over message queues, and toDiff says what to Want and which metadata to send", () => {
    const item = (n: number, updatedAt: number) => ({ hash: n.toString(16).padStart(2, "0").repeat(32), size: n, updatedAt, origin: "s" })
    const a = [item(1, 1), item(2, 1), item(3, 5)]
    const b = [item(2, 1), item(3, 4), item(4, 1)]
    const program = Effect.gen(function*() {
      const toB = yield* Queue.bounded<RangeReconcile.Message>(1)
      const toA = yield* Queue.bounded<RangeReconcile.Message>(1)
      const [atA, atB] = yield* Effect.all([
        RangeReconcile.drive(RangeReconcile.make(Fingerprints.memorySource(a)), "initiator", { send: (m) => Queue.offer(toB, m), receive: Queue.take(toA) }),
        RangeReconcile.drive(RangeReconcile.make(Fingerprints.memorySource(b)), "responder", { send: (m) => Queue.offer(toA, m), receive: Queue.take(toB) })
      ], { concurrency: 2 })
      return { atA: RangeReconcile.toDiff(atA), atB: RangeReconcile.toDiff(atB) }
    })
    const { atA, atB } = Effect.runSync(program)
    expect(atA).toEqual({ missing: [{ hash: item(4, 1).hash, size: 4 }], newerHere: [item(3, 5).hash] })
    expect(atB).toEqual({ missing: [{ hash: item(1, 1).hash, size: 1 }], newerHere: [] })
  })

  it("a message travels as RangeRound frames within the frame limit, each the protobuf size roundBytes says, and is put back together", () => {
    // The RangeRound schema of docs/protocol.md written out with the protobuf writer the generated code uses.
    const encode = (round: RangeFrames.RangeRoundWire): number => {
      const w = new BinaryWriter()
      for (const entry of round.entries) {
        const e = w.uint32(10).fork()
        if (entry.prefix !== "") e.uint32(10).string(entry.prefix)
        if (entry.kind !== 0) e.uint32(16).int32(entry.kind)
        if (entry.sums.length > 0) e.uint32(26).bytes(entry.sums)
        if (entry.counts.length > 0) {
          e.uint32(34).fork()
          for (const c of entry.counts) e.uint64(c)
          e.join()
        }
        for (const item of entry.items) {
          const i = e.uint32(42).fork()
          i.uint32(10).bytes(item.hash)
          if (item.size !== 0) i.uint32(16).uint64(item.size)
          if (item.updatedAt !== 0) i.uint32(24).int64(item.updatedAt)
          if (item.origin !== 0) i.uint32(32).uint32(item.origin)
          i.join()
        }
        if (entry.lacking.length > 0) {
          e.uint32(50).fork()
          for (const l of entry.lacking) e.uint32(l)
          e.join()
        }
        e.join()
      }
      for (const o of round.origins) w.uint32(18).string(o)
      if (round.last) w.uint32(24).bool(true)
      return w.finish().length
    }
    const assets = Array.from({ length: 600 }, (_, i) => ({
      hash: hex(Uint8Array.from({ length: 32 }, (_, j) => (i * 131 + j * 71 + ((i * j) % 13)) & 0xff)),
      size: i * 977,
      version: { updatedAt: 1_700_000_000_000 + i, origin: ["s1", "s22", "s333", "é-store"][i % 4]! },
      other: { updatedAt: 1_700_000_000_500 + i, origin: "other" },
      place: ["both", "onlyA", "onlyB", "metaDiffers", "onlyA"][i % 5]!
    })).filter((a, i, all) => all.findIndex((o) => o.hash === a.hash) === i)
    const { a, b } = sides(assets)
    const messages = [
      ...checkPair(a, b, { listThreshold: 4, maxList: 50, maxItems: 10_000 }),
      ...checkPair(a, [], RangeReconcile.defaultOptions) // one Reply with every item of A
    ]
    expect(messages.length).toBeGreaterThan(4)
    for (const limit of [4_096, 1024 * 1024]) {
      let frames = 0
      for (const message of messages) {
        const rounds = RangeFrames.toRounds(message, limit)
        frames += rounds.length
        expect(rounds.map((r) => r.last)).toEqual(rounds.map((_, i) => i === rounds.length - 1))
        const assembler = RangeFrames.makeAssembler()
        let back: RangeReconcile.Message | undefined
        for (const round of rounds) {
          const size = RangeFrames.roundBytes(round)
          expect(size).toBe(encode(round))
          expect(size + 5).toBeLessThanOrEqual(limit)
          back = Result.getOrThrow(assembler.add(round))
        }
        expect(back).toEqual(message)
      }
      if (limit === 4_096) expect(frames).toBeGreaterThan(messages.length)
    }
  })

  it("driveFrames reconciles both sides at once over queues of RangeRound frames cut to a small frame limit", () => {
    const assets = Array.from({ length: 2_000 }, (_, i) => ({
      hash: hex(Uint8Array.from({ length: 32 }, (_, j) => (i * 197 + j * 89 + ((i * j) % 31)) & 0xff)).slice(0, 60) + i.toString(16).padStart(4, "0"),
      size: i,
      version: { updatedAt: 1_000 + i, origin: "s" },
      other: { updatedAt: 5_000 + i, origin: "t" },
      place: i % 10 === 0 ? "onlyA" : i % 10 === 1 ? "metaDiffers" : i < 1_000 ? "both" : "onlyB"
    }))
    const { a, b } = sides(assets)
    const program = Effect.gen(function*() {
      const toB = yield* Queue.bounded<RangeFrames.RangeRoundWire>(2)
      const toA = yield* Queue.bounded<RangeFrames.RangeRoundWire>(2)
      return yield* Effect.all([
        RangeFrames.driveFrames(RangeReconcile.make(Fingerprints.memorySource(a)), "initiator", 4_096, { send: (r) => Queue.offer(toB, r), take: Queue.take(toA) }),
        RangeFrames.driveFrames(RangeReconcile.make(Fingerprints.memorySource(b)), "responder", 4_096, { send: (r) => Queue.offer(toA, r), take: Queue.take(toB) })
      ], { concurrency: 2 })
    })
    const [atA, atB] = Effect.runSync(program)
    const bBy = new Set(b.map((i) => i.hash))
    const aBy = new Set(a.map((i) => i.hash))
    expect(keys(atA.weLack)).toEqual(keys(b.filter((i) => !aBy.has(i.hash))))
    expect(keys(atB.weLack)).toEqual(keys(a.filter((i) => !bBy.has(i.hash))))
    expect(atA.versionDiffers.length).toBe(200)
    expect(atB.versionDiffers.length).toBe(200)
  })

  it("the assembler refuses a peer's frames past the item bound, even when none says last (H-C's finding)", () => {
    const assembler = RangeFrames.makeAssembler(5_000)
    const item = { hash: new Uint8Array(32), size: 1, updatedAt: 1, origin: 0 }
    const round = {
      entries: [{ prefix: "", kind: Proto.RangeKind.LIST, sums: new Uint8Array(0), counts: [], items: Array.from({ length: 1_000 }, () => item), lacking: [] }],
      origins: ["o"],
      last: false
    }
    const results = Array.from({ length: 6 }, () => assembler.add(round))
    expect(results.slice(0, 4).every(Result.isSuccess)).toBe(true)
    const refused = results[5]!
    expect(Result.isFailure(refused) && refused.failure._tag === "RangeViolation").toBe(true)
  })

  it("equal sets reconcile in one round trip, and so do two empty sets", () => {
    const items = sorted(Array.from({ length: 3_000 }, (_, i) => ({
      hash: hex(Uint8Array.from({ length: 32 }, (_, j) => (i * 7919 + j * 104_729 + ((i * j) >>> 3)) & 0xff)),
      size: i,
      updatedAt: i,
      origin: "s"
    })).filter((item, i, all) => all.findIndex((o) => o.hash === item.hash) === i))
    expect(checkPair(items, items, RangeReconcile.defaultOptions)).toHaveLength(2)
    expect(checkPair([], [], RangeReconcile.defaultOptions)).toHaveLength(2)
  })

  it("the incremental table equals a fresh computation after adds, metadata edits and removals", () => {
    fc.assert(
      fc.property(scenario(false), fc.array(fc.nat(), { maxLength: 50 }), (assets, edits) => {
        const items = assets.map((a) => ({ hash: a.hash, size: a.size, ...a.version }))
        const table = Fingerprints.makeTable()
        for (const item of items) table.add(item)
        const current = new Map(items.map((i) => [i.hash, i]))
        for (const e of edits) {
          if (items.length === 0) break
          const item = items[e % items.length]!
          const now = current.get(item.hash)
          if (now === undefined) continue
          if (e % 3 === 0) {
            table.remove(now)
            current.delete(item.hash)
          } else {
            const edited = { ...now, updatedAt: now.updatedAt + 1 + e }
            table.replace(now, edited)
            current.set(item.hash, edited)
          }
        }
        const all = [...current.values()]
        expect(Fingerprints.equals(table.fingerprint(""), Fingerprints.ofItems(all))).toBe(true)
        for (const prefix of ["3", "a7", "f00", "0c1d"]) {
          expect(Fingerprints.equals(table.fingerprint(prefix), Fingerprints.ofItems(all.filter((i) => i.hash.startsWith(prefix))))).toBe(true)
        }
        expect(table.size()).toBe(all.length)
      }),
      { numRuns: 100 }
    )
  })

  it("a metadata edit changes the fingerprint; the same set in another order does not", () => {
    const a = { hash: "ab".repeat(32), size: 1, updatedAt: 5, origin: "x" }
    const b = { hash: "cd".repeat(32), size: 2, updatedAt: 6, origin: "y" }
    expect(Fingerprints.equals(Fingerprints.ofItems([a, b]), Fingerprints.ofItems([b, a]))).toBe(true)
    expect(Fingerprints.equals(Fingerprints.ofItems([a, b]), Fingerprints.ofItems([{ ...a, updatedAt: 6 }, b]))).toBe(false)
    expect(Fingerprints.equals(Fingerprints.ofItems([a, b]), Fingerprints.ofItems([{ ...a, origin: "z" }, b]))).toBe(false)
  })

  it("refuses a peer message that answers a range it was not asked, or leaves a List unanswered", () => {
    const item = { hash: "0".repeat(64), size: 1, updatedAt: 1, origin: "s" }
    const other = { hash: "1".repeat(64), size: 1, updatedAt: 1, origin: "s" }
    const session = RangeReconcile.make(Fingerprints.memorySource([item]))
    const refused = (message: RangeReconcile.Message) => {
      const result = Effect.runSync(Effect.result(session.receive(message)))
      expect(Result.isFailure(result) && result.failure._tag === "RangeViolation").toBe(true)
    }
    Effect.runSync(session.start)
    refused({ entries: [{ _tag: "Split", prefix: "00", children: [] }] })
    refused({ entries: [{ _tag: "List", prefix: "0", items: [other] }] })
    refused({ entries: [{ _tag: "Reply", prefix: "0", items: [], lacking: [0] }] })
    // a List of range "1" is fine, and answered
    const { reply } = Effect.runSync(session.receive({ entries: [{ _tag: "List", prefix: "1", items: [other] }] }))
    expect(reply?.entries).toEqual([{ _tag: "Reply", prefix: "1", items: [], lacking: [0] }])
  })
})
