/**
 * The end-to-end scenario: every agent, signaling server, CAN service and CLI command runs as its
 * own OS process (`node packages/cli/src/main.ts ...`) on loopback, exactly as a user starts them.
 * A `Scenario` is a scoped resource owning a temp dir and every process it spawned (all stopped,
 * the dir removed, when the scope closes). Waits are `eventually` with a deadline; a timed-out
 * wait reports the tail of every process's stderr, and gives up at once if a process crashed.
 */
import type { PeerStats } from "@can-sync/core"
import { Data, Duration, Effect, Scope } from "effect"
import { mkdir, readdir, writeFile } from "node:fs/promises"
import { basename, join } from "node:path"
import { eventually, GaveUp, notYet, type NotYet, type TimedOut } from "../kit/Eventually.ts"
import { tempDir } from "../kit/Files.ts"
import { type Child, cli, type CommandFailed, CommandFailed as CommandFailedError, type CommandTimedOut, type Ran, runCli } from "../kit/Process.ts"
import { writeContent } from "../kit/Seeded.ts"

/**
 * Per-test deadline: above every wait inside a test, so a stuck test fails with a wait's
 * diagnostics rather than vitest's bare timeout.
 */
export const TEST_TIMEOUT = 300_000

/** Deadline for a process to start serving (a second when idle; much more on a loaded CI box). */
export const STARTUP_TIMEOUT = "60 seconds"

// ---- what the CLI prints ------------------------------------------------------------------------

export interface AssetMeta {
  readonly description: string
  readonly tags: ReadonlyArray<string>
  readonly trashed: boolean
  readonly createdAt: number
  readonly updatedAt: number
  readonly origin: string
}

/** One element of `can-sync ls --json`. */
export interface AssetRecord {
  readonly hash: string
  readonly size: number
  readonly meta: AssetMeta
  readonly seq: number
}

/** One peer in an agent's `/status`: the engine's counters plus the session's state. */
export interface PeerStatus extends PeerStats {
  readonly peer: string
  readonly state: string
  readonly role: string
  readonly restarts: number
}

export interface AgentStatus {
  readonly peerId: string
  readonly ready: boolean
  readonly peers: ReadonlyArray<PeerStatus>
}

export interface GeneratedFile {
  readonly path: string
  readonly hash: string
  readonly size: number
}

/** An agent's admin endpoint did not answer as it should. */
export class AdminUnavailable extends Data.TaggedError("AdminUnavailable")<{ readonly agent: string; readonly detail: string }> {
  override get message(): string {
    return `${this.agent}'s admin endpoint: ${this.detail}`
  }
}

/** A command printed something the harness cannot read. */
export class UnexpectedOutput extends Data.TaggedError("UnexpectedOutput")<{ readonly command: string; readonly detail: string }> {
  override get message(): string {
    return `${this.command}: ${this.detail}`
  }
}

export type ScenarioError = CommandTimedOut | CommandFailed | TimedOut | GaveUp | AdminUnavailable | UnexpectedOutput

// ---- agents -------------------------------------------------------------------------------------

const adminGet = (agent: string, url: string) =>
  Effect.tryPromise({
    try: (signal) => fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(5_000)]) }),
    catch: (error) => new AdminUnavailable({ agent, detail: `GET ${url}: ${String(error)}` })
  })

/** An agent (`can-sync sync`) with its admin port. */
export class Agent {
  readonly name: string
  readonly data: string
  readonly peerId: string
  readonly proc: Child
  readonly adminUrl: string

  constructor(name: string, data: string, peerId: string, proc: Child, adminUrl: string) {
    this.name = name
    this.data = data
    this.peerId = peerId
    this.proc = proc
    this.adminUrl = adminUrl
  }

  get status(): Effect.Effect<AgentStatus, AdminUnavailable> {
    return adminGet(this.name, `${this.adminUrl}/status`).pipe(
      Effect.flatMap((response) =>
        response.status === 200
          ? Effect.tryPromise({ try: () => response.json() as Promise<AgentStatus>, catch: (error) => new AdminUnavailable({ agent: this.name, detail: `/status: ${String(error)}` }) })
          : Effect.fail(new AdminUnavailable({ agent: this.name, detail: `/status answered ${response.status}` }))
      )
    )
  }

