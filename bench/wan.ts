/**
 * Throughput over an emulated WAN (test/netlab): one way, A → B, through linkemu with a given RTT
 * and loss, in one run per cell: plain TCP, the bare node-datachannel library (default SCTP
 * settings, tuned ones, N peer connections in parallel) and two whole `can-sync sync` agents (one
 * connection, and lanes up to 8), each sender and receiver its own process in its own namespace.
 * Prints a table, writes bench/results/wan.json. Needs root (namespaces).
 * Usage: node bench/wan.ts [--mib 64] [--rtt 0,20,50,100] [--loss 0,0.001,0.01] [--repeat N] [--only REGEX] [--quick]
 *        node bench/wan.ts --agents   (the three cells of issue 10: 50 ms/0, 50 ms/0.1 %, 100 ms/1 %; tcp, raw, agents)
 *        node bench/wan.ts --grid --cap 45   (issue 10's table: every RTT × loss; tcp, raw default, agents with defaults;
 *                                             a run still going after 45 s counts what arrived by then)
 */
import { Duration, Effect, Queue, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { DataChannel, PeerConnection } from "../packages/transport/src/Native.ts"
import { library as nodeDataChannel } from "../packages/transport/src/Native.ts"
import * as Netlab from "../test/netlab/Netlab.ts"
import { toolPath } from "../test/netlab/NetTool.ts"
import { median } from "./Stats.ts"

const SELF = fileURLToPath(import.meta.url)
const MiB = 1024 * 1024

/** node-datachannel's setSctpSettings (0.33 passes these six to libdatachannel; the rest are not exposed). */
interface Sctp {
  readonly recvBufferSize?: number
  readonly sendBufferSize?: number
  readonly maxChunksOnQueue?: number
  readonly initialCongestionWindow?: number
  /** 0 RFC2581 (default), 1 HSTCP, 2 H-TCP, 3 RTCC */
  readonly congestionControlModule?: number
  readonly delayedSackTime?: number
}

/** One bare-library measurement: both processes get the same job. */
interface RawJob {
  readonly bytes: number
  /** peer connections in parallel, one ordered reliable channel each */
  readonly peers: number
  readonly sctp?: Sctp
  readonly messageBytes: number
  readonly highWater: number
}

interface Variant {
  readonly name: string
  readonly kind: "tcp" | "raw" | "agents"
  readonly peers?: number
  readonly sctp?: Sctp
  /** agents: CAN_SYNC_LANES (the most lanes per link) */
  readonly lanes?: number
}

interface Cell {
  readonly rttMs: number
  readonly loss: number
  readonly variant: string
  /** median over the repeats that finished, MB/s (10^6 bytes) */
  readonly mbps: number | null
  readonly runs: ReadonlyArray<number | null>
  /** per run: datagrams the receiver's kernel dropped for a full UDP socket buffer (libjuice keeps the default) */
  readonly rcvbufDrops: ReadonlyArray<number>
  /** agents: the lanes the receiving agent reported for its link, per run */
  readonly lanes?: ReadonlyArray<number | null>
  /** agents: per run, seconds from the link going live until its last lane opened */
  readonly lanesUpSeconds?: ReadonlyArray<number>
  /** runs cut at `--cap` (their rate counts the bytes that arrived within it) */
  readonly cutAtCap?: number
  readonly failures?: ReadonlyArray<string>
}

// ---- the bare library, in a namespace (child process) ----------------------------------------

type Line = Record<string, unknown> & { readonly type: string }
const say = (line: Line) => process.stdout.write(`${JSON.stringify(line)}\n`)

const onLines = (onLine: (line: Line) => void) =>
  Netlab.eachLine(process.stdin, (part) => {
    if (part.trim() !== "") onLine(JSON.parse(part) as Line)
  })

/** Sender (role "send", offers) or receiver (role "receive", answers) of a bare-library run. */
const rawPeer = (role: "send" | "receive", job: RawJob) => {
  if (job.sctp !== undefined) nodeDataChannel.setSctpSettings({ ...job.sctp }) // process-wide, before any connection
  const pcs: Array<PeerConnection> = []
  const channels: Array<DataChannel> = [] // strong references (a collected channel resets its stream)
  const remoteSet = new Set<number>()
  const early = new Map<number, Array<Line>>()
  const connection = (i: number) => {
    if (pcs[i] !== undefined) return pcs[i]
    const pc = new nodeDataChannel.PeerConnection(`${role}-${i}`, { iceServers: [] })
    pcs[i] = pc
    pc.onLocalDescription((sdp, kind) => say({ type: "description", pc: i, sdp, kind }))
    pc.onLocalCandidate((candidate, mid) => say({ type: "candidate", pc: i, candidate, mid }))
    return pc
  }
  let got = 0
  let first = 0
  let progress: ReturnType<typeof setInterval> | undefined
  const count = (m: string | ArrayBuffer | Buffer) => {
    if (got === 0) {
      first = performance.now()
      // what a run cut short by the cap still measured
      progress = setInterval(() => say({ type: "progress", bytes: got, seconds: (performance.now() - first) / 1000 }), 1000)
    }
    got += typeof m === "string" ? m.length : m.byteLength
    if (got >= job.bytes) {
      clearInterval(progress)
      say({ type: "received", bytes: got, seconds: (performance.now() - first) / 1000 })
    }
  }
  const opened = () => {
    if (channels.length === job.peers) say({ type: "open" })
  }
  if (role === "send") {
    for (let i = 0; i < job.peers; i++) {
      const dc = connection(i).createDataChannel("bench")
      channels.push(dc)
      dc.onOpen(opened)
    }
  } else {
    for (let i = 0; i < job.peers; i++) {
      connection(i).onDataChannel((dc) => {
        channels.push(dc)
        dc.onMessage(count)
        opened()
      })
    }
  }
  const send = () => {
    const message = Buffer.alloc(job.messageBytes, 7)
    let sent = 0
    let next = 0
    const pump = () => {
      while (sent < job.bytes) {
        const dc = channels[next % channels.length]!
        if (dc.bufferedAmount() > job.highWater) return
        next++
        const n = Math.min(job.messageBytes, job.bytes - sent)
        dc.sendMessageBinary(n === job.messageBytes ? message : message.subarray(0, n))
        sent += n
      }
    }
    for (const dc of channels) {
      dc.setBufferedAmountLowThreshold(Math.floor(job.highWater / 4))
      dc.onBufferedAmountLow(pump)
    }
    pump()
  }
  onLines((line) => {
    const i = line.pc as number
    if (line.type === "description") {
      connection(i).setRemoteDescription(line.sdp as string, line.kind as "offer")
      remoteSet.add(i)
      for (const c of early.get(i) ?? []) connection(i).addRemoteCandidate(c.candidate as string, c.mid as string)
      early.delete(i)
    } else if (line.type === "candidate") {
      if (remoteSet.has(i)) connection(i).addRemoteCandidate(line.candidate as string, line.mid as string)
      else early.set(i, [...(early.get(i) ?? []), line])
    } else if (line.type === "go") send()
  })
  process.stdin.on("end", () => {
    for (const dc of channels) dc.close()
    for (const pc of pcs) pc.close()
    nodeDataChannel.cleanup()
    setTimeout(() => process.exit(0), 2000).unref()
  })
}

// ---- orchestration (parent, root namespace) --------------------------------------------------

const parseLine = (text: string): Line => {
  try {
    return JSON.parse(text) as Line
  } catch {
    return { type: "text", text }
  }
}

/** Forwards signaling between the two peers; everything else goes to each side's own queue. */
const relay = (from: Netlab.LabProcess, to: Netlab.LabProcess, mine: Queue.Queue<Line>) =>
  Effect.gen(function*() {
    for (;;) {
      const line = parseLine(yield* from.nextLine("1 hour", "a line"))
      if (line.type === "description" || line.type === "candidate") yield* to.writeLine(JSON.stringify(line))
      else yield* Queue.offer(mine, line)
    }
  }).pipe(Effect.ignore)

const awaitLine = (queue: Queue.Queue<Line>, type: string, within: Duration.Input, what: string) =>
  Effect.gen(function*() {
    for (;;) {
      const line = yield* Queue.take(queue)
      if (line.type === type) return line
    }
  }).pipe(Effect.timeoutOrElse({ duration: within, orElse: () => Effect.fail(new Netlab.NetlabError({ step: what, detail: `no "${type}" within ${Duration.format(Duration.fromInputUnsafe(within))}` })) }))

/** UDP datagrams the kernel dropped because a socket's receive buffer was full, in namespace `ns` */
const udpRcvbufErrors = (ns: Netlab.Namespace) =>
  ns.exec(["cat", "/proc/net/snmp"]).pipe(
    Effect.map(({ stdout }) => {
      const [head = "", values = ""] = stdout.split("\n").filter((l) => l.startsWith("Udp:"))
      return Number(values.split(/\s+/)[head.split(/\s+/).indexOf("RcvbufErrors")] ?? 0)
    }),
    Effect.orElseSucceed(() => 0)
  )

const timeLimit = (bytes: number) => Duration.seconds(30 + bytes / (200 * 1024)) // floor: 200 KB/s

/**
 * `--cap S`: a run that has not finished after S seconds of transfer ends there and counts the
 * bytes that arrived by then (a "partial" run: its rate is what the path gave in those S seconds).
 */
const CAP_SECONDS = Number(process.argv.includes("--cap") ? process.argv[process.argv.indexOf("--cap") + 1] : 0) || undefined

/** A run's outcome: seconds for `bytes`, or (cut by the cap) the bytes that arrived in `seconds`. */
interface Timed {
  readonly bytes: number
  readonly seconds: number
  readonly partial: boolean
}

const rawRun = (p: Netlab.Pair, job: RawJob) =>
  Effect.scoped(
    Effect.gen(function*() {
      const argv = (role: string) => [process.execPath, SELF, "peer", role, JSON.stringify(job)]
      const receiver = yield* p.b.spawn(argv("receive"))
      const sender = yield* p.a.spawn(argv("send"))
      const atSender = yield* Queue.unbounded<Line>()
      const atReceiver = yield* Queue.unbounded<Line>()
      yield* Effect.forkScoped(relay(sender, receiver, atSender))
      yield* Effect.forkScoped(relay(receiver, sender, atReceiver))
      const tails = Effect.sync(() => `sender: ${sender.stderrTail().trim().slice(-300)} receiver: ${receiver.stderrTail().trim().slice(-300)}`)
      const explained = <A>(e: Effect.Effect<A, Netlab.NetlabError>) =>
        e.pipe(Effect.catch((err) => Effect.flatMap(tails, (t) => Effect.fail(new Netlab.NetlabError({ step: err.step, detail: `${err.detail}; ${t}` })))))
      yield* explained(awaitLine(atSender, "open", "30 seconds", "bare library: channels open at the sender"))
      yield* explained(awaitLine(atReceiver, "open", "30 seconds", "bare library: channels open at the receiver"))
      yield* sender.writeLine(JSON.stringify({ type: "go" }))
      let last: Line | undefined
      const finished = Effect.gen(function*() {
        for (;;) {
          const line = yield* Queue.take(atReceiver)
          if (line.type === "progress") last = line
          if (line.type === "received") return line
        }
      })
      const limit = CAP_SECONDS === undefined ? timeLimit(job.bytes) : Duration.seconds(CAP_SECONDS + 10)
      const done = yield* explained(finished.pipe(
        Effect.timeoutOrElse({
          duration: limit,
          orElse: () =>
            last !== undefined && CAP_SECONDS !== undefined
              ? Effect.succeed({ ...last, partial: true } as Line)
              : Effect.fail(new Netlab.NetlabError({ step: "bare library: all bytes at the receiver", detail: `not within ${Duration.format(limit)}` }))
        })
      ))
      sender.child.stdin?.end()
      receiver.child.stdin?.end()
      return { bytes: done.bytes as number, seconds: done.seconds as number, partial: done.partial === true } satisfies Timed
    })
  )

const tcpRun = (p: Netlab.Pair, bytes: number) =>
  Effect.scoped(
    Effect.gen(function*() {
      const sink = yield* p.b.spawn([process.execPath, toolPath, "tcp-sink", "7001"])
      yield* sink.nextLine("10 seconds", "tcp-sink ready")
      yield* p.a.spawn([process.execPath, toolPath, "tcp-send", p.addressB, "7001", String(bytes)])
      const result = JSON.parse(yield* sink.nextLine(timeLimit(bytes), "the sink's count")) as { bytes: number; seconds: number }
      return { bytes, seconds: result.seconds, partial: false } satisfies Timed
    })
  )

// ---- two whole agents (can-sync sync), A → B ---------------------------------------------------

const CLI = path.join(path.dirname(SELF), "..", "packages", "cli", "src", "main.ts")

const cli = (...args: ReadonlyArray<string>) => execFileSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } }).trim()

