/**
 * The network lab: network namespaces created and torn down by the tests themselves, joined by
 * veth pairs, directly or through `linkemu` (a user-space link emulator with per-direction delay,
 * loss, rate and "down"; the kernel here has no netem). Nothing touches a host interface: every
 * namespace is named `cs<pid>-<n>-…`, removed when the lab's scope closes, and swept if stale.
 */
import { Cause, Data, Duration, Effect, Queue, Scope, Semaphore } from "effect"
import { type ChildProcess, execFile, spawn as spawnChild } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export class NetlabError extends Data.TaggedError("NetlabError")<{
  /** what the lab was doing, e.g. "ip netns add cs12-0-a" */
  readonly step: string
  readonly detail: string
}> {
  get message() {
    return `netlab: ${this.step}: ${this.detail}`
  }
}

/** One direction of an emulated link. Every field may be changed at run time. */
export interface DirectionParams {
  readonly delayMs?: number
  /** share of frames dropped at random, 0..1 */
  readonly lossRate?: number
  /** bytes per second on the wire; 0 or absent = unlimited */
  readonly rateBytesPerSec?: number
  /** with a rate: bytes queued before frames are tail-dropped (a router's buffer) */
  readonly queueBytes?: number
}

export interface LinkParams {
  readonly aToB?: DirectionParams
  readonly bToA?: DirectionParams
}

/** Both directions alike (RTT = 2 × delayMs). */
export const symmetric = (params: DirectionParams): LinkParams => ({ aToB: params, bToA: params })

export interface DirectionStats {
  readonly rx: number
  readonly tx: number
  readonly lost: number
  readonly down: number
  readonly overflow: number
  readonly oversize: number
  readonly queued: number
}

export interface LinkStats {
  readonly aToB: DirectionStats
  readonly bToA: DirectionStats
}

/** A process started in a namespace; killed (SIGTERM, then SIGKILL) when its scope closes. */
export interface LabProcess {
  readonly pid: number
  readonly child: ChildProcess
  /** the next line of stdout; fails if none comes within `within` or the process ends first */
  readonly nextLine: (within: Duration.Input, waitingFor: string) => Effect.Effect<string, NetlabError>
  readonly writeLine: (line: string) => Effect.Effect<void>
  /** waits for the exit code (null if killed by a signal) */
  readonly exited: Effect.Effect<number | null>
  /** the last few KiB of stderr, for error messages */
  readonly stderrTail: () => string
}

export interface Namespace {
  readonly name: string
  /** runs `argv` inside the namespace to completion; fails with its stderr on a non-zero exit */
  readonly exec: (argv: ReadonlyArray<string>, options?: { readonly timeout?: Duration.Input }) => Effect.Effect<{ readonly stdout: string; readonly stderr: string }, NetlabError>
  /** starts `argv` inside the namespace for the length of the current scope */
  readonly spawn: (argv: ReadonlyArray<string>, options?: { readonly env?: NodeJS.ProcessEnv }) => Effect.Effect<LabProcess, NetlabError, Scope.Scope>
}

/** One end of a link: an interface in a namespace, with an optional address (CIDR, e.g. "10.99.0.1/24"). */
export interface Endpoint {
  readonly ns: Namespace
  readonly ifname: string
  readonly address?: string
}

export interface EmulatedLink {
  /** the namespace the emulator runs in (one per link), and the emulator's process id */
  readonly emulator: Namespace
  readonly pid: number
  readonly set: (params: LinkParams) => Effect.Effect<void, NetlabError>
  /** drop every frame both ways, including those in flight, until `up` */
  readonly down: Effect.Effect<void, NetlabError>
  readonly up: Effect.Effect<void, NetlabError>
  readonly stats: Effect.Effect<LinkStats, NetlabError>
}

export interface Lab {
  /** every namespace of this lab is named `${prefix}-…` */
  readonly prefix: string
  /** a new namespace `${prefix}-${role}` with `lo` up; deleted when the lab closes */
  readonly namespace: (role: string) => Effect.Effect<Namespace, NetlabError>
  /** a plain veth pair between two namespaces (no emulation), both ends up */
  readonly veth: (a: Endpoint, b: Endpoint) => Effect.Effect<void, NetlabError>
  /** a ↔ emulator ↔ b: two veth pairs bridged by linkemu in its own namespace */
  readonly link: (a: Endpoint, b: Endpoint, params?: LinkParams) => Effect.Effect<EmulatedLink, NetlabError>
}

// ---- commands ---------------------------------------------------------------------------------

