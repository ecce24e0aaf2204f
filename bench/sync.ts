/**
 * Whole-agent throughput over WebRTC on loopback: a signaling server and two `can-sync sync`
 * processes with embedded stores on /dev/shm (so disk fsyncs do not hide the transport), timed
 * from the first session to both stores holding everything. Large: one 256 MiB asset one way,
 * then one each way at once. Small: 10,000 assets of 1 KiB one way, then 10,000 each way.
 * Each with the library's default MTU and with `--mtu 4000`. The large cases are set beside the bare
 * library (bench/transport.ts, "raw", ICE on 127.0.0.1 as here) measured in the same run, at the
 * same size. `BENCH_SYNC_ROUNDS=N` repeats it all N times and gives the median ratio. Writes
 * bench/results/sync.json.
 */
import { EmbeddedStore } from "@can-sync/store"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { content } from "../test/engine/harness.ts"
import { type Agent, Scenario } from "../test/e2e/harness.ts"
import { median } from "./Stats.ts"
import * as Threads from "./Threads.ts"

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

/** CPU seconds (user + system) a process has used so far, from /proc (0 where there is none). */
const cpuSecondsOf = (pid: number): number => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0
  }
}

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
    let cpuAtStart = 0
    const pids = [a.proc.child.pid!, b.proc.child.pid!]
    let threadsAtStart: ReadonlyArray<Threads.ThreadCpu> = []
    const deadline = now() + 15 * 60_000
    const received = async (x: Agent, from: Agent) => {
      const p = await x.peer(from)
      if (p !== undefined && started === undefined && p.state !== "connecting") {
        started = now()
        cpuAtStart = cpuSecondsOf(a.proc.child.pid) + cpuSecondsOf(b.proc.child.pid)
        threadsAtStart = pids.map((pid) => Threads.threadCpu(pid))
      }
      return p?.assetsReceived ?? 0
    }
    while (true) {
      const [ra, rb] = await Promise.all([received(a, b), received(b, a)])
      if (ra >= c.b.length && rb >= c.a.length) break
      if (now() > deadline) throw new Error(`${c.name}: not converged in 15 minutes`)
      await new Promise((r) => setTimeout(r, 100)) // each poll is an HTTP request to both agents: poll gently
    }
    const seconds = (now() - (started ?? now())) / 1000
    const cpu = cpuSecondsOf(a.proc.child.pid) + cpuSecondsOf(b.proc.child.pid) - cpuAtStart
    const threads = Threads.sum(...pids.map((pid, i) => Threads.since(threadsAtStart[i] ?? {}, Threads.threadCpu(pid))))
    return {
      name: c.name,
      flags: c.flags.join(" ") || "defaults",
      assets,
      bytes,
      seconds: Math.round(seconds * 1000) / 1000,
      mbPerSecond: Math.round((bytes / 1e6 / seconds) * 10) / 10,
      assetsPerSecond: Math.round(assets / seconds),
      /** both agents' CPU from the first session to convergence, per MiB moved */
      cpuMsPerMiB: Math.round((cpu * 1000) / (bytes / MiB) * 10) / 10,
      /** the same CPU by thread name, both agents added (bench/Threads.ts) */
      threadCpuSeconds: threads
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
/** `BENCH_SYNC_ONLY=REGEX`: only the cases whose "name (flags)" matches. */
const only = process.env.BENCH_SYNC_ONLY === undefined ? undefined : new RegExp(process.env.BENCH_SYNC_ONLY)
/**
 * `BENCH_SYNC_ROUNDS=N` (default 1): the chosen cases and the bare library, N times in turn; the
 * agents-to-bare ratios are given per round and as their median (this VM's speed, and the bare
 * library's own figure, move by up to 2x between runs, so one round decides little).
 */
const ROUNDS = Math.max(1, Number(process.env.BENCH_SYNC_ROUNDS ?? 1))

/** The bare library in this run: MB/s one way and each way at once, per MTU setting. */
const measureBare = () => {
  const dir = mkdtempSync(join(tmpdir(), "can-sync-bench-bare-"))
  try {
    const file = join(dir, "transport.json")
    execFileSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), "transport.ts"), "--only", "^raw, ICE on 127\\.0\\.0\\.1(, mtu 4000)?$", "--mib", String(LARGE / MiB), "--repeat", "1", "--out", file], { stdio: ["ignore", "ignore", "inherit"] })
    const report = JSON.parse(readFileSync(file, "utf8")) as {
      results: ReadonlyArray<{ name: string; direction: "oneway" | "bidir"; mbps: number; cpuMsPerMiB: number; threadCpuSeconds?: Threads.ThreadCpu }>
    }
    const of = (name: string, direction: "oneway" | "bidir") => {
      const r = report.results.find((x) => x.name === name && x.direction === direction)
      return { mbPerSecond: r?.mbps ?? 0, cpuMsPerMiB: r?.cpuMsPerMiB ?? 0, threadCpuSeconds: r?.threadCpuSeconds ?? {} }
    }
    return {
      defaults: { oneway: of("raw, ICE on 127.0.0.1", "oneway"), bidir: of("raw, ICE on 127.0.0.1", "bidir") },
      "--mtu 4000": { oneway: of("raw, ICE on 127.0.0.1, mtu 4000", "oneway"), bidir: of("raw, ICE on 127.0.0.1, mtu 4000", "bidir") }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const round = async () => {
  const results = []
  for (const c of cases.filter((c) => only === undefined || only.test(`${c.name} (${c.flags.join(" ") || "defaults"})`))) {
    const r = await run(c)
    console.error(`bench sync: ${r.name} (${r.flags}): ${r.mbPerSecond} MB/s, ${r.assetsPerSecond} assets/s`)
    results.push(r)
  }
  const bare = results.some((r) => r.name.startsWith("large")) ? measureBare() : undefined
  /** Agents against the bare library, both counting the bytes of every direction (MB/s). */
  const againstBare = bare === undefined ? [] : results.filter((r) => r.name.startsWith("large")).map((r) => {
    const raw = bare[r.flags as "defaults" | "--mtu 4000"][r.name === "large, one way" ? "oneway" : "bidir"]
    return {
      name: r.name,
      flags: r.flags,
      agentsMbPerSecond: r.mbPerSecond,
      bareMbPerSecond: raw.mbPerSecond,
      ratio: Math.round((r.mbPerSecond / raw.mbPerSecond) * 100) / 100,
      agentsCpuMsPerMiB: r.cpuMsPerMiB,
      bareCpuMsPerMiB: raw.cpuMsPerMiB,
      /** where the CPU went, by thread: the agents' main thread and GC helpers against the bare test's */
      agentsThreadCpuSeconds: r.threadCpuSeconds,
      bareThreadCpuSeconds: raw.threadCpuSeconds
    }
  })
  const byThread = (t: Threads.ThreadCpu) => Object.entries(t).filter(([, s]) => s >= 0.05).map(([name, s]) => `${name} ${s}`).join(", ")
  for (const x of againstBare) {
    console.error(`bench sync: ${x.name} (${x.flags}): agents ${x.agentsMbPerSecond} MB/s (${x.agentsCpuMsPerMiB} ms CPU/MiB), bare library ${x.bareMbPerSecond} MB/s (${x.bareCpuMsPerMiB} ms CPU/MiB): ${x.ratio}×`)
    console.error(`bench sync:   CPU seconds by thread: agents ${byThread(x.agentsThreadCpuSeconds)}; bare ${byThread(x.bareThreadCpuSeconds)}`)
  }
  return { results, againstBare }
}

const rounds: Array<Awaited<ReturnType<typeof round>>> = []
for (let i = 0; i < ROUNDS; i++) rounds.push(await round())
const { results, againstBare } = rounds[0]!
/** Per large case: its ratio to the bare library in every round, and their median. */
const ratios = againstBare.map((x) => {
  const each = rounds.map((r) => r.againstBare.find((y) => y.name === x.name && y.flags === x.flags)?.ratio ?? 0)
  const medianRatio = Math.round(median(each) * 100) / 100
  console.error(`bench sync: ${x.name} (${x.flags}): ratio to the bare library over ${ROUNDS} round(s): ${each.join(", ")}; median ${medianRatio}×`)
  return { name: x.name, flags: x.flags, ratios: each, medianRatio }
})
const summary = {
  bench: "sync",
  at: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
  storage: "/dev/shm (embedded stores), two `can-sync sync` processes, ICE bound to 127.0.0.1",
  rounds: ROUNDS,
  results,
  againstBare,
  ratios,
  everyRound: ROUNDS > 1 ? rounds : undefined
}
const out = join(dirname(fileURLToPath(import.meta.url)), "results")
mkdirSync(out, { recursive: true })
writeFileSync(join(out, "sync.json"), JSON.stringify(summary, null, 2) + "\n")
console.log(JSON.stringify(summary))