/** One file of `bytes` random bytes (written once per size, reused by every run). */
const contentFile = (bytes: number) => {
  const file = path.join(os.tmpdir(), `can-sync-wan-${bytes}.bin`)
  if (!fs.existsSync(file) || fs.statSync(file).size !== bytes) {
    const fd = fs.openSync(file, "w")
    for (let left = bytes; left > 0; left -= MiB) fs.writeSync(fd, randomBytes(Math.min(MiB, left)))
    fs.closeSync(fd)
  }
  return file
}

/** Bytes of every file under a data directory but the index: content stored, staged or partial. */
const contentBytes = (dir: string): number => {
  let total = 0
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && !entry.name.startsWith("index.sqlite")) total += fs.statSync(path.join(entry.parentPath, entry.name)).size
  }
  return total
}

interface PeerEntry {
  readonly peer: string
  readonly state: string
  readonly assetsReceived: number
  readonly bytesReceived: number
  readonly path?: { readonly lanes?: number }
}

const statusOf = (ns: Netlab.Namespace) =>
  ns.exec(["curl", "-s", "--max-time", "3", "http://127.0.0.1:7070/status"]).pipe(
    Effect.map(({ stdout }) => (JSON.parse(stdout) as { peers: ReadonlyArray<PeerEntry> }).peers[0]),
    Effect.orElseSucceed(() => undefined)
  )