const run = (argv: ReadonlyArray<string>, timeout: Duration.Input = "30 seconds") =>
  Effect.callback<{ readonly stdout: string; readonly stderr: string }, NetlabError>((resume) => {
    const [file = "", ...args] = argv
    const child = execFile(file, args, { timeout: Duration.toMillis(Duration.fromInputUnsafe(timeout)), maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) resume(Effect.succeed({ stdout, stderr }))
      else resume(Effect.fail(new NetlabError({ step: argv.join(" "), detail: `${stderr.trim() || error.message}` })))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const ip = (...args: ReadonlyArray<string>) => run(["ip", ...args])

/** Calls `onLine` with each complete line of a text stream (the last, unfinished one waits). */
export const eachLine = (stream: NodeJS.ReadableStream, onLine: (line: string) => void): void => {
  let buffered = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    const parts = (buffered + chunk).split("\n")
    buffered = parts.pop() ?? ""
    for (const part of parts) onLine(part)
  })
}

const startProcess = (argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv | undefined) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const lines = yield* Queue.unbounded<string, Cause.Done>()
      const [file = "", ...args] = argv
      const child = yield* Effect.try({
        try: () => spawnChild(file, args, { stdio: ["pipe", "pipe", "pipe"], env: env ?? process.env }),
        catch: (e) => new NetlabError({ step: argv.join(" "), detail: String(e) })
      })
      let stderr = ""
      eachLine(child.stdout, (line) => Queue.offerUnsafe(lines, line))
      child.stderr.setEncoding("utf8")
      child.stderr.on("data", (chunk: string) => {
        stderr = (stderr + chunk).slice(-4096)
      })
      child.stdin.on("error", () => {}) // a dead child's stdin: the exit is reported elsewhere
      const exitCode = new Promise<number | null>((resolve) => {
        child.once("error", (e) => {
          stderr += String(e)
          resolve(null)
        })
        child.once("exit", (code) => resolve(code))
      })
      void exitCode.then(() => Queue.endUnsafe(lines))
      const what = argv.join(" ")
      const proc: LabProcess = {
        pid: child.pid ?? -1,
        child,
        nextLine: (within, waitingFor) =>
          Queue.take(lines).pipe(
            Effect.catchCause(() => Effect.fail(new NetlabError({ step: what, detail: `exited while waiting for ${waitingFor}: ${stderr.trim()}` }))),
            Effect.timeoutOrElse({
              duration: within,
              orElse: () => Effect.fail(new NetlabError({ step: what, detail: `no ${waitingFor} within ${Duration.format(Duration.fromInputUnsafe(within))}: ${stderr.trim()}` }))
            })
          ),
        writeLine: (line) => Effect.sync(() => void child.stdin.write(`${line}\n`)),
        exited: Effect.promise(() => exitCode),
        stderrTail: () => stderr
      }
      return proc
    }),
    (proc) =>
      Effect.gen(function*() {
        const { child } = proc
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill("SIGTERM")
        yield* proc.exited.pipe(
          Effect.timeoutOrElse({ duration: "3 seconds", orElse: () => Effect.sync(() => void child.kill("SIGKILL")).pipe(Effect.andThen(proc.exited)) })
        )
      })
  )

const namespaceHandle = (name: string): Namespace => ({
  name,
  exec: (argv, options) => run(["ip", "netns", "exec", name, ...argv], options?.timeout),
  spawn: (argv, options) => startProcess(["ip", "netns", "exec", name, ...argv], options?.env)
})

/** Kills what still runs in a namespace of ours, then deletes it. Never fails. */
const deleteNamespace = (name: string) =>
  Effect.gen(function*() {
    const pids = yield* ip("netns", "pids", name).pipe(Effect.map((o) => o.stdout.split(/\s+/).filter((p) => p !== "")), Effect.orElseSucceed(() => []))
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL")
      } catch {
        // already gone
      }
    }
    yield* ip("netns", "del", name).pipe(Effect.ignore)
  })

// ---- the emulator binary ----------------------------------------------------------------------

const emulatorSource = path.join(import.meta.dirname, "linkemu.c")

/** Compiles linkemu.c with the machine's gcc into a cache directory keyed by the source's hash. */
export const emulatorBinary: Effect.Effect<string, NetlabError> = Effect.gen(function*() {
  const source = yield* Effect.try({ try: () => fs.readFileSync(emulatorSource), catch: (e) => new NetlabError({ step: "read linkemu.c", detail: String(e) }) })
  const hash = createHash("sha256").update(source).digest("hex").slice(0, 16)
  const dir = path.join(os.tmpdir(), "can-sync-netlab")
  const binary = path.join(dir, `linkemu-${hash}`)
  if (fs.existsSync(binary)) return binary
  fs.mkdirSync(dir, { recursive: true })
  const partial = `${binary}.${process.pid}.tmp`
  yield* run(["gcc", "-O2", "-Wall", "-pthread", "-o", partial, emulatorSource], "60 seconds")
  fs.renameSync(partial, binary) // atomic: concurrent test files may compile at once
  return binary
})

