/**
 * Embedded store benchmark (`node bench/store.ts`): 1 GiB ingest against `sha256sum` on the same
 * file (and the ingesting process's peak RSS, for the store alone and for a whole `can-sync add`), small-ingest rate with full fsyncs, and `list` /
 * `events` query times on a store of 100k assets. Prints one JSON line and writes
 * `bench/results/store.json`.
 */
import type { AssetHash } from "@can-sync/core"
import { Effect, Stream } from "effect"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as AssetIndex from "../packages/store/src/AssetIndex.ts"
import * as EmbeddedStore from "../packages/store/src/EmbeddedStore.ts"
import { pseudoRandomChunks, pseudoRandomStream } from "../packages/store/test/fixtures/pseudoRandom.ts"

const here = dirname(fileURLToPath(import.meta.url))
const IngestFixture = join(here, "..", "packages", "store", "test", "fixtures", "ingest.ts")
const CliMain = join(here, "..", "packages", "cli", "src", "main.ts")
const GnuTime = "/usr/bin/time"
const BigBytes = 1024 * 1024 * 1024
const ManyAssets = 100_000
const SmallIngests = 500

const mib = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10
const round = (ms: number) => Math.round(ms * 1000) / 1000
const timed = <A>(f: () => A): [A, number] => {
  const start = performance.now()
  const a = f()
  return [a, performance.now() - start]
}
const timedEffect = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const a = yield* effect
    return [a, performance.now() - start] as const
  })
/** Median and max of `runs` timings of `effect`, in ms. */
const sample = <A, E, R>(runs: number, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    let last: A | undefined
    for (let i = 0; i < runs; i++) {
      const [a, ms] = yield* timedEffect(effect)
      times.push(ms)
      last = a
    }
    times.sort((x, y) => x - y)
    return { medianMs: round(times[Math.floor(times.length / 2)]!), maxMs: round(times.at(-1)!), runs, last }
  })

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "can-bench-store-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

const bigIngest = Effect.fn("bench.bigIngest")(function*(dir: string) {
  const file = join(dir, "big.bin")
  const [, writeMs] = timed(() => {
    const fd = openSync(file, "w")
    for (const chunk of pseudoRandomChunks("bench-store", BigBytes, 1024 * 1024)) writeSync(fd, chunk)
    fsyncSync(fd) // so its write-back does not compete with the measurements below
    closeSync(fd)
  })
  // Two rounds each, best reported: on a fresh VM the first gigabyte of page cache is slow to
  // fault in, which measures the machine rather than the store.
  const sha256sumRuns: Array<number> = []
  let sha256sumHash = ""
  for (let attempt = 0; attempt < 2; attempt++) {
    const [sum, ms] = timed(() => spawnSync("sha256sum", [file], { encoding: "utf8" }))
    if (sum.status !== 0) return yield* Effect.fail(new Error(`sha256sum failed: ${sum.stderr}`))
    sha256sumHash = sum.stdout.split(" ")[0] ?? ""
    sha256sumRuns.push(ms)
  }
  const ingestRuns: Array<{ hash: string; ms: number; wallMs: number; rssAtStartBytes: number; maxRssBytes: number }> = []
  for (let attempt = 0; attempt < 2; attempt++) {
    const storeDir = join(dir, `store-${attempt}`)
    const [child, wallMs] = timed(() =>
      spawnSync(process.execPath, [IngestFixture, "file", storeDir, file], { encoding: "utf8" })
    )
    if (child.status !== 0) return yield* Effect.fail(new Error(`ingest child failed: ${child.stderr}`))
    const report = JSON.parse(child.stdout.trim().split("\n").at(-1) ?? "{}") as {
      hash: string
      ms: number
      rssAtStartBytes: number
      maxRssBytes: number
    }
    ingestRuns.push({ ...report, wallMs })
    yield* Effect.promise(() => rm(storeDir, { recursive: true, force: true }))
  }
  // The user's path: a whole `can-sync add` process (CLI, store, ingestFile), its peak RSS read
  // by GNU time (`/usr/bin/time -f %M`, KiB) where the machine has it.
  const cliRuns: Array<{ wallMs: number; maxRssBytes: number | undefined; hash: string }> = []
  for (let attempt = 0; attempt < 2; attempt++) {
    const storeDir = join(dir, `cli-${attempt}`)
    const command = [process.execPath, CliMain, "add", "--data", storeDir, file]
    const withTime = existsSync(GnuTime)
    const [child, wallMs] = timed(() =>
      withTime
        ? spawnSync(GnuTime, ["-f", "maxrss-kib %M", ...command], { encoding: "utf8" })
        : spawnSync(command[0]!, command.slice(1), { encoding: "utf8" })
    )
    if (child.status !== 0) return yield* Effect.fail(new Error(`can-sync add failed: ${child.stderr}`))
    const kib = /maxrss-kib (\d+)/.exec(child.stderr)?.[1]
    cliRuns.push({ wallMs, maxRssBytes: kib === undefined ? undefined : Number(kib) * 1024, hash: child.stdout.split(" ")[0] ?? "" })
    yield* Effect.promise(() => rm(storeDir, { recursive: true, force: true }))
  }
  const cliBest = cliRuns.reduce((a, b) => (b.wallMs < a.wallMs ? b : a))
  const cliPeaks = cliRuns.flatMap((r) => (r.maxRssBytes === undefined ? [] : [r.maxRssBytes]))
  const sha256sumMs = Math.min(...sha256sumRuns)
  const best = ingestRuns.reduce((a, b) => (b.ms < a.ms ? b : a))
  return {
    bytes: BigBytes,
    writeFileMs: round(writeMs),
    sha256sumMs: round(sha256sumMs),
    sha256sumRunsMs: sha256sumRuns.map(round),
    sha256sumMBps: Math.round(mib(BigBytes) / (sha256sumMs / 1000)),
    ingestMs: round(best.ms),
    ingestRunsMs: ingestRuns.map((r) => round(r.ms)),
    ingestProcessWallMs: round(best.wallMs),
    ingestMBps: Math.round(mib(BigBytes) / (best.ms / 1000)),
    // the goal's ratio: ingest throughput over sha256sum's (≥ 0.7), i.e. sha256sum's time over ingest's
    ingestSpeedOverSha256sum: Math.round((sha256sumMs / best.ms) * 100) / 100,
    ingestPeakRssMiB: mib(Math.max(...ingestRuns.map((r) => r.maxRssBytes))),
    ingestRssAtStartMiB: mib(best.rssAtStartBytes),
    hashMatchesSha256sum: ingestRuns.every((r) => r.hash === sha256sumHash) && cliRuns.every((r) => r.hash === sha256sumHash),
    cliAddWallMs: round(cliBest.wallMs),
    cliAddMBps: Math.round(mib(BigBytes) / (cliBest.wallMs / 1000)),
    cliAddPeakRssMiB: cliPeaks.length === 0 ? null : mib(Math.max(...cliPeaks)),
    cliAddPeakRssMB: cliPeaks.length === 0 ? null : Math.round(Math.max(...cliPeaks) / 1e5) / 10
  }
})