const until = <A>(what: string, probe: Effect.Effect<A | undefined>, within: Duration.Input, every: Duration.Input = "100 millis") =>
  probe.pipe(
    Effect.flatMap((a) => (a === undefined ? Effect.fail(new Netlab.NetlabError({ step: what, detail: "not yet" })) : Effect.succeed(a))),
    Effect.retry({ schedule: Schedule.spaced(every) }),
    Effect.timeoutOrElse({ duration: within, orElse: () => Effect.fail(new Netlab.NetlabError({ step: what, detail: `not within ${Duration.format(Duration.fromInputUnsafe(within))}` })) })
  )

/** How long B's lane count may stay the same before its lanes count as all open. */
const LANES_QUIET_MS = 4000

/**
 * Lets the offerer measure the round trip and open its lanes before anything is timed: waits until
 * B's lane count has not grown for LANES_QUIET_MS (at most 40 s); gives the seconds from the link
 * going live until its last lane opened.
 */
const lanesSettle = (b: Netlab.Namespace) =>
  Effect.gen(function*() {
    const live = performance.now()
    let count = 1
    let grewAt = live
    while (performance.now() - grewAt < LANES_QUIET_MS && performance.now() - live < 40_000) {
      yield* Effect.sleep("100 millis")
      const now = (yield* statusOf(b))?.path?.lanes ?? 1
      if (now > count) {
        count = now
        grewAt = performance.now()
      }
    }
    return Math.round((grewAt - live) / 100) / 10
  })