  get ready(): Effect.Effect<boolean, AdminUnavailable> {
    return adminGet(this.name, `${this.adminUrl}/readyz`).pipe(
      Effect.flatMap((response) => Effect.promise(() => response.arrayBuffer().then(() => response.status === 200, () => false)))
    )
  }

  /** This agent's counters for `peer`, or undefined while it has no session with it. */
  peer(peer: Agent | string): Effect.Effect<PeerStatus | undefined, AdminUnavailable> {
    const id = typeof peer === "string" ? peer : peer.peerId
    return this.status.pipe(Effect.map((status) => status.peers.find((p) => p.peer === id)))
  }
}

export interface AgentOptions {
  readonly data: string
  readonly signal: string
  readonly peers: ReadonlyArray<Agent | string>
  /** `--peers-file`: more allowed peers, one id per line. */
  readonly peersFile?: string
  readonly canUrl?: string
  readonly token?: string
  /** More `sync` flags (e.g. `--mtu 4000` in the benchmark). */
  readonly extraArgs?: ReadonlyArray<string>
}

const nameOf = (peer: Agent | string) => (typeof peer === "string" ? peer : peer.name)
const idOf = (peer: Agent | string) => (typeof peer === "string" ? peer : peer.peerId)

// ---- the scenario -------------------------------------------------------------------------------

export class Scenario {
  readonly root: string
  readonly procs: Array<Child> = []
  private readonly processes: Scope.Scope
  private readonly ids = new Map<string, string>()
  private readonly createdAt = Date.now()

  private constructor(root: string, processes: Scope.Scope) {
    this.root = root
    this.processes = processes
  }

  /**
   * A scenario for the length of the scope: when it closes, every process still running is
   * stopped (SIGTERM, then SIGKILL), in parallel, and then the temp dir is removed.
   */
  static make(name: string): Effect.Effect<Scenario, never, Scope.Scope> {
    return Effect.gen(function*() {
      const root = yield* tempDir(`e2e-${name}`)
      const scenario: Scenario = yield* Effect.acquireRelease(
        Scope.fork(yield* Effect.scope, "parallel").pipe(Effect.map((processes) => new Scenario(root, processes))),
        (s) => s.keepLogs()
      )
      return scenario
    })
  }

  /** E2E_LOGS=DIR keeps every long-running process's stderr (e.g. as a CI artifact). */
  private keepLogs(): Effect.Effect<void> {
    const keep = process.env.E2E_LOGS
    if (keep === undefined || keep === "") return Effect.void
    const prefix = basename(this.root)
    return Effect.promise(async () => {
      await mkdir(keep, { recursive: true })
      await Promise.all(this.procs.map((p, i) => writeFile(join(keep, `${prefix}.${i}.${p.name.replace(/[^\w.-]+/g, "_")}.log`), p.stderr)))
    })
  }

  /** With E2E_VERBOSE=1, prints a timestamped progress note (to see where a slow run spends time). */
  note(message: string): Effect.Effect<void> {
    return Effect.sync(() => {
      if (process.env.E2E_VERBOSE === "1") console.log(`[e2e +${((Date.now() - this.createdAt) / 1000).toFixed(1)}s] ${message}`)
    })
  }

  /** A path inside the scenario dir. */
  path(...parts: ReadonlyArray<string>): string {
    return join(this.root, ...parts)
  }

  /** Every process's stderr tail: the failure message of a timed-out wait. */
  diagnostics = (): string => this.procs.map((p) => p.tail()).join("\n")

  /** `eventually`, giving up at once when a process of this scenario exited unexpectedly. */
  wait<A, E, R>(
    what: string,
    probe: Effect.Effect<A | NotYet | undefined, E, R>,
    deadline: Duration.Input,
    options: { readonly interval?: Duration.Input; readonly maxInterval?: Duration.Input } = {}
  ): Effect.Effect<Exclude<A, NotYet | undefined>, TimedOut | GaveUp, R> {
    const crashCheck = Effect.suspend(() => {
      const crashed = this.procs.find((p) => !p.running && !p.expectExit)
      return crashed === undefined
        ? Effect.void
        : Effect.fail(new GaveUp({ what, reason: `${crashed.name} exited unexpectedly (${crashed.describeExit()})`, diagnostics: "" }))
    })
    return eventually(what, crashCheck.pipe(Effect.andThen(probe)), deadline, { ...options, diagnostics: this.diagnostics })
  }

