/**
 * Reconcile cost benchmark (`node bench/reconcile.ts`, or `pnpm bench reconcile`): two in-memory
 * sets of N = 10k / 100k / 1M digests per side differing in d = 0 / 10 / 1,000 (a third only on each
 * side, a third metadata-only), reconciled by range reconciliation (RangeReconcile over Fingerprints)
 * and by today's full exchange (DigestChunk frames, real protobuf, decode, diff) on the same sets.
 * Bytes both ways, round trips, CPU time in one process (no link latency). Writes bench/results/reconcile.json.
 */
import * as Fingerprints from "../packages/core/src/Fingerprints.ts"
import * as RangeFrames from "../packages/core/src/RangeFrames.ts"
import * as RangeReconcile from "../packages/core/src/RangeReconcile.ts"
import { Proto } from "@can-sync/core"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

type Item = Fingerprints.RangeItem

const sizes = process.argv.includes("--quick") ? [10_000, 100_000] : [10_000, 100_000, 1_000_000]
const differences = [0, 10, 1_000]
const DIGESTS_PER_CHUNK = 1_000
const MAX_FRAME_BYTES = 1024 * 1024
const FRAME_HEADER = 5
const T0 = 1_760_000_000_000

const round = (n: number) => Math.round(n * 1000) / 1000
const byHash = (x: Item, y: Item) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0)
const newItem = (i: number): Item => ({
  hash: randomBytes(32).toString("hex"),
  size: 1_000 + (i % 100_000),
  updatedAt: T0 + i,
  origin: randomBytes(16).toString("hex").slice(0, 32 - (i % 3)) // a few stores' ids
})
const origins = [newItem(0).origin, newItem(1).origin, newItem(2).origin]
const baseSet = (n: number): Array<Item> =>
  Array.from({ length: n }, (_, i) => ({ ...newItem(i), origin: origins[i % 3]! })).sort(byHash)

/** B is A with d differences: a third removed (only at A), a third new (only at B), a third with another metadata version. */
const withDifferences = (a: ReadonlyArray<Item>, d: number): Array<Item> => {
  const b = [...a]
  const step = Math.max(1, Math.floor(a.length / (d + 1)))
  const removed = new Set<number>()
  for (let k = 0; k < d; k++) {
    const at = (k + 1) * step
    if (k % 3 === 0) removed.add(at)
    else if (k % 3 === 2) b[at] = { ...a[at]!, updatedAt: a[at]!.updatedAt + 1, origin: origins[(k + 1) % 3]! }
  }
  const kept = b.filter((_, i) => !removed.has(i))
  for (let k = 0; k < d; k++) if (k % 3 === 1) kept.push({ ...newItem(k), origin: origins[k % 3]! })
  return kept.sort(byHash)
}

const digestOf = (item: Item): Proto.AssetDigest => ({
  hash: item.hash,
  size: item.size,
  createdAt: T0,
  updatedAt: item.updatedAt,
  metaOrigin: item.origin
})

/** Today's exchange: each side encodes its set as DigestChunk frames; the other decodes them and diffs. */
const fullExchange = (a: ReadonlyArray<Item>, b: ReadonlyArray<Item>) => {
  const start = performance.now()
  let bytes = 0
  const send = (set: ReadonlyArray<Item>) => {
    const received = new Map<string, { updatedAt: number; origin: string }>()
    for (let i = 0; i < set.length || i === 0; i += DIGESTS_PER_CHUNK) {
      const chunk = set.slice(i, i + DIGESTS_PER_CHUNK)
      const payload = Proto.DigestChunk.encode({ digests: chunk.map(digestOf), last: i + DIGESTS_PER_CHUNK >= set.length }).finish()
      bytes += FRAME_HEADER + payload.length
      for (const d of Proto.DigestChunk.decode(payload).digests) received.set(d.hash, { updatedAt: d.updatedAt, origin: d.metaOrigin })
    }
    return received
  }
  const atB = send(a)
  const atA = send(b)
  const diff = (local: ReadonlyArray<Item>, remote: Map<string, { updatedAt: number; origin: string }>) => {
    const mine = new Set(local.map((i) => i.hash))
    let missing = 0
    for (const hash of remote.keys()) if (!mine.has(hash)) missing++
    return missing
  }
  const lacking = diff(a, atA) + diff(b, atB)
  return { bytes, roundTrips: 1, ms: round(performance.now() - start), lacking }
}

const rangeExchange = (a: RangeReconcile.Session<never>, b: RangeReconcile.Session<never>) => {
  const start = performance.now()
  const { initiator, responder, messages } = Effect.runSync(RangeReconcile.runPair(a, b))
  const ms = performance.now() - start
  return {
    bytes: messages.reduce((n, m) => n + RangeFrames.messageBytes(m, MAX_FRAME_BYTES), 0),
    messages: messages.length,
    roundTrips: Math.ceil(messages.length / 2),
    ms: round(ms),
    found: {
      lacking: initiator.weLack.length + responder.weLack.length,
      metadataOnly: initiator.versionDiffers.length
    }
  }
}

const rows: Array<Record<string, unknown>> = []
for (const n of sizes) {
  const a = baseSet(n)
  const t0 = performance.now()
  const sourceA = Fingerprints.memorySource(a)
  const tableBuildMs = round(performance.now() - t0)
  // Every range run of this N first, then the full exchanges: the latter leave a heap of garbage behind.
  const cases = differences.map((d) => ({ d, b: withDifferences(a, d) }))
  const ranges = cases.map(({ b }) => rangeExchange(RangeReconcile.make(sourceA), RangeReconcile.make(Fingerprints.memorySource(b))))
  cases.forEach(({ b, d }, i) => {
    const range = ranges[i]!
    const full = fullExchange(a, b)
    const expectedLacking = Math.ceil(d / 3) + Math.floor((d + 1) / 3)
    if (range.found.lacking !== expectedLacking || full.lacking !== expectedLacking) {
      throw new Error(`N=${n} d=${d}: range found ${range.found.lacking}, full ${full.lacking}, expected ${expectedLacking}`)
    }
    rows.push({ n, d, range, full, tableBuildMs, bytesRatio: round(full.bytes / range.bytes) })
    console.error(
      `reconcile N=${n} d=${d}: range ${range.bytes} B in ${range.roundTrips} round trips, ${range.ms} ms; full ${full.bytes} B, ${full.ms} ms`
    )
  })
}

const result = {
  bench: "reconcile",
  at: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  loadAverageAtEnd: loadavg().map(round),
  note: "in-memory sources, one process, no link latency: ms is CPU time of both sides; range bytes are the RangeRound frames' protobuf size (RangeFrames.messageBytes, 1 MiB frames), full bytes real DigestChunk frames; tableBuildMs is the one-pass build of a side's fingerprint table (a store keeps it incrementally)",
  options: RangeReconcile.defaultOptions,
  rows
}
const out = join(dirname(fileURLToPath(import.meta.url)), "results")
mkdirSync(out, { recursive: true })
writeFileSync(join(out, "reconcile.json"), JSON.stringify(result, null, 2) + "\n")
console.log(JSON.stringify(result))
