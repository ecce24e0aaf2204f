/**
 * Harness for the end-to-end tests: every agent, signaling server, CAN service and CLI command
 * runs as its own OS process (`node packages/cli/src/main.ts ...`) on loopback, exactly as a user
 * starts them. A `Scenario` owns a temp dir and every process it spawned; `close()` kills them all
 * and removes the dir, also when the test failed. Waits are polls with a deadline, never sleeps,
 * and a timed-out wait reports the tail of every process's stderr.
 */
import type { PeerStats } from "@can-sync/core"
import { type ChildProcess, spawn } from "node:child_process"
import { createCipheriv, createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { basename, join, resolve } from "node:path"

export const repoRoot = resolve(import.meta.dirname, "..", "..")
export const cliMain = join(repoRoot, "packages", "cli", "src", "main.ts")

/**
 * Scenario dirs live on tmpfs when there is one: the stores fsync twice per asset, and on a VM
 * disk that alone would make the hundreds-of-assets scenarios take minutes.
 */
export const scratchRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()

/**
 * Per-test deadline: above every wait inside a test, so a stuck test fails with a wait's
 * diagnostics rather than vitest's bare timeout.
 */
export const TEST_TIMEOUT = 300_000

/** Deadline for a process to start serving (a second when idle; much more on a loaded CI box). */
export const STARTUP_TIMEOUT = 60_000

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

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

/** One peer in `GET /status` of an agent's admin port. */
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

export interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

// ---- waiting ------------------------------------------------------------------------------------

export interface WaitOptions {
  /** Deadline in ms (generous: this machine has two cores and runs two test files at once). */
  readonly timeout: number
  /** Pause between attempts, in ms. */
  readonly interval?: number
  /**
   * When set, the pause grows by half after each attempt up to this many ms: for probes that cost
   * a process start (`ls`), which would otherwise take CPU from the agents under test.
   */
  readonly maxInterval?: number
  /** Extra diagnostics for the failure message, computed only on failure. */
  readonly diagnostics?: () => string
}

/** Thrown by a probe when waiting longer cannot help (the process exited, the scenario closed). */
export class Hopeless extends Error {}

/**
 * Calls `probe` until it returns a value other than `undefined`, at most until the deadline;
 * bounded in time, and therefore in attempts. A probe error is retried, unless it is `Hopeless`.
 * On timeout, throws with `what`, the last probe error and the diagnostics.
 */
export const waitFor = async <A>(
  what: string,
  probe: () => Promise<A | undefined> | A | undefined,
  options: WaitOptions
): Promise<A> => {
  const deadline = Date.now() + options.timeout
  let interval = options.interval ?? 250
  let lastError: unknown
  while (true) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (error) {
      if (error instanceof Hopeless) throw new Error(`gave up waiting for ${what}: ${error.message}${options.diagnostics ? `\n${options.diagnostics()}` : ""}`)
      lastError = error
    }
    if (Date.now() >= deadline) break
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())))
    if (options.maxInterval !== undefined) interval = Math.min(options.maxInterval, Math.round(interval * 1.5))
  }
  const detail = lastError === undefined ? "" : `\nlast probe error: ${lastError instanceof Error ? lastError.message : String(lastError)}`
  throw new Error(`timed out after ${options.timeout} ms waiting for ${what}${detail}${options.diagnostics ? `\n${options.diagnostics()}` : ""}`)
}

// ---- content ------------------------------------------------------------------------------------

/**
 * Deterministic pseudo-random bytes: the AES-128-CTR keystream of a key derived from `seed`.
 * Fast (hundreds of MB/s), written chunk by chunk, never whole in memory. Returns the SHA-256.
 */
export const writeContent = async (path: string, seed: string, size: number): Promise<string> => {
  const key = createHash("sha256").update(`can-sync e2e ${seed}`).digest().subarray(0, 16)
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16))
  const hash = createHash("sha256")
  const chunk = 1024 * 1024
  const zeros = Buffer.alloc(chunk)
  const file = await open(path, "w")
  try {
    for (let left = size; left > 0; left -= chunk) {
      const bytes = cipher.update(left >= chunk ? zeros : zeros.subarray(0, left))
      hash.update(bytes)
      await file.write(bytes)
    }
  } finally {
    await file.close()
  }
  return hash.digest("hex")
}

export interface GeneratedFile {
  readonly path: string
  readonly hash: string
  readonly size: number
}