/**
 * Both agents live over the link (empty stores), then `can-sync add` of one asset of `bytes` at A;
 * timed from the add's end until B's /status counts it received. Seconds, B's lanes and how long
 * they took to open (none with one lane).
 */
const agentsRun = (p: Netlab.Pair, bytes: number, lanes: number | undefined) =>
  Effect.scoped(
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "can-sync-wan-agents-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const dataA = path.join(dir, "a")
      const dataB = path.join(dir, "b")
      const idA = cli("id", "--data", dataA)
      const idB = cli("id", "--data", dataB)
      const signal = yield* p.a.spawn([process.execPath, CLI, "signal", "--host", p.addressA, "--port", "7777"])
      while (!/signaling at/.test(yield* signal.nextLine("30 seconds", "signaling at ws://..."))) {
        // other lines first
      }
      const agent = (ns: Netlab.Namespace, data: string, peer: string, address: string) =>
        ns.spawn(["env", ...(lanes === undefined ? [] : [`CAN_SYNC_LANES=${lanes}`]), process.execPath, CLI, "sync", "--data", data, "--signal", `ws://${p.addressA}:7777`, "--peer", peer, "--bind-address", address, "--admin-port", "7070", "--json"])
      yield* agent(p.b, dataB, idA, p.addressB)
      yield* agent(p.a, dataA, idB, p.addressA)
      yield* until("B live with A", Effect.map(statusOf(p.b), (s) => (s?.state === "live" ? s : undefined)), "90 seconds", "250 millis")
      const lanesUpSeconds = lanes === 1 ? undefined : yield* lanesSettle(p.b)
      cli("add", "--data", dataA, contentFile(bytes))
      const t0 = performance.now()
      const received = until("B to receive the asset", Effect.map(statusOf(p.b), (s) => (s !== undefined && s.assetsReceived >= 1 ? s : undefined)), CAP_SECONDS === undefined ? timeLimit(bytes) : Duration.seconds(CAP_SECONDS))
      const done = yield* (CAP_SECONDS === undefined ? received : Effect.catch(received, () => Effect.succeed(undefined)))
      if (done === undefined) {
        // cut by the cap: the content bytes that reached B's data directory by now
        const arrived = contentBytes(dataB)
        const st = yield* statusOf(p.b)
        return { timed: { bytes: arrived, seconds: (performance.now() - t0) / 1000, partial: true } satisfies Timed, lanes: st?.path?.lanes ?? null, lanesUpSeconds }
      }
      return { timed: { bytes, seconds: (performance.now() - t0) / 1000, partial: false } satisfies Timed, lanes: done.path?.lanes ?? null, lanesUpSeconds }
    })
  )