  /** Starts a long-running CLI process owned by this scenario. */
  spawn(name: string, args: ReadonlyArray<string>): Effect.Effect<Child> {
    return cli(args, { name, grace: "5 seconds" }).pipe(
      Scope.provide(this.processes),
      Effect.tap((child) => Effect.sync(() => this.procs.push(child)))
    )
  }

  /** Runs a CLI command to completion (killed after `deadline`). */
  run(args: ReadonlyArray<string>, deadline: Duration.Input = "60 seconds"): Effect.Effect<Ran, CommandTimedOut> {
    return runCli(args, { deadline })
  }

  /** Runs a CLI command that must succeed; returns its stdout. */
  cli(args: ReadonlyArray<string>, deadline: Duration.Input = "60 seconds"): Effect.Effect<string, CommandTimedOut | CommandFailed> {
    return this.run(args, deadline).pipe(
      Effect.flatMap((ran) => (ran.code === 0 ? Effect.succeed(ran.stdout) : Effect.fail(new CommandFailedError({ argv: ["can-sync", ...args], ran }))))
    )
  }

  /** `can-sync id`: the peer id of a data dir (created on first use), remembered. */
  id(data: string): Effect.Effect<string, CommandTimedOut | CommandFailed> {
    const known = this.ids.get(data)
    if (known !== undefined) return Effect.succeed(known)
    return this.cli(["id", "--data", data]).pipe(
      Effect.map((out) => out.trim()),
      Effect.tap((id) => Effect.sync(() => this.ids.set(data, id)))
    )
  }

  /** `can-sync signal --port 0`: the signaling server; its ws:// URL. */
  signal(): Effect.Effect<{ readonly url: string; readonly proc: Child }, TimedOut | GaveUp> {
    return Effect.gen({ self: this }, function*() {
      const proc = yield* this.spawn("signal", ["signal", "--host", "127.0.0.1", "--port", "0"])
      const match = yield* proc.waitFor("stdout", /signaling at (ws:\/\/\S+)/, STARTUP_TIMEOUT)
      return { url: match[1]!, proc }
    })
  }

  /** `can-sync serve`: a CAN HTTP service on `data` (on `port`, else a free one); its URL. */
  serve(data: string, token: string, port = 0): Effect.Effect<{ readonly url: string; readonly proc: Child }, TimedOut | GaveUp> {
    return Effect.gen({ self: this }, function*() {
      const args = ["serve", "--data", data, "--host", "127.0.0.1", "--port", String(port), "--token", token]
      const proc = yield* this.spawn(`serve ${data.slice(this.root.length + 1)}`, args)
      const match = yield* proc.waitFor("stdout", /serving .* at (http:\/\/\S+)/, STARTUP_TIMEOUT)
      return { url: match[1]!, proc }
    })
  }

  /** `can-sync sync` on loopback with an admin port; waits until it is ready. */
  agent(name: string, options: AgentOptions): Effect.Effect<Agent, ScenarioError> {
    return Effect.gen({ self: this }, function*() {
      const peerId = yield* this.id(options.data)
      const args = [
        "sync",
        "--data", options.data,
        "--signal", options.signal,
        "--bind-address", "127.0.0.1",
        "--admin-port", "0",
        ...options.peers.flatMap((p) => ["--peer", idOf(p)]),
        ...(options.peersFile !== undefined ? ["--peers-file", options.peersFile] : []),
        ...(options.canUrl !== undefined ? ["--can-url", options.canUrl] : []),
        ...(options.token !== undefined ? ["--token", options.token] : []),
        ...(options.extraArgs ?? [])
      ]
      const proc = yield* this.spawn(name, args)
      // The admin port is picked by the OS (port 0) and announced in a log line.
      const match = yield* proc.waitFor("stderr", /admin endpoints at (http:\/\/[\d.:]+)/, STARTUP_TIMEOUT, this.diagnostics)
      const agent = new Agent(name, options.data, peerId, proc, match[1]!)
      yield* this.wait(`${name} to be ready (/readyz)`, agent.ready.pipe(Effect.map((ready) => (ready ? true : undefined))), STARTUP_TIMEOUT, { interval: "100 millis" })
      return agent
    })
  }

