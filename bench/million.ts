/**
 * A million assets (`pnpm bench million`; `node bench/million.ts --n 100000 --only ls,ranges` for a
 * smaller N or a part; BENCH_MILLION_N / BENCH_MILLION_DIR through `pnpm bench`):
 * builds embedded stores of N small assets fast (content files written straight into `objects/`,
 * index rows by `AssetIndex.insertMany` in large transactions — the store's own modules, not one
 * `add` at a time), then measures `ls`, `ls --json` and `verify` as real CLI processes (time, peak
 * RSS, progress), range reconciliation over the real stores' `ranges` (and through the CAN HTTP
 * service) for d = 0 / 10 / 1,000 differences, and two `can-sync sync` agents over the same N
 * assets (time to a live session, idle RSS; whether each store's index held a saved range table
 * — `--drop-range-table` removes them first, for an agent's first open of a store without one).
 * Writes bench/results/million.json. The fixture is kept in `--dir` (default
 * $TMPDIR/can-sync-million) and reused by later runs of the same N.
 */
import { LocalOrigin } from "@can-sync/core/Domain"
import * as Fingerprints from "@can-sync/core/Fingerprints"
import * as AssetIndex from "@can-sync/store/AssetIndex"
import * as EmbeddedStore from "@can-sync/store/EmbeddedStore"
import * as HttpService from "@can-sync/store/HttpService"
import * as HttpStore from "@can-sync/store/HttpStore"
import { Effect, Result } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import * as RangeFrames from "../packages/core/src/RangeFrames.ts"
import * as RangeReconcile from "../packages/core/src/RangeReconcile.ts"
import { Scenario } from "../test/e2e/harness.ts"

const here = dirname(fileURLToPath(import.meta.url))
const cliMain = join(here, "..", "packages", "cli", "src", "main.ts")
const arg = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const N = Number(arg("n") ?? process.env.BENCH_MILLION_N ?? 1_000_000)
const root = arg("dir") ?? process.env.BENCH_MILLION_DIR ?? join(tmpdir(), "can-sync-million")
/** `--only ls,verify` measures a part (the fixture is built when missing whatever is chosen). */
const only = (arg("only") ?? "ls,verify,ranges,agents").split(",")
const BATCH = 50_000
const MAX_FRAME_BYTES = 1024 * 1024
const round = (n: number) => Math.round(n * 1000) / 1000
const mb = (kib: number) => Math.round(kib / 1024)
const log = (line: string) => console.error(`bench million: ${line}`)

const contentOf = (i: number) => Buffer.from(`can-sync million ${i}\n`)
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")
const T0 = 1_760_000_000_000

// ---------------------------------------------------------------------------------------------
// The fixture: store `a` with N assets; `b` the same assets under another store id (a peer that
// synced with `a`); `d<k>` copies of a's index with k differences (for the range benchmark).
// ---------------------------------------------------------------------------------------------

const run = <A, E>(effect: Effect.Effect<A, E, never>) => Effect.runPromise(effect)

/** Creates an empty store in `dir` (layout, index, store id) exactly as the CLI does. */
const createStore = (dir: string) => run(Effect.scoped(Effect.asVoid(EmbeddedStore.make({ dataDir: dir }))))

/** Writes N content files and index rows into the store in `dir`, BATCH assets per transaction. */
const fill = async (dir: string) => {
  await createStore(dir)
  const objects = join(dir, "objects")
  for (let s = 0; s < 256; s++) mkdirSync(join(objects, s.toString(16).padStart(2, "0")), { recursive: true })
  await run(Effect.scoped(Effect.gen(function*() {
    const index = yield* AssetIndex.open(join(dir, "index.sqlite"))
    for (let start = 0; start < N; start += BATCH) {
      const batch: Array<AssetIndex.NewAsset> = []
      for (let i = start; i < Math.min(N, start + BATCH); i++) {
        const content = contentOf(i)
        const hash = sha256(content)
        writeFileSync(join(objects, hash.slice(0, 2), hash), content)
        const at = T0 + i
        batch.push({
          hash: hash as AssetIndex.NewAsset["hash"],
          size: content.length,
          meta: { description: `asset ${i}`, tags: i % 10 === 0 ? ["tenth"] : [], trashed: false, createdAt: at, updatedAt: at, origin: index.storeId }
        })
      }
      yield* index.insertMany(batch, LocalOrigin, T0)
      if ((start / BATCH) % 4 === 3) log(`fixture: ${start + batch.length} of ${N}`)
    }
  })))
  const db = new DatabaseSync(join(dir, "index.sqlite"))
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
  db.close()
}

