/**
 * Whole-agent throughput over WebRTC on loopback: a signaling server and two `can-sync sync`
 * processes with embedded stores on /dev/shm (so disk fsyncs do not hide the transport), timed
 * from the first session to both stores holding everything. Large: one 256 MiB asset one way,
 * then one each way at once. Small: 10,000 assets of 1 KiB one way, then 10,000 each way.
 * Each with the library's default MTU and with `--mtu 4000`. Writes bench/results/sync.json.
 */
import { EmbeddedStore } from "@can-sync/store"
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { content } from "../test/engine/harness.ts"
import { type Agent, Scenario } from "../test/e2e/harness.ts"

const MiB = 1024 * 1024
const LARGE = Number(process.env.BENCH_LARGE_MIB ?? 256) * MiB
const SMALL_COUNT = Number(process.env.BENCH_SMALL_COUNT ?? 10_000)
const SMALL_BYTES = 1024

/** Fill a store in-process (the same EmbeddedStore code the agent runs). */
const fill = (dataDir: string, seed: number, assets: ReadonlyArray<number>) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const store = yield* EmbeddedStore.make({ dataDir })
    yield* Effect.forEach(assets, (size, i) => store.ingest(content(seed * 1_000_000 + i, size, Math.min(size, MiB))), {
      concurrency: 8,
      discard: true
    })
  })))

const now = () => performance.now()

interface Case {
  readonly name: string
  readonly a: ReadonlyArray<number>
  readonly b: ReadonlyArray<number>
  readonly flags: ReadonlyArray<string>
}

const run = async (c: Case) => {
  const s = await Scenario.create("bench")
  try {
    const [dataA, dataB] = [join(s.root, "a"), join(s.root, "b")]
    await fill(dataA, 1, c.a)
    await fill(dataB, 2, c.b)
    const idA = await s.id(dataA)
    const idB = await s.id(dataB)
    const signal = await s.signal()
    const bytes = c.a.reduce((x, y) => x + y, 0) + c.b.reduce((x, y) => x + y, 0)
    const assets = c.a.length + c.b.length
    const a = await s.agent("a", { data: dataA, signal: signal.url, peers: [idB], extraArgs: c.flags })
    const b = await s.agent("b", { data: dataB, signal: signal.url, peers: [idA], extraArgs: c.flags })
    let started: number | undefined
    const deadline = now() + 15 * 60_000
    const received = async (x: Agent, from: Agent) => {
      const p = await x.peer(from)
      if (p !== undefined && started === undefined && p.state !== "connecting") started = now()
      return p?.assetsReceived ?? 0
    }
    while (true) {
      const [ra, rb] = await Promise.all([received(a, b), received(b, a)])
      if (ra >= c.b.length && rb >= c.a.length) break
      if (now() > deadline) throw new Error(`${c.name}: not converged in 15 minutes`)
      await new Promise((r) => setTimeout(r, 20))
    }
    const seconds = (now() - (started ?? now())) / 1000
    return {
      name: c.name,
      flags: c.flags.join(" ") || "defaults",
      assets,
      bytes,
      seconds: Math.round(seconds * 1000) / 1000,
      mbPerSecond: Math.round((bytes / 1e6 / seconds) * 10) / 10,
      assetsPerSecond: Math.round(assets / seconds)
    }
  } finally {
    await s.close()
  }
}

const small = Array.from({ length: SMALL_COUNT }, () => SMALL_BYTES)
const cases: Array<Case> = []
for (const flags of [[], ["--mtu", "4000"]]) {
  cases.push(
    { name: "large, one way", a: [LARGE], b: [], flags },
    { name: "large, both ways", a: [LARGE], b: [LARGE], flags },
    { name: "small, one way", a: small, b: [], flags },
    { name: "small, both ways", a: small, b: small, flags }
  )
}
const results = []
for (const c of cases) {
  const r = await run(c)
  console.error(`bench sync: ${r.name} (${r.flags}): ${r.mbPerSecond} MB/s, ${r.assetsPerSecond} assets/s`)
  results.push(r)
}
const summary = {
  bench: "sync",
  at: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
  storage: "/dev/shm (embedded stores), two `can-sync sync` processes, ICE bound to 127.0.0.1",
  results
}
const out = join(dirname(fileURLToPath(import.meta.url)), "results")
mkdirSync(out, { recursive: true })
writeFileSync(join(out, "sync.json"), JSON.stringify(summary, null, 2) + "\n")
console.log(JSON.stringify(summary))
