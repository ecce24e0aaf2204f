/**
 * Sync engine benchmark (`node bench/engine.ts`, or `pnpm bench engine`): two agents with
 * embedded stores on tmpfs (so the engine, not fsync, is measured) dialing each other over
 * in-memory links.
 *  1. transfer: a large asset each way at once; MB/s both directions together, and as a ratio of
 *     the store's own ingest rate for the same bytes measured in the same run (the ceiling).
 *  2. reconcile: 100k vs 100k digests differing in 100 (50 only on each side), from dial to both
 *     sides live with the 100 stored; also 100k vs 100k identical, and the digest bytes exchanged.
 * Prints one JSON line and writes bench/results/engine.json.
 */
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerManager from "@can-sync/core/PeerManager"
import type { AssetHash, PeerId, PeerLink } from "@can-sync/core"
import * as AssetIndex from "@can-sync/store/AssetIndex"
import { EmbeddedStore } from "@can-sync/store"
import { Effect } from "effect"
import type { Scope } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { content as pseudoRandom } from "../test/engine/harness.ts"

/** Deterministic pseudo-random content in 1 MiB chunks (the engine tests' generator). */
const content = (seed: number, size: number) => pseudoRandom(seed, size, MiB)

const MiB = 1024 * 1024
const TRANSFER_BYTES = Number(process.env.ENGINE_BENCH_MIB ?? 256) * MiB
const DIGESTS = Number(process.env.ENGINE_BENCH_DIGESTS ?? 100_000)
const DIFFERING = 100
const scratch = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()

const tempDir = (name: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(scratch, `can-sync-bench-${name}-`))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )


const agent = (name: string, dir: string) =>
  Effect.gen(function*() {
    const id = name as PeerId
    const store = yield* EmbeddedStore.make({ dataDir: dir })
    const manager = yield* PeerManager.make(EngineConfig.make({ localPeerId: id, pollInterval: "1 hour" }), store)
    return { id, store, manager }
  })
type Agent = Effect.Success<ReturnType<typeof agent>>

/** a and b dial each other over an in-memory network; counts the bytes of every frame, by kind. */
const link = (a: Agent, b: Agent, bytesByKind: Map<string, number>) =>
  Effect.gen(function*() {
    const count = (frame: Uint8Array) => {
      const kind = Frame.decode(frame)
      const tag = kind._tag === "Success" ? kind.success._tag : "invalid"
      bytesByKind.set(tag, (bytesByKind.get(tag) ?? 0) + frame.length)
    }
    const counted = (link: PeerLink): PeerLink => ({ ...link, send: (f) => Effect.sync(() => count(Frame.join(f))).pipe(Effect.andThen(link.send(f))) })
    const net = yield* InMemoryLink.network()
    yield* a.manager.dial(b.id, net.connect(a.id, b.id).pipe(Effect.map(counted)))
    yield* b.manager.dial(a.id, net.connect(b.id, a.id).pipe(Effect.map(counted)))
  })

const until = (check: Effect.Effect<boolean, unknown>) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("5 millis")
  })

const bothLive = (a: Agent, b: Agent) =>
  Effect.all([a.manager.sessions, b.manager.sessions]).pipe(
    Effect.map(([sa, sb]) => sa.some((s) => s.state === "live") && sb.some((s) => s.state === "live"))
  )

const assetCount = (x: Agent) => x.store.stats.pipe(Effect.map((s) => s.assets))