// ---- processes ----------------------------------------------------------------------------------

/** Only this much of each stream is kept for failure messages and log searches. */
const MAX_CAPTURE = 4 * 1024 * 1024

/** Everything spawned by any scenario in this worker, killed on exit as a last resort. */
const everyChild = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of everyChild) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
})

/** The environment of every child: no configuration leaking in from the developer's shell. */
const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("CAN_SYNC_") || key.startsWith("OTEL_")) continue
    env[key] = value
  }
  env.NO_COLOR = "1"
  return env
}

/** A running CLI process: its output as it comes, its exit, and ways to stop it. */
export class Proc {
  readonly name: string
  readonly child: ChildProcess
  stdout = ""
  stderr = ""
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Set when its exit is part of the plan (stopped by the test, or a one-shot command). */
  expectExit = false

  constructor(name: string, args: ReadonlyArray<string>) {
    this.name = name
    this.child = spawn(process.execPath, [cliMain, ...args], { cwd: repoRoot, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] })
    everyChild.add(this.child)
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      this.stdout = (this.stdout + text).slice(-MAX_CAPTURE)
    })
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.stderr = (this.stderr + text).slice(-MAX_CAPTURE)
    })
    this.exited = new Promise((done) => {
      this.child.once("error", () => done({ code: null, signal: null }))
      this.child.once("exit", (code, signal) => {
        everyChild.delete(this.child)
        done({ code, signal })
      })
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** stderr as parsed JSON log lines (lines that are not JSON are skipped). */
  logs(): ReadonlyArray<{ readonly level?: string; readonly message?: string; readonly [key: string]: unknown }> {
    const out = []
    for (const line of this.stderr.split("\n")) {
      if (!line.startsWith("{")) continue
      try {
        out.push(JSON.parse(line))
      } catch {
        // a line cut at the capture limit
      }
    }
    return out
  }

  /** Log messages matching `pattern`. */
  messages(pattern: RegExp): ReadonlyArray<string> {
    return this.logs().map((r) => String(r.message ?? "")).filter((m) => pattern.test(m))
  }

  /** Waits until `pattern` matches the given stream; fails early if the process exits. */
  async waitForOutput(stream: "stdout" | "stderr", pattern: RegExp, timeout: number, diagnostics?: () => string): Promise<RegExpExecArray> {
    return waitFor(`${this.name} to print ${pattern} on ${stream}`, () => {
      const match = pattern.exec(this[stream])
      if (match !== null) return match
      if (!this.running) throw new Hopeless(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before printing it`)
      return undefined
    }, { timeout, interval: 50, diagnostics: diagnostics ?? (() => this.tail()) })
  }

  /** Sends `signal` and waits for the exit; SIGKILL if it has not exited within `grace` ms. */
  async stop(signal: NodeJS.Signals = "SIGTERM", grace = 10_000): Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }> {
    this.expectExit = true
    if (this.running) this.child.kill(signal)
    const timer = setTimeout(() => {
      if (this.running) this.child.kill("SIGKILL")
    }, grace)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  /** The last lines of stderr, for failure messages. */
  tail(lines = 25): string {
    const text = this.stderr.trimEnd().split("\n").slice(-lines).join("\n")
    return `--- ${this.name} (pid ${this.pid}${this.running ? "" : `, exited ${this.child.exitCode ?? this.child.signalCode}`}) stderr tail:\n${text}`
  }
}

/** An agent (`can-sync sync`) with its admin port. */
export class Agent {
  readonly name: string
  readonly data: string
  readonly peerId: string
  readonly proc: Proc
  readonly adminUrl: string

  constructor(name: string, data: string, peerId: string, proc: Proc, adminUrl: string) {
    this.name = name
    this.data = data
    this.peerId = peerId
    this.proc = proc
    this.adminUrl = adminUrl
  }

  async status(): Promise<AgentStatus> {
    const response = await fetch(`${this.adminUrl}/status`, { signal: AbortSignal.timeout(5_000) })
    if (response.status !== 200) throw new Error(`${this.name} /status answered ${response.status}`)
    return (await response.json()) as AgentStatus
  }

  async ready(): Promise<boolean> {
    const response = await fetch(`${this.adminUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })
    await response.arrayBuffer()
    return response.status === 200
  }

  /** This agent's counters for `peer`, or undefined while it has no session with it. */
  async peer(peer: Agent | string): Promise<PeerStatus | undefined> {
    const id = typeof peer === "string" ? peer : peer.peerId
    return (await this.status()).peers.find((p) => p.peer === id)
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

/** A temp dir and the processes of one test; `close()` leaves nothing behind. */
export class Scenario {
  readonly root: string
  readonly procs: Array<Proc> = []
  private closed = false
  private readonly ids = new Map<string, string>()
  private readonly createdAt = Date.now()

  private constructor(root: string) {
    this.root = root
  }

  static async create(name: string): Promise<Scenario> {
    return new Scenario(await mkdtemp(join(scratchRoot, `can-sync-e2e-${name}-`)))
  }

  /** With E2E_VERBOSE=1, prints a timestamped progress note (to see where a slow run spends time). */
  note(message: string): void {
    if (process.env.E2E_VERBOSE === "1") console.log(`[e2e +${((Date.now() - this.createdAt) / 1000).toFixed(1)}s] ${message}`)
  }

  /** A path inside the scenario dir. */
  path(...parts: ReadonlyArray<string>): string {
    return join(this.root, ...parts)
  }

  /** Every process's stderr tail: the failure message of a timed-out wait. */
  diagnostics = (): string => this.procs.map((p) => p.tail()).join("\n")

  wait<A>(what: string, probe: () => Promise<A | undefined> | A | undefined, timeout: number, interval = 250, maxInterval?: number): Promise<A> {
    return waitFor(what, () => {
      if (this.closed) throw new Hopeless("the scenario was closed")
      const crashed = this.procs.find((p) => !p.running && !p.expectExit)
      if (crashed !== undefined) throw new Hopeless(`${crashed.name} exited unexpectedly (${crashed.child.exitCode ?? crashed.child.signalCode})`)
      return probe()
    }, { timeout, interval, diagnostics: this.diagnostics, ...(maxInterval !== undefined ? { maxInterval } : {}) })
  }

  /** Starts a long-running CLI process owned by this scenario. */
  spawn(name: string, args: ReadonlyArray<string>): Proc {
    // A test that timed out may still be running its steps: it must not start anything new.
    if (this.closed) throw new Hopeless(`the scenario was closed; not starting ${name}`)
    const proc = new Proc(name, args)
    this.procs.push(proc)
    return proc
  }

  /** Runs a CLI command to completion (killed after `timeout` ms). */
  async run(args: ReadonlyArray<string>, timeout = 60_000): Promise<RunResult> {
    const proc = this.spawn(`can-sync ${args[0]}`, args)
    proc.expectExit = true
    const timer = setTimeout(() => proc.child.kill("SIGKILL"), timeout)
    try {
      const { code, signal } = await proc.exited
      return { code, signal, stdout: proc.stdout, stderr: proc.stderr }
    } finally {
      clearTimeout(timer)
      this.procs.splice(this.procs.indexOf(proc), 1)
    }
  }

  /** Runs a CLI command that must succeed; returns its stdout. */
  async cli(args: ReadonlyArray<string>, timeout = 60_000): Promise<string> {
    const result = await this.run(args, timeout)
    if (result.code !== 0) {
      throw new Error(`can-sync ${args.join(" ")} exited ${result.code ?? result.signal}\n${result.stderr.slice(-4000)}`)
    }
    return result.stdout
  }

  /** `can-sync id`: the peer id of a data dir (created on first use), remembered. */
  async id(data: string): Promise<string> {
    const known = this.ids.get(data)
    if (known !== undefined) return known
    const id = (await this.cli(["id", "--data", data])).trim()
    this.ids.set(data, id)
    return id
  }

  /** `can-sync signal --port 0`: the signaling server; returns its ws:// URL. */
  async signal(): Promise<{ readonly url: string; readonly proc: Proc }> {
    const proc = this.spawn("signal", ["signal", "--host", "127.0.0.1", "--port", "0"])
    const match = await proc.waitForOutput("stdout", /signaling at (ws:\/\/\S+)/, STARTUP_TIMEOUT)
    return { url: match[1]!, proc }
  }

  /** `can-sync serve`: a CAN HTTP service on `data` (on `port`, else a free one); returns its URL. */
  async serve(data: string, token: string, port = 0): Promise<{ readonly url: string; readonly proc: Proc }> {
    const proc = this.spawn(`serve ${data.slice(this.root.length + 1)}`, ["serve", "--data", data, "--host", "127.0.0.1", "--port", String(port), "--token", token])
    const match = await proc.waitForOutput("stdout", /serving .* at (http:\/\/\S+)/, STARTUP_TIMEOUT)
    return { url: match[1]!, proc }
  }

  /** `can-sync sync` on loopback with an admin port; waits until it registered with signaling. */
  async agent(name: string, options: AgentOptions): Promise<Agent> {
    const peerId = await this.id(options.data)
    const peers = options.peers.map((p) => (typeof p === "string" ? p : p.peerId))
    const args = [
      "sync",
      "--data", options.data,
      "--signal", options.signal,
      "--bind-address", "127.0.0.1",
      "--admin-port", "0",
      ...peers.flatMap((p) => ["--peer", p]),
      ...(options.peersFile !== undefined ? ["--peers-file", options.peersFile] : []),
      ...(options.canUrl !== undefined ? ["--can-url", options.canUrl] : []),
      ...(options.token !== undefined ? ["--token", options.token] : []),
      ...(options.extraArgs ?? [])
    ]
    const proc = this.spawn(name, args)
    // The admin port is picked by the OS (port 0) and announced in a log line.
    const match = await proc.waitForOutput("stderr", /admin endpoints at (http:\/\/[\d.:]+)/, STARTUP_TIMEOUT, this.diagnostics)
    const agent = new Agent(name, options.data, peerId, proc, match[1]!)
    await this.wait(`${name} to be ready (/readyz)`, async () => ((await agent.ready()) ? true : undefined), STARTUP_TIMEOUT, 100)
    return agent
  }

  /** Waits until `agent` has a live session with `peer` (reconciled, pushing changes as they happen). */
  live(agent: Agent, peer: Agent | string, timeout = 60_000): Promise<PeerStatus> {
    const id = typeof peer === "string" ? peer : peer.peerId
    return this.wait(`${agent.name} to be live with ${typeof peer === "string" ? peer : peer.name}`, async () => {
      const p = await agent.peer(id)
      return p !== undefined && p.state === "live" ? p : undefined
    }, timeout)
  }

  /** Waits until `agent`'s counters for `peer` satisfy `until`; returns them. */
  counters(agent: Agent, peer: Agent | string, until: (p: PeerStatus) => boolean, timeout = 30_000): Promise<PeerStatus> {
    const id = typeof peer === "string" ? peer : peer.peerId
    let last: PeerStatus | undefined
    return this.wait(`${agent.name}'s counters for ${typeof peer === "string" ? peer : peer.name}`, async () => {
      last = await agent.peer(id)
      return last !== undefined && until(last) ? last : undefined
    }, timeout).catch((error: Error) => {
      throw new Error(`${error.message}\nlast counters: ${JSON.stringify(last)}`)
    })
  }

  /** `can-sync add`: returns the hash printed for each file, in order. */
  async add(data: string, files: ReadonlyArray<string>, options: { readonly description?: string; readonly tags?: ReadonlyArray<string> } = {}): Promise<ReadonlyArray<string>> {
    const out = await this.cli([
      "add", "--data", data,
      ...(options.description !== undefined ? ["--description", options.description] : []),
      ...(options.tags ?? []).flatMap((t) => ["--tag", t]),
      ...files
    ], 120_000)
    const hashes = out.trim().split("\n").map((line) => line.split("  ")[0]!)
    if (hashes.length !== files.length) throw new Error(`can-sync add printed ${hashes.length} lines for ${files.length} files:\n${out}`)
    return hashes
  }

  /** `can-sync ls --json`. */
  async ls(data: string): Promise<ReadonlyArray<AssetRecord>> {
    return JSON.parse(await this.cli(["ls", "--data", data, "--json"])) as ReadonlyArray<AssetRecord>
  }

  /**
   * Waits until the listing of `data` satisfies `until` (polling `ls --json`); returns it.
   * Meant for "arrives within seconds": give it a deadline of seconds, not minutes.
   */
  listed(data: string, what: string, until: (records: ReadonlyArray<AssetRecord>) => boolean, timeout: number): Promise<ReadonlyArray<AssetRecord>> {
    return this.wait(what, async () => {
      const records = await this.ls(data)
      return until(records) ? records : undefined
    }, timeout, 200, 1_000)
  }

  /** `can-sync meta` with an edit; returns the new metadata. */
  async meta(data: string, hash: string, edit: { readonly description?: string; readonly tags?: ReadonlyArray<string>; readonly trash?: boolean }): Promise<AssetMeta> {
    const out = await this.cli([
      "meta", "--data", data, hash, "--json",
      ...(edit.description !== undefined ? ["--description", edit.description] : []),
      ...(edit.tags ?? []).flatMap((t) => ["--tag", t]),
      ...(edit.trash === true ? ["--trash"] : edit.trash === false ? ["--untrash"] : [])
    ])
    const { hash: _hash, ...meta } = JSON.parse(out) as AssetMeta & { readonly hash: string }
    return meta
  }

  /** `can-sync verify`: exit code and output. */
  verify(data: string): Promise<RunResult> {
    return this.run(["verify", "--data", data], 120_000)
  }

  /**
   * `count` small distinct files under `dir` (sizes 100 B to ~4 KiB), named `small-<i>`;
   * content depends only on `seed` and `i`.
   */
  async smallFiles(dir: string, seed: string, count: number): Promise<ReadonlyArray<GeneratedFile>> {
    await mkdir(this.path(dir), { recursive: true })
    const out: Array<GeneratedFile> = []
    for (let i = 0; i < count; i++) {
      const path = this.path(dir, `small-${i}`)
      const size = 100 + ((i * 7919) % 4000)
      out.push({ path, size, hash: await writeContent(path, `${seed}/${i}`, size) })
    }
    return out
  }

  /** One large file of `size` bytes, deterministic in `seed`. */
  async largeFile(name: string, seed: string, size: number): Promise<GeneratedFile> {
    const path = this.path("files", name)
    await mkdir(this.path("files"), { recursive: true })
    return { path, size, hash: await writeContent(path, seed, size) }
  }

  /** Writes a peers file (one id per line) and returns its path. */
  async peersFile(name: string, peers: ReadonlyArray<Agent | string>): Promise<string> {
    const path = this.path(name)
    await writeFile(path, peers.map((p) => (typeof p === "string" ? p : p.peerId)).join("\n") + "\n")
    return path
  }

  /** Names in a data dir's `tmp/` (in-flight writes). */
  async tmpFiles(data: string): Promise<ReadonlyArray<string>> {
    try {
      return await readdir(join(data, "tmp"))
    } catch {
      return []
    }
  }

  /**
   * Waits until every store lists the same assets with the same metadata, and (when given)
   * exactly `expected` hashes. `inspect` sees every listing taken on the way. Returns the common
   * listing, sorted by hash.
   */
  async converged(
    datas: ReadonlyArray<string>,
    options: {
      readonly expected?: ReadonlySet<string>
      readonly timeout?: number
      readonly inspect?: (data: string, records: ReadonlyArray<AssetRecord>) => Promise<void>
    } = {}
  ): Promise<ReadonlyArray<Omit<AssetRecord, "seq">>> {
    let last = ""
    const what = `${datas.length} stores to converge${options.expected ? ` on ${options.expected.size} assets` : ""}`
    return this.wait(what, async () => {
      const raw = await Promise.all(datas.map((data) => this.ls(data)))
      if (options.inspect !== undefined) for (const [i, records] of raw.entries()) await options.inspect(datas[i]!, records)
      const listings = raw.map(canonical)
      last = `asset counts: ${listings.map((l) => l.length).join(" / ")}`
      const first = JSON.stringify(listings[0])
      if (!listings.every((l) => JSON.stringify(l) === first)) return undefined
      if (options.expected !== undefined) {
        const hashes = listings[0]!.map((r) => r.hash)
        if (hashes.length !== options.expected.size || !hashes.every((h) => options.expected!.has(h))) return undefined
      }
      return listings[0]
    }, options.timeout ?? 150_000, 500, 3_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${last}`)
    })
  }

  /** Kills every process still running (SIGTERM, then SIGKILL) and removes the temp dir. */
  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.procs.map((p) => p.stop("SIGTERM", 5_000)))
    // E2E_LOGS=DIR keeps every long-running process's stderr (e.g. as a CI artifact).
    const keep = process.env.E2E_LOGS
    if (keep !== undefined && keep !== "") {
      await mkdir(keep, { recursive: true })
      const prefix = basename(this.root)
      await Promise.all(this.procs.map((p, i) => writeFile(join(keep, `${prefix}.${i}.${p.name.replace(/[^\w.-]+/g, "_")}.log`), p.stderr)))
    }
    await rm(this.root, { recursive: true, force: true, maxRetries: 3 })
  }
}

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