/** Tuned: buffers sized for the bandwidth-delay product of ~100 MB/s at 100 ms, more chunks on queue. */
const bdpBuffers = (mib: number): Sctp => ({ recvBufferSize: mib * MiB, sendBufferSize: mib * MiB, maxChunksOnQueue: 64 * 1024 })

const HTCP = 2
const HSTCP = 1

const VARIANTS: ReadonlyArray<Variant> = [
  { name: "tcp", kind: "tcp" },
  { name: "raw default", kind: "raw" },
  { name: "raw buf2M", kind: "raw", sctp: bdpBuffers(2) },
  { name: "raw buf4M", kind: "raw", sctp: bdpBuffers(4) },
  { name: "raw buf8M", kind: "raw", sctp: bdpBuffers(8) },
  { name: "raw buf16M", kind: "raw", sctp: bdpBuffers(16) },
  { name: "raw htcp", kind: "raw", sctp: { congestionControlModule: HTCP } },
  { name: "raw hstcp", kind: "raw", sctp: { congestionControlModule: HSTCP } },
  { name: "raw buf4M htcp", kind: "raw", sctp: { ...bdpBuffers(4), congestionControlModule: HTCP } },
  { name: "raw buf8M htcp", kind: "raw", sctp: { ...bdpBuffers(8), congestionControlModule: HTCP } },
  { name: "raw buf8M hstcp", kind: "raw", sctp: { ...bdpBuffers(8), congestionControlModule: HSTCP } },
  { name: "raw buf8M sack0", kind: "raw", sctp: { ...bdpBuffers(8), delayedSackTime: 0 } },
  { name: "raw buf8M cwnd32", kind: "raw", sctp: { ...bdpBuffers(8), initialCongestionWindow: 32 } },
  { name: "raw default x2", kind: "raw", peers: 2 },
  { name: "raw default x4", kind: "raw", peers: 4 },
  { name: "raw default x8", kind: "raw", peers: 8 },
  { name: "raw default x16", kind: "raw", peers: 16 },
  { name: "raw default x32", kind: "raw", peers: 32 },
  { name: "raw default x64", kind: "raw", peers: 64 },
  { name: "raw htcp x2", kind: "raw", peers: 2, sctp: { congestionControlModule: HTCP } },
  { name: "raw htcp x4", kind: "raw", peers: 4, sctp: { congestionControlModule: HTCP } },
  { name: "raw buf4M htcp x4", kind: "raw", peers: 4, sctp: { ...bdpBuffers(4), congestionControlModule: HTCP } },
  { name: "agents lanes=1", kind: "agents", lanes: 1 },
  { name: "agents lanes=8", kind: "agents", lanes: 8 },
  { name: "agents lanes=16", kind: "agents", lanes: 16 },
  { name: "agents", kind: "agents" }
]