const transfer = Effect.gen(function*() {
  const a = yield* agent("a", yield* tempDir("a"))
  const b = yield* agent("b", yield* tempDir("b"))
  // Baseline: the store's own ingest rate for the same bytes (hash + write), one asset per store at once.
  const t0 = performance.now()
  yield* Effect.all([a.store.ingest(content(1, TRANSFER_BYTES)), b.store.ingest(content(2, TRANSFER_BYTES))], { concurrency: 2 })
  const ingestSeconds = (performance.now() - t0) / 1000
  const bytes = new Map<string, number>()
  const cpu0 = process.cpuUsage()
  const t1 = performance.now()
  yield* link(a, b, bytes)
  yield* until(Effect.all([assetCount(a), assetCount(b)]).pipe(Effect.map(([x, y]) => x === 2 && y === 2)))
  const cpu = process.cpuUsage(cpu0)
  const seconds = (performance.now() - t1) / 1000
  const total = 2 * TRANSFER_BYTES
  return {
    bytesEachWay: TRANSFER_BYTES,
    seconds: round(seconds),
    mbPerSecondBothDirections: round(total / 1e6 / seconds),
    mbPerSecondEachWay: round(TRANSFER_BYTES / 1e6 / seconds),
    storeIngestMbPerSecond: round(total / 1e6 / ingestSeconds),
    ratioToStoreIngest: round(ingestSeconds / seconds),
    /** Main-thread + libuv CPU seconds of this process during the transfer (both agents). */
    cpuSeconds: round((cpu.user + cpu.system) / 1e6),
    frameBytes: Object.fromEntries(bytes)
  }
}).pipe(Effect.scoped)

/** A store whose index holds `shared` identical fake digests (no content: never transferred), plus real assets. */
const prefilled = (name: string, shared: number, uniqueSeed: number) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(name)
    yield* Effect.scoped(EmbeddedStore.make({ dataDir: dir })) // lays out the directory
    yield* Effect.scoped(Effect.gen(function*() {
      const index = yield* AssetIndex.open(join(dir, "index.sqlite"))
      const meta = { description: "", tags: [], trashed: false, createdAt: 1, updatedAt: 1, origin: "bench" }
      const assets = Array.from({ length: shared }, (_, i) => ({
        hash: createHash("sha256").update(`shared-${i}`).digest("hex") as AssetHash,
        size: 1000,
        meta
      }))
      yield* index.insertMany(assets, "local", 1)
    }))
    const x = yield* agent(name, dir)
    for (let i = 0; i < DIFFERING / 2; i++) yield* x.store.ingest(content(uniqueSeed * 1000 + i, 1000))
    return x
  })

const reconcile = (differing: boolean) =>
  Effect.gen(function*() {
    const shared = differing ? DIGESTS - DIFFERING / 2 : DIGESTS
    const a = yield* prefilled("ra", shared, differing ? 1 : 0)
    const b = yield* prefilled("rb", shared, differing ? 2 : 0)
    const expected = differing ? shared + DIFFERING : shared + DIFFERING / 2
    const bytes = new Map<string, number>()
    const t0 = performance.now()
    yield* link(a, b, bytes)
    yield* until(bothLive(a, b))
    const liveSeconds = (performance.now() - t0) / 1000
    yield* until(Effect.all([assetCount(a), assetCount(b)]).pipe(Effect.map(([x, y]) => x === expected && y === expected)))
    const storedSeconds = (performance.now() - t0) / 1000
    const transferred = a.manager.stats(b.id).pipe(Effect.map((x) => x.assetsSent + x.assetsReceived))
    yield* until(transferred.pipe(Effect.map((n) => n >= (differing ? DIFFERING : 0)))) // counters follow the commit
    const stats = yield* a.manager.stats(b.id)
    return {
      digestsEachSide: expected - (differing ? DIFFERING / 2 : 0),
      differing: differing ? DIFFERING : 0,
      secondsToBothLive: round(liveSeconds),
      secondsToAllStored: round(storedSeconds),
      assetsTransferred: stats.assetsSent + stats.assetsReceived,
      digestChunkBytes: bytes.get("DigestChunk") ?? 0,
      wantBytes: bytes.get("Want") ?? 0
    }
  }).pipe(Effect.scoped)

const round = (n: number) => Math.round(n * 1000) / 1000

const main = Effect.gen(function*() {
  const transferResult = yield* transfer
  const reconcileDiffering = yield* reconcile(true)
  const reconcileIdentical = yield* reconcile(false)
  return {
    bench: "engine",
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadAverageAtEnd: loadavg().map(round),
    storage: scratch,
    transfer: transferResult,
    reconcile: { differingIn100: reconcileDiffering, identical: reconcileIdentical }
  }
})

const result = await Effect.runPromise(main)
const out = join(dirname(fileURLToPath(import.meta.url)), "results")
mkdirSync(out, { recursive: true })
writeFileSync(join(out, "engine.json"), JSON.stringify(result, null, 2) + "\n")
console.log(JSON.stringify(result))