  /** Waits until `agent` has a live session with `peer` (reconciled, pushing changes as they happen). */
  live(agent: Agent, peer: Agent | string, deadline: Duration.Input = "60 seconds"): Effect.Effect<PeerStatus, TimedOut | GaveUp> {
    return this.wait(`${agent.name} to be live with ${nameOf(peer)}`, agent.peer(idOf(peer)).pipe(
      Effect.map((p) => (p !== undefined && p.state === "live" ? p : notYet(p)))
    ), deadline)
  }

  /** Waits until `agent`'s counters for `peer` satisfy `until`; returns them. */
  counters(agent: Agent, peer: Agent | string, until: (p: PeerStatus) => boolean, deadline: Duration.Input = "30 seconds"): Effect.Effect<PeerStatus, TimedOut | GaveUp> {
    return this.wait(`${agent.name}'s counters for ${nameOf(peer)}`, agent.peer(idOf(peer)).pipe(
      Effect.map((p) => (p !== undefined && until(p) ? p : notYet(p)))
    ), deadline)
  }

  /** `can-sync add`: the hash printed for each file, in order. */
  add(
    data: string,
    files: ReadonlyArray<string>,
    options: { readonly description?: string; readonly tags?: ReadonlyArray<string> } = {}
  ): Effect.Effect<ReadonlyArray<string>, CommandTimedOut | CommandFailed | UnexpectedOutput> {
    return this.cli([
      "add", "--data", data,
      ...(options.description !== undefined ? ["--description", options.description] : []),
      ...(options.tags ?? []).flatMap((t) => ["--tag", t]),
      ...files
    ], "120 seconds").pipe(Effect.flatMap((out) => {
      const hashes = out.trim().split("\n").map((line) => line.split("  ")[0]!)
      return hashes.length === files.length
        ? Effect.succeed(hashes)
        : Effect.fail(new UnexpectedOutput({ command: "can-sync add", detail: `printed ${hashes.length} lines for ${files.length} files:\n${out}` }))
    }))
  }

  /** `can-sync ls --json`. */
  ls(data: string): Effect.Effect<ReadonlyArray<AssetRecord>, CommandTimedOut | CommandFailed | UnexpectedOutput> {
    return this.cli(["ls", "--data", data, "--json"]).pipe(Effect.flatMap((out) => parseJson<ReadonlyArray<AssetRecord>>("can-sync ls --json", out)))
  }

  /**
   * Waits until the listing of `data` satisfies `until` (polling `ls --json`); returns it.
   * Meant for "arrives within seconds": give it a deadline of seconds, not minutes.
   */
  listed(data: string, what: string, until: (records: ReadonlyArray<AssetRecord>) => boolean, deadline: Duration.Input): Effect.Effect<ReadonlyArray<AssetRecord>, TimedOut | GaveUp> {
    return this.wait(what, this.ls(data).pipe(
      Effect.map((records) => (until(records) ? records : notYet(`${records.length} assets listed`)))
    ), deadline, { interval: "200 millis", maxInterval: "1 second" })
  }

  /** `can-sync meta` with an edit; the new metadata. */
  meta(
    data: string,
    hash: string,
    edit: { readonly description?: string; readonly tags?: ReadonlyArray<string>; readonly trash?: boolean }
  ): Effect.Effect<AssetMeta, CommandTimedOut | CommandFailed | UnexpectedOutput> {
    return this.cli([
      "meta", "--data", data, hash, "--json",
      ...(edit.description !== undefined ? ["--description", edit.description] : []),
      ...(edit.tags ?? []).flatMap((t) => ["--tag", t]),
      ...(edit.trash === true ? ["--trash"] : edit.trash === false ? ["--untrash"] : [])
    ]).pipe(
      Effect.flatMap((out) => parseJson<AssetMeta & { readonly hash: string }>("can-sync meta --json", out)),
      Effect.map(({ hash: _hash, ...meta }) => meta)
    )
  }

  /** `can-sync verify`: exit code and output. */
  verify(data: string): Effect.Effect<Ran, CommandTimedOut> {
    return this.run(["verify", "--data", data], "120 seconds")
  }

