/**
 * The CLI contract of the store commands (`add`, `ls`, `cat`, `meta`, `verify`, `serve`), checked
 * as a user meets it: every call is its own `node packages/cli/src/main.ts` process on a temp data
 * directory, and stdout, stderr and exit codes are compared exactly with what the README promises,
 * against hashes computed here from the content.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, unlink, utimes, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { AssetRecord } from "../e2e/harness.ts"
import { freePort } from "../observability/Processes.ts"

const repoRoot = resolve(import.meta.dirname, "..", "..")
const cliMain = join(repoRoot, "packages", "cli", "src", "main.ts")

/** No one-shot command takes this long, even on a loaded two-core box. */
const COMMAND_TIMEOUT = 30_000
/** Deadline for `serve` to print its URL, and for it to exit after a signal. */
const SERVE_TIMEOUT = 20_000

const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex")

let scratch = ""
/** Every child still running; afterEach kills the leftovers of a failed test. */
const children = new Set<ChildProcess>()

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "can-sync-cli-"))
})

afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})

afterAll(async () => {
  if (scratch !== "") await rm(scratch, { recursive: true, force: true })
})

/** A fresh directory for one test, inside the suite's scratch dir. */
const testDir = (name: string) => mkdtemp(join(scratch, `${name}-`))

/**
 * The environment of every child: nothing configured from the developer's shell, and a default
 * data directory inside the scratch dir, so a missing `--data` never touches the real home.
 */
const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("CAN_SYNC_") || key.startsWith("OTEL_")) continue
    env[key] = value
  }
  return { ...env, NO_COLOR: "1", XDG_DATA_HOME: join(scratch, "default-xdg"), ...extra }
}

interface RunOptions {
  readonly env?: Record<string, string>
  readonly cwd?: string
}

interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** stdout as bytes (`cat` writes binary). */
  readonly bytes: Buffer
  readonly stdout: string
  readonly stderr: string
}

const spawnCli = (args: ReadonlyArray<string>, options: RunOptions): ChildProcess => {
  const child = spawn(process.execPath, [cliMain, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

/** `can-sync ARGS` to completion, whatever its exit code; killed and failed after COMMAND_TIMEOUT. */
const canSync = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Ran> =>
  new Promise((done, fail) => {
    const child = spawnCli(args, options)
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout!.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr!.on("data", (chunk: Buffer) => err.push(chunk))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      fail(new Error(`can-sync ${args.join(" ")} did not exit within ${COMMAND_TIMEOUT} ms`))
    }, COMMAND_TIMEOUT)
    child.once("error", (error) => {
      clearTimeout(timer)
      fail(error)
    })
    // "close", not "exit": both pipes are drained by then.
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      const bytes = Buffer.concat(out)
      done({ code, signal, bytes, stdout: bytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8") })
    })
  })

/** A command that must succeed: exit 0 and nothing on stderr. Returns its stdout. */
const ok = async (args: ReadonlyArray<string>, options?: RunOptions): Promise<string> => {
  const ran = await canSync(args, options)
  expect({ args, code: ran.code, stderr: ran.stderr }).toEqual({ args, code: 0, stderr: "" })
  return ran.stdout
}

const lsJson = async (data: string): Promise<ReadonlyArray<AssetRecord>> =>
  JSON.parse(await ok(["ls", "--data", data, "--json"])) as ReadonlyArray<AssetRecord>

/** Exit 1, nothing on stdout, and exactly one stderr line that starts with `prefix`. */
const expectErrorLine = (ran: Ran, prefix: string) => {
  expect({ code: ran.code, signal: ran.signal, stdout: ran.stdout }).toEqual({ code: 1, signal: null, stdout: "" })
  expect(ran.stderr).toMatch(/^can-sync: [^\n]+\n$/)
  expect(ran.stderr.startsWith(prefix), `stderr ${JSON.stringify(ran.stderr)} starts with ${JSON.stringify(prefix)}`).toBe(true)
}

/** Paths of every content file under `<data>/objects`, relative to it, sorted. */
const objectFiles = async (data: string): Promise<ReadonlyArray<string>> =>
  (await readdir(join(data, "objects"), { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(join(data, "objects").length + 1))
    .sort()

const objectPath = (data: string, hash: string) => join(data, "objects", hash.slice(0, 2), hash)

const iso = (millis: number) => new Date(millis).toISOString()

/** A running `can-sync serve`, with its output so far. */
class Served {
  readonly child: ChildProcess
  stdout = ""
  stderr = ""
  private readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>

  constructor(args: ReadonlyArray<string>, options: RunOptions = {}) {
    this.child = spawnCli(["serve", ...args], options)
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => (this.stdout += text))
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => (this.stderr += text))
    this.exited = new Promise((done) => this.child.once("close", (code, signal) => done({ code, signal })))
  }

  private get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** The first match of `pattern` on `stream`; fails if the process exits first or after SERVE_TIMEOUT. */
  async waitFor(stream: "stdout" | "stderr", pattern: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + SERVE_TIMEOUT
    for (;;) {
      const match = pattern.exec(this[stream])
      if (match !== null) return match
      if (!this.running || Date.now() > deadline) break
      await new Promise((wake) => setTimeout(wake, 25))
    }
    throw new Error(
      `serve did not print ${pattern} on ${stream} (exit ${this.child.exitCode}); stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)}`
    )
  }

  /** The base URL from its one line on stdout, `serving DIR at URL`. */
  async url(data: string): Promise<string> {
    const dir = data.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    const match = await this.waitFor("stdout", new RegExp(`^serving ${dir} at (http://127\\.0\\.0\\.1:\\d+)\\n`))
    return match[1]!
  }

  /** Sends `signal`; the exit, or SIGKILL and a failure after SERVE_TIMEOUT. */
  async stop(signal: NodeJS.Signals) {
    this.child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, fail) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL")
        fail(new Error(`serve did not exit within ${SERVE_TIMEOUT} ms of ${signal}`))
      }, SERVE_TIMEOUT)
    })
    try {
      return await Promise.race([this.exited, late])
    } finally {
      clearTimeout(timer)
    }
  }
}