const smallIngests = Effect.fn("bench.smallIngests")(function*(dir: string) {
  const store = yield* EmbeddedStore.make({ dataDir: join(dir, "small") })
  const [, ms] = yield* timedEffect(Effect.forEach(
    Array.from({ length: SmallIngests }, (_, i) => i),
    (i) => store.ingest(pseudoRandomStream(`small-${i}`, 4096)),
    { discard: true }
  ))
  return { assets: SmallIngests, bytesEach: 4096, totalMs: round(ms), perSecond: Math.round(SmallIngests / (ms / 1000)) }
})

const manyAssets = Effect.fn("bench.manyAssets")(function*(dir: string) {
  const dataDir = join(dir, "many")
  // The query is what is measured: index 100k assets in one transaction (no content files).
  const [, indexMs] = yield* timedEffect(Effect.scoped(Effect.gen(function*() {
    yield* Effect.scoped(EmbeddedStore.make({ dataDir })) // lays out the directory and schema
    const index = yield* AssetIndex.open(join(dataDir, "index.sqlite"))
    const now = Date.now()
    function* assets() {
      for (let i = 0; i < ManyAssets; i++) {
        const hash = createHash("sha256").update(`asset ${i}`).digest("hex") as AssetHash
        yield {
          hash,
          size: 1000 + i,
          meta: { description: `asset ${i}`, tags: ["bench"], trashed: false, createdAt: now, updatedAt: now, origin: index.storeId }
        }
      }
    }
    return yield* index.insertMany(assets(), "local", now)
  })))
  const store = yield* EmbeddedStore.make({ dataDir })
  const current = yield* store.currentSeq
  const nearEnd = yield* sample(50, store.list({ since: current - 100 }))
  const fullPage = yield* sample(50, store.list({ since: 50_000 }))
  const maxPage = yield* sample(10, store.list({ since: 20_000, limit: 10_000 }))
  const seq = yield* sample(50, store.currentSeq)
  const [replayed, replayMs] = yield* timedEffect(
    store.events({ since: 0 }).pipe(Stream.take(ManyAssets), Stream.runCount)
  )
  return {
    assets: ManyAssets,
    indexInsertMs: round(indexMs),
    listSinceNearEnd: { since: current - 100, digests: nearEnd.last?.digests.length, medianMs: nearEnd.medianMs, maxMs: nearEnd.maxMs },
    listFullPage: { limit: 1000, digests: fullPage.last?.digests.length, medianMs: fullPage.medianMs, maxMs: fullPage.maxMs },
    listMaxPage: { limit: 10_000, digests: maxPage.last?.digests.length, medianMs: maxPage.medianMs, maxMs: maxPage.maxMs },
    currentSeq: { medianMs: seq.medianMs, maxMs: seq.maxMs },
    eventsReplay: { events: replayed, ms: round(replayMs), perSecond: Math.round(replayed / (replayMs / 1000)) }
  }
})

const main = Effect.scoped(Effect.gen(function*() {
  const dir = yield* tempDir
  const big = yield* bigIngest(dir)
  const small = yield* smallIngests(dir)
  const many = yield* manyAssets(dir)
  const result = {
    bench: "store",
    at: new Date().toISOString(),
    node: process.version,
    bigIngest: big,
    smallIngests: small,
    manyAssets: many
  }
  mkdirSync(join(here, "results"), { recursive: true })
  writeFileSync(join(here, "results", "store.json"), JSON.stringify(result, null, 2) + "\n")
  process.stdout.write(JSON.stringify(result) + "\n")
}))

Effect.runPromise(main).then(
  () => undefined,
  (error: unknown) => {
    process.stderr.write(`bench/store failed: ${String(error)}\n`)
    process.exitCode = 1
  }
)