  /**
   * `count` small distinct files under `dir` (sizes 100 B to ~4 KiB), named `small-<i>`;
   * content depends only on `seed` and `i`.
   */
  smallFiles(dir: string, seed: string, count: number): Effect.Effect<ReadonlyArray<GeneratedFile>> {
    return Effect.promise(() => mkdir(this.path(dir), { recursive: true })).pipe(
      Effect.andThen(Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => {
        const path = this.path(dir, `small-${i}`)
        const size = 100 + ((i * 7919) % 4000)
        return writeContent(path, `${seed}/${i}`, size).pipe(Effect.map((hash) => ({ path, size, hash })))
      }))
    )
  }

  /** One large file of `size` bytes, deterministic in `seed`. */
  largeFile(name: string, seed: string, size: number): Effect.Effect<GeneratedFile> {
    const path = this.path("files", name)
    return Effect.promise(() => mkdir(this.path("files"), { recursive: true })).pipe(
      Effect.andThen(writeContent(path, seed, size)),
      Effect.map((hash) => ({ path, size, hash }))
    )
  }

  /** Writes a peers file (one id per line); its path. */
  peersFile(name: string, peers: ReadonlyArray<Agent | string>): Effect.Effect<string> {
    const path = this.path(name)
    return Effect.promise(() => writeFile(path, peers.map(idOf).join("\n") + "\n")).pipe(Effect.as(path))
  }

  /** Names in a data dir's `tmp/` (in-flight writes). */
  tmpFiles(data: string): Effect.Effect<ReadonlyArray<string>> {
    return Effect.promise(() => readdir(join(data, "tmp")).catch(() => []))
  }

  /**
   * Waits until every store lists the same assets with the same metadata, and (when given)
   * exactly `expected` hashes. `inspect` sees every listing taken on the way. Returns the common
   * listing, sorted by hash.
   */
  converged(
    datas: ReadonlyArray<string>,
    options: {
      readonly expected?: ReadonlySet<string>
      readonly timeout?: Duration.Input
      readonly inspect?: (data: string, records: ReadonlyArray<AssetRecord>) => Effect.Effect<void>
    } = {}
  ): Effect.Effect<ReadonlyArray<Omit<AssetRecord, "seq">>, TimedOut | GaveUp> {
    const what = `${datas.length} stores to converge${options.expected ? ` on ${options.expected.size} assets` : ""}`
    const probe = Effect.gen({ self: this }, function*() {
      const raw = yield* Effect.forEach(datas, (data) => this.ls(data), { concurrency: "unbounded" })
      if (options.inspect !== undefined) for (const [i, records] of raw.entries()) yield* options.inspect(datas[i]!, records)
      const listings = raw.map(canonical)
      const counts = notYet(`asset counts: ${listings.map((l) => l.length).join(" / ")}`)
      const first = JSON.stringify(listings[0])
      if (!listings.every((l) => JSON.stringify(l) === first)) return counts
      if (options.expected !== undefined) {
        const hashes = listings[0]!.map((r) => r.hash)
        if (hashes.length !== options.expected.size || !hashes.every((h) => options.expected!.has(h))) return counts
      }
      return listings[0]
    })
    return this.wait(what, probe, options.timeout ?? "150 seconds", { interval: "500 millis", maxInterval: "3 seconds" })
  }
}

const parseJson = <A>(command: string, text: string): Effect.Effect<A, UnexpectedOutput> =>
  Effect.try({ try: () => JSON.parse(text) as A, catch: (error) => new UnexpectedOutput({ command, detail: `not JSON (${String(error)}): ${text.slice(0, 500)}` }) })

/** A listing in a comparable form: sorted by hash, without the store-local `seq`. */
export const canonical = (records: ReadonlyArray<AssetRecord>): ReadonlyArray<Omit<AssetRecord, "seq">> =>
  [...records]
    .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0))
    .map(({ hash, size, meta }) => ({ hash, size, meta: { ...meta, tags: [...meta.tags] } }))

/** The hashes of a set of generated files. */
export const hashesOf = (files: ReadonlyArray<GeneratedFile>): ReadonlySet<string> => new Set(files.map((f) => f.hash))

export const union = <A>(...sets: ReadonlyArray<Iterable<A>>): ReadonlySet<A> => {
  const out = new Set<A>()
  for (const s of sets) for (const a of s) out.add(a)
  return out
}

/** Effects run side by side (setup steps that do not depend on each other). */
export const all = <const T extends ReadonlyArray<Effect.Effect<unknown, unknown, unknown>>>(effects: T) =>
  Effect.all(effects, { concurrency: "unbounded" })