const get = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, { headers, signal: AbortSignal.timeout(5_000) })

const status = async (url: string, headers: Record<string, string> = {}) => {
  const response = await get(url, headers)
  await response.arrayBuffer()
  return response.status
}

/** Nothing answers at `url` any more (the listener is closed). */
const refused = (url: string) => get(url).then(() => false, () => true)

describe("can-sync store commands", () => {
  it("add prints \"<sha256>  <file>\" per file, in argument order, and ls lists them in that order", async () => {
    const dir = await testDir("add")
    const data = join(dir, "store")
    await mkdir(join(dir, "sub"))
    const alpha = Buffer.from("alpha\n")
    const noise = randomBytes(10_000)
    await writeFile(join(dir, "a.txt"), alpha)
    await writeFile(join(dir, "b c.bin"), noise)
    await writeFile(join(dir, "sub", "empty"), "")
    const files = [
      { arg: "a.txt", bytes: alpha },
      { arg: join(dir, "b c.bin"), bytes: noise },
      { arg: "sub/empty", bytes: Buffer.alloc(0) }
    ]

    const before = Date.now()
    const out = await ok(["add", "--data", data, ...files.map((f) => f.arg)], { cwd: dir })
    const after = Date.now()
    expect(out).toBe(files.map((f) => `${sha256(f.bytes)}  ${f.arg}\n`).join(""))

    const [records, lines] = await Promise.all([lsJson(data), ok(["ls", "--data", data])])
    expect(records.map((r) => [r.hash, r.size])).toEqual(files.map((f) => [sha256(f.bytes), f.bytes.length]))
    const origin = records[0]!.meta.origin
    expect(origin).toMatch(/^[0-9a-f]{32}$/)
    for (const record of records) {
      expect(record.meta).toEqual({
        description: "",
        tags: [],
        trashed: false,
        createdAt: record.meta.createdAt,
        updatedAt: record.meta.createdAt,
        origin
      })
      expect(record.meta.createdAt).toBeGreaterThanOrEqual(before)
      expect(record.meta.createdAt).toBeLessThanOrEqual(after)
    }
    expect(records.map((r) => r.seq)).toEqual([...records.map((r) => r.seq)].sort((x, y) => x - y))
    expect(new Set(records.map((r) => r.seq)).size).toBe(3)
    expect(lines).toBe(records.map((r) => `${r.hash}  ${r.size}  ${iso(r.meta.createdAt)}\n`).join(""))

    for (const f of files) expect((await readFile(objectPath(data, sha256(f.bytes)))).equals(f.bytes)).toBe(true)
  })

  it("add --description and repeated --tag show in ls and ls --json", async () => {
    const dir = await testDir("describe")
    const data = join(dir, "store")
    const one = Buffer.from("first picture")
    const two = Buffer.from("second picture, a little longer")
    await writeFile(join(dir, "one.jpg"), one)
    await writeFile(join(dir, "two.jpg"), two)

    const out = await ok([
      "add", "--data", data, "one.jpg", "two.jpg",
      "--description", "holiday photos", "--tag", "beach", "--tag", "summer 2024"
    ], { cwd: dir })
    expect(out).toBe(`${sha256(one)}  one.jpg\n${sha256(two)}  two.jpg\n`)

    const [records, lines] = await Promise.all([lsJson(data), ok(["ls", "--data", data])])
    expect(records.map((r) => ({ hash: r.hash, size: r.size, description: r.meta.description, tags: r.meta.tags, trashed: r.meta.trashed })))
      .toEqual([one, two].map((bytes) => ({
        hash: sha256(bytes),
        size: bytes.length,
        description: "holiday photos",
        tags: ["beach", "summer 2024"],
        trashed: false
      })))
    expect(lines).toBe(records.map((r) => `${r.hash}  ${r.size}  ${iso(r.meta.createdAt)}  holiday photos #beach #summer 2024\n`).join(""))
  })

  it("adding content the store already holds, under any name, is not a new asset", async () => {
    const dir = await testDir("readd")
    const data = join(dir, "store")
    const bytes = randomBytes(4096)
    const hash = sha256(bytes)
    await writeFile(join(dir, "original"), bytes)
    await writeFile(join(dir, "copy"), bytes)

    expect(await ok(["add", "--data", data, "original"], { cwd: dir })).toBe(`${hash}  original\n`)
    const first = await lsJson(data)
    expect(await ok(["add", "--data", data, "copy", "original"], { cwd: dir })).toBe(`${hash}  copy\n${hash}  original\n`)

    expect(await lsJson(data)).toEqual(first)
    expect(first.map((r) => r.hash)).toEqual([hash])
    expect(await objectFiles(data)).toEqual([join(hash.slice(0, 2), hash)])
    expect(await readdir(join(data, "tmp"))).toEqual([])
  })

  it("cat writes exactly the asset's bytes to stdout", async () => {
    const dir = await testDir("cat")
    const data = join(dir, "store")
    const big = randomBytes(300 * 1024)
    await writeFile(join(dir, "big.bin"), big)
    await writeFile(join(dir, "empty"), "")
    await ok(["add", "--data", data, "big.bin", "empty"], { cwd: dir })

    const [catBig, catEmpty] = await Promise.all([
      canSync(["cat", "--data", data, sha256(big)]),
      canSync(["cat", "--data", data, sha256("")])
    ])
    for (const ran of [catBig, catEmpty]) expect({ code: ran.code, stderr: ran.stderr }).toEqual({ code: 0, stderr: "" })
    expect(catBig.bytes.length).toBe(big.length)
    expect(catBig.bytes.equals(big)).toBe(true)
    expect(catEmpty.bytes.length).toBe(0)
  })

  it("meta shows and edits description, tags and trash; ls and ls --json follow every edit", async () => {
    const dir = await testDir("meta")
    const data = join(dir, "store")
    const bytes = Buffer.from("a draft of the film")
    const hash = sha256(bytes)
    await writeFile(join(dir, "film.mp4"), bytes)
    await ok(["add", "--data", data, "film.mp4", "--description", "draft", "--tag", "a"], { cwd: dir })
    const [added] = await lsJson(data)

    // Without an edit, meta shows the metadata and changes nothing.
    const [shown, shownJson] = await Promise.all([
      ok(["meta", "--data", data, hash]),
      ok(["meta", "--data", data, hash, "--json"])
    ])
    expect(shown).toBe(`${hash}  draft #a\n`)
    expect(JSON.parse(shownJson)).toEqual({ hash, ...added!.meta })
    expect(await lsJson(data)).toEqual([added])

    // --tag replaces the tags; the new version keeps createdAt and moves updatedAt and seq on.
    expect(await ok(["meta", "--data", data, hash, "--description", "final cut", "--tag", "x", "--tag", "y"]))
      .toBe(`${hash}  final cut #x #y\n`)
    const [edited] = await lsJson(data)
    expect(edited!.meta).toEqual({ ...added!.meta, description: "final cut", tags: ["x", "y"], updatedAt: edited!.meta.updatedAt })
    expect(edited!.meta.updatedAt).toBeGreaterThan(added!.meta.updatedAt)
    expect(edited!.seq).toBeGreaterThan(added!.seq)

    const trashedJson = JSON.parse(await ok(["meta", "--data", data, hash, "--trash", "--json"]))
    const [trashed] = await lsJson(data)
    expect(trashed!.meta).toEqual({ ...edited!.meta, trashed: true, updatedAt: trashed!.meta.updatedAt })
    expect(trashed!.meta.updatedAt).toBeGreaterThan(edited!.meta.updatedAt)
    expect(trashedJson).toEqual({ hash, ...trashed!.meta })
    expect(await ok(["ls", "--data", data])).toBe(`${hash}  ${bytes.length}  ${iso(added!.meta.createdAt)}  [trashed]  final cut #x #y\n`)

    // Trashing what is in the trash is not a new version.
    expect(await ok(["meta", "--data", data, hash, "--trash"])).toBe(`${hash}  [trashed]  final cut #x #y\n`)
    expect(await lsJson(data)).toEqual([trashed])

    expect(await ok(["meta", "--data", data, hash, "--untrash"])).toBe(`${hash}  final cut #x #y\n`)
    const [restored] = await lsJson(data)
    expect(restored!.meta).toEqual({ ...edited!.meta, trashed: false, updatedAt: restored!.meta.updatedAt })
    expect(restored!.meta.updatedAt).toBeGreaterThan(trashed!.meta.updatedAt)
    expect(restored!.seq).toBeGreaterThan(trashed!.seq)

    // --clear-tags removes them all; with --tag it is refused
    expect(await ok(["meta", "--data", data, hash, "--clear-tags"])).toBe(`${hash}  final cut\n`)
    expect((await lsJson(data))[0]!.meta.tags).toEqual([])
    expectErrorLine(await canSync(["meta", "--data", data, hash, "--clear-tags", "--tag", "z"]), "can-sync: --clear-tags and --tag exclude each other\n")
  })

  it("verify passes a healthy store, removes old orphaned content files, and names every damaged asset with a non-zero exit", async () => {
    const dir = await testDir("verify")
    const data = join(dir, "store")
    const contents = ["healthy", "overwritten", "truncated", "removed"].map((name) => ({ name, bytes: randomBytes(2048) }))
    await Promise.all(contents.map((c) => writeFile(join(dir, c.name), c.bytes)))
    await ok(["add", "--data", data, ...contents.map((c) => c.name)], { cwd: dir })
    const [healthy, overwritten, truncated, removed] = contents.map((c) => sha256(c.bytes))

    // Content files no index entry names: one left by a killed add long ago, one of an add in progress.
    const orphan = Buffer.from("moved into place, then the process was killed")
    const young = Buffer.from("an add still in progress")
    for (const bytes of [orphan, young]) {
      await mkdir(join(data, "objects", sha256(bytes).slice(0, 2)), { recursive: true })
      await writeFile(objectPath(data, sha256(bytes)), bytes)
    }
    const longAgo = new Date(Date.now() - 20 * 60_000)
    await utimes(objectPath(data, sha256(orphan)), longAgo, longAgo)

    const sound = await canSync(["verify", "--data", data])
    expect({ code: sound.code, stdout: sound.stdout }).toEqual({
      code: 0,
      stdout: `4 assets checked, 0 damaged\n1 orphaned content file(s) removed (${orphan.length} bytes, left by interrupted adds)\n`
    })
    expect(sound.stderr).not.toContain("can-sync:")
    expect(await objectFiles(data)).toEqual([...contents.map((c) => c.bytes), young].map((b) => join(sha256(b).slice(0, 2), sha256(b))).sort())

    const replacement = randomBytes(2048)
    await writeFile(objectPath(data, overwritten!), replacement)
    await truncate(objectPath(data, truncated!), 1000)
    await unlink(objectPath(data, removed!))

    const ran = await canSync(["verify", "--data", data])
    expect({ code: ran.code, stderr: ran.stderr }).toEqual({ code: 1, stderr: "can-sync: 3 damaged asset(s)\n" })
    expect(ran.stdout).toBe([
      `DAMAGED  ${overwritten}  content is damaged: it hashes to ${sha256(replacement)}`,
      `DAMAGED  ${truncated}  content file has 1000 bytes, the index says 2048`,
      `DAMAGED  ${removed}  content file is missing`,
      "4 assets checked, 3 damaged",
      ""
    ].join("\n"))
    expect(ran.stdout).not.toContain(healthy)
  })

  it("verify of an empty store checks nothing and passes; ls prints nothing, ls --json []", async () => {
    const data = join(await testDir("empty"), "store")
    const [verified, lines, json] = await Promise.all([
      ok(["verify", "--data", data]),
      ok(["ls", "--data", data]),
      ok(["ls", "--data", data, "--json"])
    ])
    expect({ verified, lines, json }).toEqual({ verified: "0 assets checked, 0 damaged\n", lines: "", json: "[]\n" })
  })

  it("CAN_SYNC_DATA stands in for --data, --data wins over it, and the default is $XDG_DATA_HOME/can-sync", async () => {
    const dir = await testDir("config")
    const fromEnv = join(dir, "from-env")
    const fromFlag = join(dir, "from-flag")
    const xdg = join(dir, "xdg-data-home")
    const home = join(dir, "home-dir")
    const files = ["env", "flag", "xdg", "home"].map((name) => ({ name, bytes: Buffer.from(`stored via ${name}\n`) }))
    await Promise.all(files.map((f) => writeFile(join(dir, f.name), f.bytes)))
    const [viaEnv, viaFlag, viaXdg, viaHome] = files.map((f) => sha256(f.bytes))

    const outs = await Promise.all([
      ok(["add", "env"], { cwd: dir, env: { CAN_SYNC_DATA: fromEnv } }),
      ok(["add", "--data", fromFlag, "flag"], { cwd: dir, env: { CAN_SYNC_DATA: fromEnv } }),
      ok(["add", "xdg"], { cwd: dir, env: { XDG_DATA_HOME: xdg } }),
      ok(["add", "home"], { cwd: dir, env: { XDG_DATA_HOME: "", HOME: home } })
    ])
    expect(outs).toEqual([`${viaEnv}  env\n`, `${viaFlag}  flag\n`, `${viaXdg}  xdg\n`, `${viaHome}  home\n`])

    const listed = await Promise.all([
      ok(["ls", "--json"], { env: { CAN_SYNC_DATA: fromEnv } }),
      ok(["ls", "--data", fromFlag, "--json"]),
      ok(["ls", "--data", join(xdg, "can-sync"), "--json"]),
      ok(["ls", "--data", join(home, ".local", "share", "can-sync"), "--json"])
    ])
    expect(listed.map((json) => (JSON.parse(json) as ReadonlyArray<AssetRecord>).map((r) => r.hash)))
      .toEqual([[viaEnv], [viaFlag], [viaXdg], [viaHome]])
  })

  it("a failing command prints one can-sync: line on stderr, exits 1 and stores nothing", async () => {
    const dir = await testDir("errors")
    const data = join(dir, "store")
    const bytes = Buffer.from("the only asset")
    await writeFile(join(dir, "only"), bytes)
    await mkdir(join(dir, "a-directory"))
    await ok(["add", "--data", data, "only"], { cwd: dir })
    const [records, objects] = await Promise.all([lsJson(data), objectFiles(data)])
    const unknown = sha256("content this store never saw")
    const missing = join(dir, "no-such-file")
    const directory = join(dir, "a-directory")

    const [catUnknown, catMalformed, addMissing, addDirectory, metaUnknown, showUnknown, metaBoth] = await Promise.all([
      canSync(["cat", "--data", data, unknown]),
      canSync(["cat", "--data", data, "not-a-hash"]),
      canSync(["add", "--data", data, missing]),
      canSync(["add", "--data", data, directory, "--description", "never stored"]),
      canSync(["meta", "--data", data, unknown, "--description", "x", "--tag", "y"]),
      canSync(["meta", "--data", data, unknown]),
      canSync(["meta", "--data", data, sha256(bytes), "--trash", "--untrash"])
    ])
    expectErrorLine(catUnknown!, `can-sync: asset ${unknown} not found\n`)
    expectErrorLine(catMalformed!, "can-sync: not an asset hash (64 hex characters): not-a-hash\n")
    expectErrorLine(addMissing!, `can-sync: cannot read ${missing}: ENOENT`)
    expectErrorLine(addDirectory!, `can-sync: cannot read ${directory}: EISDIR`)
    expectErrorLine(metaUnknown!, `can-sync: asset ${unknown} not found\n`)
    expectErrorLine(showUnknown!, `can-sync: asset ${unknown} not found\n`)
    expectErrorLine(metaBoth!, "can-sync: --trash and --untrash exclude each other\n")

    expect(await lsJson(data)).toEqual(records)
    expect(await objectFiles(data)).toEqual(objects)
    expect(await readdir(join(data, "tmp"))).toEqual([])
  })

  it("add checks every file first: one missing file among good ones adds none of them", async () => {
    const dir = await testDir("add-all-or-none")
    const data = join(dir, "store")
    await writeFile(join(dir, "good-1"), "good one")
    await writeFile(join(dir, "good-2"), "good two")
    const ran = await canSync(["add", "--data", data, "good-1", "missing", "good-2"], { cwd: dir })
    expectErrorLine(ran, "can-sync: cannot read missing: ENOENT")
    expect(await lsJson(data)).toEqual([])
  })

  it("add reads a pipe (as from `<(cmd)`) as a stream", async () => {
    const dir = await testDir("add-pipe")
    const data = join(dir, "store")
    const fifo = join(dir, "pipe")
    const made = spawn("mkfifo", [fifo], { stdio: "ignore" })
    expect(await new Promise((done) => made.once("close", done))).toBe(0)
    const content = randomBytes(3 * 1024 * 1024 + 17)
    const adding = canSync(["add", "--data", data, fifo])
    await writeFile(fifo, content) // blocks until the CLI opens the pipe, ends when it is written
    const ran = await adding
    expect({ code: ran.code, stdout: ran.stdout, stderr: ran.stderr }).toEqual({ code: 0, stdout: `${sha256(content)}  ${fifo}\n`, stderr: "" })
    expect((await canSync(["cat", "--data", data, sha256(content)])).bytes.equals(content)).toBe(true)
  })

  it("a command line that does not parse is one can-sync: line naming the problem and the help to read", async () => {
    const dir = await testDir("parse")
    const data = join(dir, "store")
    const [noHash, noFile, badFlag, noSignal, unknownCommand] = await Promise.all([
      canSync(["cat", "--data", data]),
      canSync(["add", "--data", data]),
      canSync(["ls", "--data", data, "--bogus"]),
      canSync(["sync", "--data", data]),
      canSync(["nosuch"])
    ])
    expectErrorLine(noHash!, "can-sync: Missing required argument: hash (see `can-sync cat --help`)\n")
    expectErrorLine(noFile!, "can-sync: Missing required argument: file (see `can-sync add --help`)\n")
    expectErrorLine(badFlag!, "can-sync: Unrecognized flag: --bogus")
    expectErrorLine(noSignal!, "can-sync: Missing required flag: --signal (see `can-sync sync --help`)\n")
    expectErrorLine(unknownCommand!, "can-sync: Unknown subcommand \"nosuch\"")
    // asking for help is not an error: it goes to stdout
    const help = await canSync(["add", "--help"])
    expect({ code: help.code, stderr: help.stderr }).toEqual({ code: 0, stderr: "" })
    expect(help.stdout).toContain("--description")
  })

  it("serve --token: /healthz is open, every other route needs the bearer token, assets download byte for byte; SIGTERM stops it", async () => {
    const dir = await testDir("serve")
    const data = join(dir, "store")
    const token = "s3cret-token"
    const early = randomBytes(300 * 1024)
    const late = randomBytes(70 * 1024)
    await writeFile(join(dir, "early"), early)
    await writeFile(join(dir, "late"), late)
    await ok(["add", "--data", data, "early"], { cwd: dir })

    const served = new Served(["--data", data, "--host", "127.0.0.1", "--port", "0", "--token", token])
    const url = await served.url(data)
    const bearer = { authorization: `Bearer ${token}` }

    const health = await get(`${url}/healthz`)
    expect({ status: health.status, body: await health.json() }).toEqual({ status: 200, body: { ok: true } })
    expect(await Promise.all([
      status(`${url}/sync/info`),
      status(`${url}/sync/info`, { authorization: "Bearer not-the-token" }),
      status(`${url}/sync/info`, { authorization: token }),
      status(`${url}/assets/${sha256(early)}`),
      status(`${url}/assets/${sha256(early)}`, { authorization: `Bearer ${token}x` })
    ])).toEqual([401, 401, 401, 401, 401])
    const info = await get(`${url}/sync/info`, bearer)
    expect(info.status).toBe(200)
    expect(await info.json()).toEqual({ storeId: expect.stringMatching(/^[0-9a-f]{32}$/), seq: 1 })

    // An asset added by another process while serving is served too.
    await ok(["add", "--data", data, "late"], { cwd: dir })
    for (const bytes of [early, late]) {
      const response = await get(`${url}/assets/${sha256(bytes)}`, bearer)
      expect(response.status).toBe(200)
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true)
    }
    expect(await status(`${url}/assets/${sha256("never added")}`, bearer)).toBe(404)

    expect(await served.stop("SIGTERM")).toEqual({ code: 0, signal: null })
    expect({ stdout: served.stdout, stderr: served.stderr }).toEqual({ stdout: `serving ${data} at ${url}\n`, stderr: "" })
    expect(await refused(`${url}/healthz`)).toBe(true)
  })

  it("serve without --token prints a generated token on stderr, which then works; SIGINT stops it", async () => {
    const data = join(await testDir("serve-generated"), "store")
    const served = new Served(["--data", data, "--port", "0"])
    const url = await served.url(data)
    const token = (await served.waitFor("stderr", /^can-sync: no --token given; this run's token: (\S+)\n/))[1]!
    // 24 random bytes in base64url, and nothing else on stderr.
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(served.stderr).toBe(`can-sync: no --token given; this run's token: ${token}\n`)

    expect(await Promise.all([
      status(`${url}/sync/info`),
      status(`${url}/sync/info`, { authorization: `Bearer ${token}` })
    ])).toEqual([401, 200])

    expect(await served.stop("SIGINT")).toEqual({ code: 0, signal: null })
    expect(await refused(`${url}/healthz`)).toBe(true)
  })

  it("serve takes its token from CAN_SYNC_TOKEN and listens on the --port given", async () => {
    const data = join(await testDir("serve-env"), "store")
    const port = await Effect.runPromise(freePort)
    const served = new Served(["--data", data, "--port", String(port)], { env: { CAN_SYNC_TOKEN: "from-the-environment" } })
    const url = await served.url(data)
    expect(url).toBe(`http://127.0.0.1:${port}`)

    expect(await Promise.all([
      status(`${url}/sync/info`),
      status(`${url}/sync/info`, { authorization: "Bearer from-the-environment" })
    ])).toEqual([401, 200])

    expect(await served.stop("SIGTERM")).toEqual({ code: 0, signal: null })
    expect(served.stderr).toBe("")
  })
})
