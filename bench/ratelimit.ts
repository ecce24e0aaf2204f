/**
 * Bandwidth limits held by two whole `can-sync sync` agents on loopback, both directions at once:
 * each store holds one large asset for the other, both agents run with `--max-send-rate RATE`,
 * and each side's received bytes (counted per chunk, `/status`) are sampled over a 30 s window
 * that starts once both directions are flowing. Goal: each direction within 5 % of RATE.
 * Writes bench/results/ratelimit.json. Env: BENCH_RATE (default 10MB/s), BENCH_WINDOW_S (30).
 */
import { EmbeddedStore } from "@can-sync/store"
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { RateLimit } from "@can-sync/transport"
import { content } from "../test/engine/harness.ts"
import { type Agent, Scenario, sleep } from "../test/e2e/harness.ts"

const MiB = 1024 * 1024
const RATE_TEXT = process.env.BENCH_RATE ?? "10MB/s"
const RATE = RateLimit.parseRate(RATE_TEXT)
if (RATE === undefined) throw new Error(`BENCH_RATE: not a rate: ${RATE_TEXT}`)
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 30)
/** Enough for the window and the ramp at the limit, so neither side runs out. */
const ASSET_BYTES = Math.ceil((RATE * (WINDOW_S + 20)) / MiB) * MiB

const fill = (dataDir: string, seed: number) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const store = yield* EmbeddedStore.make({ dataDir })
    yield* store.ingest(content(seed, ASSET_BYTES, MiB))
  })))

interface Direction {
  readonly received: number
}

/** Bytes `agent` has received from its one peer so far, counted per chunk. */
const receivedBy = async (agent: Agent): Promise<number> => {
  const response = await fetch(`${agent.inner.adminUrl}/status`)
  const status = (await response.json()) as { peers: ReadonlyArray<{ received?: { bytesDone?: number } }> }
  return status.peers[0]?.received?.bytesDone ?? 0
}

const s = await Scenario.create("bench-ratelimit")
try {
  const [dataA, dataB] = [join(s.root, "a"), join(s.root, "b")]
  await fill(dataA, 1)
  await fill(dataB, 2)
  const idA = await s.id(dataA)
  const idB = await s.id(dataB)
  const signal = await s.signal()
  const flags = ["--max-send-rate", RATE_TEXT]
  const a = await s.agent("a", { data: dataA, signal: signal.url, peers: [idB], extraArgs: flags })
  const b = await s.agent("b", { data: dataB, signal: signal.url, peers: [idA], extraArgs: flags })
  // both directions flowing, and past the first seconds (connect, reconcile, the burst)
  await s.wait("both directions flowing", async () => ((await receivedBy(a)) > 4 * MiB && (await receivedBy(b)) > 4 * MiB ? true : undefined), 120_000)
  await sleep(3000)
  const t0 = performance.now()
  const start: Record<"a" | "b", Direction> = { a: { received: await receivedBy(a) }, b: { received: await receivedBy(b) } }
  await sleep(WINDOW_S * 1000)
  const seconds = (performance.now() - t0) / 1000
  const end: Record<"a" | "b", Direction> = { a: { received: await receivedBy(a) }, b: { received: await receivedBy(b) } }
  const direction = (to: "a" | "b") => {
    const bytesPerSecond = (end[to].received - start[to].received) / seconds
    return {
      direction: to === "a" ? "b -> a" : "a -> b",
      bytesPerSecond: Math.round(bytesPerSecond),
      ofLimit: Math.round((bytesPerSecond / RATE) * 1000) / 1000,
      withinFivePercent: Math.abs(bytesPerSecond / RATE - 1) <= 0.05
    }
  }
  const results = [direction("b"), direction("a")]
  for (const r of results) console.error(`bench ratelimit: ${r.direction}: ${(r.bytesPerSecond / 1e6).toFixed(2)} MB/s = ${r.ofLimit}× the limit ${RATE_TEXT}`)
  const summary = {
    bench: "ratelimit",
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
    setup: `two agents on loopback, one ${ASSET_BYTES / MiB} MiB asset each way at once, both with --max-send-rate ${RATE_TEXT}; received bytes per chunk from /status over ${WINDOW_S} s`,
    limitBytesPerSecond: RATE,
    windowSeconds: Math.round(seconds * 10) / 10,
    results
  }
  const out = join(dirname(fileURLToPath(import.meta.url)), "results")
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, "ratelimit.json"), JSON.stringify(summary, null, 2) + "\n")
  console.log(JSON.stringify(summary))
} finally {
  await s.close()
}