/** A copy of `from`'s index (and, with `objects`, hard links to its content) under a new store id. */
const copyStore = (from: string, to: string, objects: boolean) => {
  rmSync(to, { recursive: true, force: true })
  mkdirSync(to, { recursive: true })
  copyFileSync(join(from, "index.sqlite"), join(to, "index.sqlite"))
  if (objects) {
    const cp = spawnSync("cp", ["-al", join(from, "objects"), join(to, "objects")])
    if (cp.status !== 0) throw new Error(`cp -al failed: ${cp.stderr}`)
  }
  const db = new DatabaseSync(join(to, "index.sqlite"))
  db.prepare("UPDATE meta SET value = ? WHERE key = 'storeId'").run(createHash("sha256").update(to).digest("hex").slice(0, 32))
  db.close()
}

/** k differences from a: a third set aside (only at a), a third new (only here), a third with a newer metadata version. */
const differ = (dir: string, k: number) =>
  run(Effect.scoped(Effect.gen(function*() {
    const index = yield* AssetIndex.open(join(dir, "index.sqlite"))
    const step = Math.floor(N / (k + 1))
    for (let j = 0; j < k; j++) {
      const hash = sha256(contentOf((j + 1) * step)) as AssetIndex.NewAsset["hash"]
      if (j % 3 === 0) yield* index.markAbsent(hash, LocalOrigin, T0)
      else if (j % 3 === 1) {
        const content = Buffer.from(`only at ${dir} ${j}\n`)
        yield* index.insert({
          hash: sha256(content) as AssetIndex.NewAsset["hash"],
          size: content.length,
          meta: { description: "", tags: [], trashed: false, createdAt: T0, updatedAt: T0, origin: index.storeId }
        }, LocalOrigin, T0)
      } else {
        yield* index.updateMeta(hash, (m) => Result.succeed({ ...m, description: "edited", updatedAt: m.updatedAt + 1 }), LocalOrigin, T0)
      }
    }
  })))

// ---------------------------------------------------------------------------------------------
// Measuring a CLI process: wall time, peak RSS (VmHWM, polled), stdout bytes/lines, stderr lines
// ---------------------------------------------------------------------------------------------

interface Measured {
  readonly seconds: number
  readonly peakRssMiB: number
  readonly exit: number | null
  readonly stdoutBytes: number
  readonly stdoutLines: number
  readonly firstOutputSeconds: number | undefined
  readonly stderrLines: ReadonlyArray<string>
}