// ---- probe and sweep --------------------------------------------------------------------------

export type Probe = { readonly ok: true } | { readonly ok: false; readonly reason: string }

let probed: Probe | undefined

/** Whether this machine lets the tests create namespaces and build the emulator, and if not why. */
export const canCreateNamespaces: Effect.Effect<Probe> = Effect.suspend(() => {
  if (probed !== undefined) return Effect.succeed(probed)
  const name = `cs${process.pid}-probe`
  const attempt = Effect.gen(function*() {
    if (process.platform !== "linux") return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` } as const
    yield* ip("netns", "add", name)
    yield* ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1").pipe(Effect.ensuring(ip("netns", "del", name).pipe(Effect.ignore)))
    yield* emulatorBinary
    return { ok: true } as const
  })
  return attempt.pipe(
    Effect.catch((e: NetlabError) => Effect.succeed({ ok: false, reason: `cannot build the network lab here (${e.step}: ${e.detail.split("\n")[0]})` } as const)),
    Effect.tap((p) => Effect.sync(() => void (probed = p)))
  )
})

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Deletes namespaces named `cs<pid>-…` whose process is gone (a run that was killed). */
export const sweepStale: Effect.Effect<ReadonlyArray<string>> = Effect.gen(function*() {
  const listed = yield* ip("netns", "list").pipe(Effect.map((o) => o.stdout), Effect.orElseSucceed(() => ""))
  const stale = listed
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => {
      const m = /^cs(\d+)-/.exec(name)
      return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]))
    })
  for (const name of stale) yield* deleteNamespace(name)
  return stale
})

// ---- the lab ----------------------------------------------------------------------------------

let labs = 0

const parseStats = (line: string): LinkStats => {
  const side = (text: string): DirectionStats => {
    const v = (k: string) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(text)?.[1] ?? "0")
    return { rx: v("rx"), tx: v("tx"), lost: v("lost"), down: v("down"), overflow: v("overflow"), oversize: v("oversize"), queued: v("queued") }
  }
  const [ab = "", ba = ""] = line.replace(/^stats /, "").split("|")
  return { aToB: side(ab), bToA: side(ba) }
}

const directionArgs = (d: DirectionParams) =>
  [
    d.delayMs !== undefined ? `delay=${d.delayMs}` : "",
    d.lossRate !== undefined ? `loss=${d.lossRate}` : "",
    d.rateBytesPerSec !== undefined ? `rate=${d.rateBytesPerSec}` : "",
    d.queueBytes !== undefined ? `limit=${d.queueBytes}` : ""
  ].filter((s) => s !== "").join(" ")

/** A lab whose namespaces and processes all go when the current scope closes (even on failure). */
export const make: Effect.Effect<Lab, NetlabError, Scope.Scope> = Effect.gen(function*() {
  const scope = yield* Effect.scope
  yield* sweepStale
  const prefix = `cs${process.pid}-${labs++}`
  const binary = yield* emulatorBinary
  let links = 0
  const inScope = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Scope.provide(scope)(effect)

  const namespace = (role: string) =>
    inScope(
      Effect.acquireRelease(
        ip("netns", "add", `${prefix}-${role}`).pipe(Effect.as(namespaceHandle(`${prefix}-${role}`))),
        (ns) => deleteNamespace(ns.name)
      ).pipe(Effect.tap((ns) => ip("-n", ns.name, "link", "set", "lo", "up")))
    )

  const configure = (end: Endpoint) =>
    Effect.gen(function*() {
      if (end.address !== undefined) yield* ip("-n", end.ns.name, "addr", "add", end.address, "dev", end.ifname)
      yield* ip("-n", end.ns.name, "link", "set", end.ifname, "up")
    })

  const veth = (a: Endpoint, b: Endpoint) =>
    Effect.gen(function*() {
      yield* ip("-n", a.ns.name, "link", "add", a.ifname, "type", "veth", "peer", "name", b.ifname, "netns", b.ns.name)
      yield* configure(a)
      yield* configure(b)
    })

  const link = (a: Endpoint, b: Endpoint, params: LinkParams = {}) =>
    Effect.gen(function*() {
      const k = links++
      const emulator = yield* namespace(`emu${k}`)
      const ea = `e${k}a`
      const eb = `e${k}b`
      yield* veth(a, { ns: emulator, ifname: ea })
      yield* veth(b, { ns: emulator, ifname: eb })
      // a raw bridge sees frames as the stack left them: no segmentation or checksum offloads anywhere
      yield* a.ns.exec([binary, "offload-off", a.ifname])
      yield* b.ns.exec([binary, "offload-off", b.ifname])
      yield* emulator.exec([binary, "offload-off", ea, eb])
      yield* ip("-n", emulator.name, "link", "set", ea, "promisc", "on")
      yield* ip("-n", emulator.name, "link", "set", eb, "promisc", "on")
      const proc = yield* inScope(emulator.spawn([binary, "run", ea, eb]))
      const ready = yield* proc.nextLine("10 seconds", "linkemu ready")
      if (ready !== "ready") return yield* new NetlabError({ step: "linkemu run", detail: `said ${ready}` })
      const lock = yield* Semaphore.make(1)
      const command = (line: string) =>
        Semaphore.withPermit(lock)(
          proc.writeLine(line).pipe(
            Effect.andThen(proc.nextLine("5 seconds", `an answer to "${line}"`)),
            Effect.flatMap((answer) => (answer.startsWith("err") ? Effect.fail(new NetlabError({ step: `linkemu ${line}`, detail: answer })) : Effect.succeed(answer)))
          )
        )
      const set = (p: LinkParams) =>
        Effect.gen(function*() {
          if (p.aToB !== undefined && directionArgs(p.aToB) !== "") yield* command(`set ab ${directionArgs(p.aToB)}`)
          if (p.bToA !== undefined && directionArgs(p.bToA) !== "") yield* command(`set ba ${directionArgs(p.bToA)}`)
        })
      yield* set(params)
      const handle: EmulatedLink = {
        emulator,
        pid: proc.pid,
        set,
        down: command("down").pipe(Effect.asVoid),
        up: command("up").pipe(Effect.asVoid),
        stats: command("stats").pipe(Effect.map(parseStats))
      }
      return handle
    })

  return { prefix, namespace, veth, link } satisfies Lab
})

/** The common topology: hosts A (10.99.0.1) and B (10.99.0.2) on one subnet through an emulated link. */
export interface Pair {
  readonly lab: Lab
  readonly a: Namespace
  readonly b: Namespace
  readonly addressA: string
  readonly addressB: string
  readonly link: EmulatedLink
}

/** The MAC address of `ifname` in a namespace. */
const macOf = (ns: Namespace, ifname: string) =>
  ip("-n", ns.name, "-o", "link", "show", "dev", ifname).pipe(
    Effect.flatMap(({ stdout }) => {
      const mac = /link\/ether ([0-9a-f:]{17})/.exec(stdout)?.[1]
      return mac === undefined ? Effect.fail(new NetlabError({ step: `MAC of ${ifname} in ${ns.name}`, detail: stdout.trim() })) : Effect.succeed(mac)
    })
  )

/**
 * Each host of a pair knows the other's MAC address from the start, so neighbour discovery never
 * crosses the emulated link: a lost ARP request would otherwise hold back (and then drop) whatever
 * waits on it for a second or more, which is neither the path's loss nor its outage.
 */
const knowEachOther = (a: Endpoint & { readonly ip: string }, b: Endpoint & { readonly ip: string }) =>
  Effect.gen(function*() {
    const [macA, macB] = [yield* macOf(a.ns, a.ifname), yield* macOf(b.ns, b.ifname)]
    yield* ip("-n", a.ns.name, "neigh", "replace", b.ip, "lladdr", macB, "dev", a.ifname, "nud", "permanent")
    yield* ip("-n", b.ns.name, "neigh", "replace", a.ip, "lladdr", macA, "dev", b.ifname, "nud", "permanent")
  })

export const pair = (params: LinkParams = {}): Effect.Effect<Pair, NetlabError, Scope.Scope> =>
  Effect.gen(function*() {
    const lab = yield* make
    const a = { ns: yield* lab.namespace("a"), ifname: "eth0", ip: "10.99.0.1" }
    const b = { ns: yield* lab.namespace("b"), ifname: "eth0", ip: "10.99.0.2" }
    const link = yield* lab.link({ ...a, address: `${a.ip}/24` }, { ...b, address: `${b.ip}/24` }, params)
    yield* knowEachOther(a, b)
    return { lab, a: a.ns, b: b.ns, addressA: a.ip, addressB: b.ip, link }
  })