const QUICK = new Set(["tcp", "raw default", "raw buf4M htcp", "raw htcp x4"])
/** `--agents`: what issue 10 asks to compare, in its three cells. */
const AGENTS = new Set(["tcp", "raw default", "raw default x4", "agents lanes=1", "agents"])
/** `--grid`: issue 10's table, every RTT × loss, the agents with their defaults beside TCP and the bare library. */
const GRID = new Set(["tcp", "raw default", "agents"])

/** The median of the runs that finished; null when none did. */
const medianOfDone = (xs: ReadonlyArray<number | null>): number | null => {
  const done = xs.filter((x): x is number => x !== null)
  return done.length === 0 ? null : median(done)
}

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const list = (text: string | undefined, fallback: ReadonlyArray<number>) => (text === undefined ? fallback : text.split(",").map(Number))

const loadavg = Effect.sync(() => fs.readFileSync("/proc/loadavg", "utf8").trim())

const main = Effect.gen(function*() {
  const probe = yield* Netlab.canCreateNamespaces
  const out = path.join(path.dirname(SELF), "results", "wan.json")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  if (!probe.ok) {
    console.log(`wan bench skipped: ${probe.reason}`)
    fs.writeFileSync(out, `${JSON.stringify({ when: new Date().toISOString(), skipped: probe.reason }, null, 2)}\n`)
    return
  }
  const bytes = Number(arg("mib") ?? 64) * MiB
  const agentsMode = process.argv.includes("--agents")
  const gridMode = process.argv.includes("--grid")
  const rtts = list(arg("rtt"), [0, 20, 50, 100])
  const losses = list(arg("loss"), [0, 0.001, 0.01])
  const grid: ReadonlyArray<readonly [number, number]> = agentsMode && !gridMode && arg("rtt") === undefined
    ? [[50, 0], [50, 0.001], [100, 0.01]]
    : rtts.flatMap((r) => losses.map((l) => [r, l] as const))
  const only = arg("only")
  const variants = VARIANTS.filter((v) =>
    only !== undefined ? new RegExp(only).test(v.name) : gridMode ? GRID.has(v.name) : agentsMode ? AGENTS.has(v.name) : process.argv.includes("--quick") ? QUICK.has(v.name) : v.kind !== "agents"
  )
  const repeat = Number(arg("repeat") ?? 1)
  const cells: Array<Cell> = []
  const p = yield* Netlab.pair()
  console.log(`${bytes / MiB} MiB one way per run, ${repeat} run(s) per cell, load ${yield* loadavg}`)
  yield* rawRun(p, { bytes: 4 * MiB, peers: 1, messageBytes: 64 * 1024, highWater: 4 * MiB }).pipe(Effect.ignore) // warm-up, not counted
  for (const [rttMs, loss] of grid) {
    {
      yield* p.link.set(Netlab.symmetric({ delayMs: rttMs / 2, lossRate: loss }))
      const runs = new Map<string, Array<number | null>>(variants.map((v) => [v.name, []]))
      const failures = new Map<string, Array<string>>(variants.map((v) => [v.name, []]))
      const drops = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
      const laneCounts = new Map<string, Array<number | null>>(variants.map((v) => [v.name, []]))
      const lanesUp = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
      const partials = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
      for (let r = 0; r < repeat; r++) {
        for (const v of variants) { // interleaved, so a burst of load elsewhere spreads over all variants
          const job: RawJob = { bytes, peers: v.peers ?? 1, messageBytes: 64 * 1024, highWater: 4 * MiB, ...(v.sctp === undefined ? {} : { sctp: v.sctp }) }
          const before = yield* udpRcvbufErrors(p.b)
          const outcome = yield* (v.kind === "tcp"
            ? tcpRun(p, bytes)
            : v.kind === "agents"
            ? agentsRun(p, bytes, v.lanes).pipe(
              Effect.tap((r) => Effect.sync(() => {
                laneCounts.get(v.name)!.push(r.lanes)
                if (r.lanesUpSeconds !== undefined) lanesUp.get(v.name)!.push(r.lanesUpSeconds)
              })),
              Effect.map((r) => r.timed)
            )
            : rawRun(p, job)).pipe(Effect.result)
          const dropped = (yield* udpRcvbufErrors(p.b)) - before
          drops.get(v.name)!.push(dropped)
          const rate = outcome._tag === "Success" ? outcome.success.bytes / 1e6 / outcome.success.seconds : undefined
          console.error(`  ${v.name}: ${outcome._tag === "Success" ? `${rate!.toFixed(2)} MB/s${outcome.success.partial ? ` (cut at the cap: ${(outcome.success.bytes / MiB).toFixed(1)} MiB in ${outcome.success.seconds.toFixed(0)} s)` : ""}` : outcome.failure.message}, ${dropped} datagrams dropped by a full UDP receive buffer at B`)
          if (outcome._tag === "Success") {
            runs.get(v.name)!.push(rate!)
            if (outcome.success.partial) partials.get(v.name)!.push(r)
          }
          else {
            runs.get(v.name)!.push(null)
            failures.get(v.name)!.push(outcome.failure.message)
          }
        }
      }
      const tcp = medianOfDone(runs.get("tcp") ?? [])
      for (const v of variants) {
        const all = runs.get(v.name)!
        const mbps = medianOfDone(all)
        const failed = failures.get(v.name)!
        const rcvbufDrops = drops.get(v.name)!
        const lanes = laneCounts.get(v.name)!
        const lanesUpSeconds = lanesUp.get(v.name)!
        const cut = partials.get(v.name)!
        cells.push({ rttMs, loss, variant: v.name, mbps, runs: all, rcvbufDrops, ...(lanes.length > 0 ? { lanes } : {}), ...(lanesUpSeconds.length > 0 ? { lanesUpSeconds } : {}), ...(cut.length > 0 ? { cutAtCap: cut.length } : {}), ...(failed.length > 0 ? { failures: failed } : {}) })
        const shown = all.map((x) => (x === null ? "fail" : x.toFixed(1))).join(" ")
        const ratio = mbps !== null && tcp !== null ? `  ${(mbps / tcp).toFixed(2)}× tcp` : ""
        console.log(`rtt ${String(rttMs).padStart(3)} ms  loss ${(loss * 100).toFixed(1).padStart(4)} %  ${v.name.padEnd(18)} ${mbps === null ? "   failed" : mbps.toFixed(1).padStart(7)} MB/s${ratio}  [${shown}]  rcvbuf drops ${rcvbufDrops.join("/")}${lanes.length > 0 ? `  lanes ${lanes.join("/")}` : ""}${lanesUpSeconds.length > 0 ? ` (all open after ${lanesUpSeconds.join("/")} s)` : ""}${cut.length > 0 ? `  (${cut.length} cut at ${CAP_SECONDS} s)` : ""}${failed.length > 0 ? ` ${failed[0]}` : ""}`)
      }
    }
  }
  console.log(`load ${yield* loadavg}`)
  const stats = yield* p.link.stats
  const note = "2 cores shared with other work (see loadavg): short runs, ratios within one run are what count"
  fs.writeFileSync(out, `${JSON.stringify({ when: new Date().toISOString(), mibPerRun: bytes / MiB, loadavg: yield* loadavg, note, cells, emulator: stats }, null, 2)}\n`)
  console.log(`wrote ${out}`)
})

if (process.argv[2] === "peer") rawPeer(process.argv[3] as "send" | "receive", JSON.parse(process.argv[4] ?? "{}") as RawJob)
else void Effect.runPromise(Effect.scoped(main).pipe(Effect.catch((e: Netlab.NetlabError) => Effect.sync(() => { console.error(e.message); process.exitCode = 1 }))))