const status = (pid: number, key: string): number => {
  try {
    const match = new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

const measure = (args: ReadonlyArray<string>) =>
  new Promise<Measured>((resolve) => {
    const started = performance.now()
    const child = spawn(process.execPath, [cliMain, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let peak = 0
    let bytes = 0
    let lines = 0
    let first: number | undefined
    let err = ""
    const poll = setInterval(() => (peak = Math.max(peak, status(child.pid!, "VmHWM"))), 100)
    child.stdout.on("data", (chunk: Buffer) => {
      first ??= (performance.now() - started) / 1000
      bytes += chunk.length
      for (const b of chunk) if (b === 10) lines++
    })
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
    child.on("exit", (code) => {
      clearInterval(poll)
      resolve({
        seconds: round((performance.now() - started) / 1000),
        peakRssMiB: mb(peak),
        exit: code,
        stdoutBytes: bytes,
        stdoutLines: lines,
        firstOutputSeconds: first === undefined ? undefined : round(first),
        stderrLines: err.split("\n").filter((l) => l !== "").slice(-20)
      })
    })
  })

// ---------------------------------------------------------------------------------------------
// Range reconciliation over the real stores
// ---------------------------------------------------------------------------------------------

const reconcile = <E>(a: Fingerprints.RangeSource<E>, b: Fingerprints.RangeSource<E>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const { initiator, responder, messages } = yield* RangeReconcile.runPair(RangeReconcile.make(a), RangeReconcile.make(b))
    return {
      bytes: messages.reduce((n, m) => n + RangeFrames.messageBytes(m, MAX_FRAME_BYTES), 0),
      messages: messages.length,
      roundTrips: Math.ceil(messages.length / 2),
      ms: round(performance.now() - started),
      lacking: initiator.weLack.length + responder.weLack.length,
      metadataOnly: initiator.versionDiffers.length
    }
  })

const rangesBench = (dirs: { readonly a: string; readonly d: ReadonlyArray<readonly [number, string]> }) =>
  run(Effect.scoped(Effect.gen(function*() {
    const a = yield* EmbeddedStore.make({ dataDir: dirs.a })
    const rows = []
    for (const [k, dir] of dirs.d) {
      const b = yield* EmbeddedStore.make({ dataDir: dir })
      // The first call builds each side's bucket table by one scan of its index (once per process).
      const t0 = performance.now()
      yield* b.ranges!.fingerprints([""])
      const tableBuildMs = round(performance.now() - t0)
      const t1 = performance.now()
      yield* a.ranges!.fingerprints([""])
      const tableBuildMsA = round(performance.now() - t1)
      const embedded = yield* reconcile(a.ranges!, b.ranges!)
      // The same, with b behind the CAN HTTP service (one process: loopback HTTP, no link latency).
      const service = yield* HttpService.serve(b, { port: 0, token: "bench" })
      const client = yield* HttpStore.make({ baseUrl: service.url, token: "bench" })
      const http = yield* reconcile(a.ranges!, client.ranges!)
      const expected = Math.ceil(k / 3) + Math.floor((k + 1) / 3)
      if (embedded.lacking !== expected || http.lacking !== expected) {
        throw new Error(`d=${k}: found ${embedded.lacking} (http ${http.lacking}) lacking, expected ${expected}`)
      }
      rows.push({ n: N, d: k, tableBuildMs: Math.max(tableBuildMs, tableBuildMsA), embedded, http })
      log(`ranges d=${k}: ${embedded.bytes} B, ${embedded.roundTrips} round trips, ${embedded.ms} ms (http ${http.ms} ms); table build ${tableBuildMs} ms`)
    }
    return rows
  })))

// ---------------------------------------------------------------------------------------------
// Two agents over the same N assets: time to a live session, idle RSS
// ---------------------------------------------------------------------------------------------

/** Whether the index in `dir` holds a saved range table (`--drop-range-table` deletes it first). */
const savedRangeTable = (dir: string, drop: boolean): boolean => {
  const db = new DatabaseSync(join(dir, "index.sqlite"))
  try {
    const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'range_table'").get() !== undefined
    if (exists && drop) db.exec("DELETE FROM range_table")
    return exists && db.prepare("SELECT 1 FROM range_table").get() !== undefined
  } finally {
    db.close()
  }
}

const agentsBench = async (dataA: string, dataB: string) => {
  const drop = process.argv.includes("--drop-range-table")
  const rangeTableSaved = [savedRangeTable(dataA, drop), savedRangeTable(dataB, drop)]
  const s = await Scenario.create("million")
  try {
    const idA = await s.id(dataA)
    const idB = await s.id(dataB)
    const signal = await s.signal()
    const started = performance.now()
    const a = await s.agent("a", { data: dataA, signal: signal.url, peers: [idB] })
    const b = await s.agent("b", { data: dataB, signal: signal.url, peers: [idA] })
    const pids = [a.proc.child.pid, b.proc.child.pid]
    let peak = 0
    const poll = setInterval(() => (peak = Math.max(peak, ...pids.map((pid) => status(pid, "VmRSS")))), 200)
    // An admin request that times out (an agent's event loop held up) is counted, not fatal.
    let statusTimeouts = 0
    const peerOf = (x: typeof a, y: typeof a) => x.peer(y).catch(() => void statusTimeouts++)
    await s.wait("a live session both ways", async () => {
      const [pa, pb] = [await peerOf(a, b), await peerOf(b, a)]
      return pa?.state === "live" && pb?.state === "live" ? true : undefined
    }, 10 * 60_000, 200)
    const liveSeconds = round((performance.now() - started) / 1000)
    const pa = await a.peer(b)
    await new Promise((r) => setTimeout(r, 15_000))
    clearInterval(poll)
    const idle = pids.map((pid) => mb(status(pid, "VmRSS")))
    const hwm = pids.map((pid) => mb(status(pid, "VmHWM")))
    log(`agents: range table saved at start ${rangeTableSaved.join(" / ")}; live after ${liveSeconds} s; idle RSS ${idle.join(" / ")} MiB, peak ${hwm.join(" / ")} MiB`)
    return { rangeTableSaved, liveSeconds, statusTimeouts, idleRssMiB: idle, peakRssMiB: hwm, sampledPeakRssMiB: mb(peak), peerStats: pa }
  } finally {
    await s.close()
  }
}

// ---------------------------------------------------------------------------------------------

const dirs = { a: join(root, `a-${N}`), b: join(root, `b-${N}`), d: [0, 10, 1_000].map((k) => [k, join(root, `d${k}-${N}`)] as const) }
const out = join(here, "results")
const outFile = join(out, N === 1_000_000 ? "million.json" : `million-${N}.json`)
// Parts run separately (`--only`) add to the same file: each part says when and under what load it ran.
const previous: Record<string, unknown> = existsSync(outFile) ? JSON.parse(readFileSync(outFile, "utf8")) : {}
const result: Record<string, unknown> = {
  ...(previous.n === N ? previous : {}),
  bench: "million",
  n: N,
  at: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  fixtureDir: root,
  note: "2 cores shared with other work (each part gives its load average): absolute times are pessimistic"
}
const measured = <A extends object>(value: A) => ({ ...value, measuredAt: new Date().toISOString(), loadAverage: loadavg().map(round) })
const marker = join(dirs.a, ".million-complete")
if (!existsSync(marker)) {
  rmSync(dirs.a, { recursive: true, force: true })
  const t0 = performance.now()
  await fill(dirs.a)
  writeFileSync(marker, `${N}\n`)
  result.fixture = measured({ seconds: round((performance.now() - t0) / 1000) })
  log(`fixture: ${N} assets in ${round((performance.now() - t0) / 1000)} s`)
  for (const dir of [dirs.b, ...dirs.d.map(([, d]) => d)]) rmSync(dir, { recursive: true, force: true })
}
if (only.includes("ls")) {
  result.ls = measured(await measure(["ls", "--data", dirs.a]))
  log(`ls: ${JSON.stringify(result.ls)}`)
  result.lsJson = measured(await measure(["ls", "--json", "--data", dirs.a]))
  log(`ls --json: ${JSON.stringify(result.lsJson)}`)
}
if (only.includes("verify")) {
  result.verify = measured(await measure(["verify", "--data", dirs.a]))
  log(`verify: ${JSON.stringify(result.verify)}`)
}
if (only.includes("ranges")) {
  for (const [k, dir] of dirs.d) {
    if (existsSync(join(dir, "index.sqlite"))) continue
    copyStore(dirs.a, dir, false)
    await differ(dir, k)
  }
  result.ranges = measured({ rows: await rangesBench(dirs) })
}
if (only.includes("agents")) {
  if (!existsSync(join(dirs.b, "index.sqlite"))) copyStore(dirs.a, dirs.b, true)
  // A store's first open by an agent (no saved range table: one scan builds it) is kept apart from later ones.
  const agents = await agentsBench(dirs.a, dirs.b)
  result[agents.rangeTableSaved.includes(true) ? "agents" : "agentsFirstOpen"] = measured(agents)
}
mkdirSync(out, { recursive: true })
writeFileSync(outFile, JSON.stringify(result, null, 2) + "\n")
console.log(JSON.stringify(result))
