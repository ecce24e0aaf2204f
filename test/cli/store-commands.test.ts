/**
 * The CLI contract of the store commands (`add`, `ls`, `cat`, `meta`, `verify`, `serve`), checked
 * as a user meets it: every call is its own `node packages/cli/src/main.ts` process on a temp data
 * directory, and stdout, stderr and exit codes are compared exactly with what the README promises,
 * against hashes computed here from the content.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, utimesSync, writeFileSync } from "node:fs"
import { execFileSync } from "node:child_process"
import { open, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { EmbeddedStore } from "@can-sync/store"
import { all, type AssetRecord } from "../e2e/Scenario.ts"
import { scratchRoot, tempDir } from "../kit/Files.ts"
import { freePort, httpStatus } from "../kit/Net.ts"
import { type Child, cleanEnv, cli, type CommandTimedOut, type Ran, repoRoot, run, runCli } from "../kit/Process.ts"
import { seeded } from "../kit/Seeded.ts"

/** No one-shot command takes this long, even on a loaded two-core box (30 s was seen exceeded with seven at once). */
const COMMAND_TIMEOUT = "60 seconds"
/** Deadline for `serve` to print its URL (a process start, as COMMAND_TIMEOUT), and for it to exit after a signal. */
const SERVE_TIMEOUT = "60 seconds"
/** Per test: above the sum of its commands' deadlines' likely share (some tests start ~15 commands). */
const TEST_TIMEOUT = 300_000

const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex")

/** The default data directory of every child, so a missing `--data` never touches the real home. */
const defaultXdg = join(scratchRoot, `can-sync-cli-xdg-${process.pid}`)
afterAll(() => rmSync(defaultXdg, { recursive: true, force: true }))

/** A fresh directory for one test, removed after it. */
const testDir = (name: string) => tempDir(`cli-${name}`)

interface RunOptions {
  readonly env?: Record<string, string>
  readonly cwd?: string
}

const childOptions = (options: RunOptions) => ({
  cwd: options.cwd ?? repoRoot,
  env: cleanEnv({ XDG_DATA_HOME: defaultXdg, ...options.env })
})

/** `can-sync ARGS` to completion, whatever its exit code; killed and failed after COMMAND_TIMEOUT. */
const canSync = (args: ReadonlyArray<string>, options: RunOptions = {}): Effect.Effect<Ran, CommandTimedOut> =>
  runCli(args, { ...childOptions(options), deadline: COMMAND_TIMEOUT })

/** A command that must succeed: exit 0 and nothing on stderr. Returns its stdout. */
const ok = (args: ReadonlyArray<string>, options?: RunOptions) =>
  canSync(args, options).pipe(Effect.map((ran) => {
    expect({ args, code: ran.code, stderr: ran.stderr }).toEqual({ args, code: 0, stderr: "" })
    return ran.stdout
  }))

const lsJson = (data: string) =>
  ok(["ls", "--data", data, "--json"]).pipe(Effect.map((out) => JSON.parse(out) as ReadonlyArray<AssetRecord>))

/** Exit `code` (1: a runtime failure, 2: a usage error), nothing on stdout, and exactly one stderr line that starts with `prefix`. */
const expectErrorLine = (ran: Ran, prefix: string, code = 1) => {
  expect({ code: ran.code, signal: ran.signal, stdout: ran.stdout }).toEqual({ code, signal: null, stdout: "" })
  expect(ran.stderr).toMatch(/^can-sync: [^\n]+\n$/)
  expect(ran.stderr.startsWith(prefix), `stderr ${JSON.stringify(ran.stderr)} starts with ${JSON.stringify(prefix)}`).toBe(true)
}

/** Paths of every content file under `<data>/objects`, relative to it, sorted. */
const objectFiles = (data: string): ReadonlyArray<string> =>
  readdirSync(join(data, "objects"), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(join(data, "objects").length + 1))
    .sort()

const objectPath = (data: string, hash: string) => join(data, "objects", hash.slice(0, 2), hash)

const iso = (millis: number) => new Date(millis).toISOString()

/** `can-sync serve ARGS`, stopped (if still running) with the test's scope. */
const serve = (args: ReadonlyArray<string>, options: RunOptions = {}) => cli(["serve", ...args], childOptions(options))

/** The first match of `pattern` on a stream of `served`; fails if it exits first or after SERVE_TIMEOUT. */
const printed = (served: Child, stream: "stdout" | "stderr", pattern: RegExp) =>
  served.waitFor(stream, pattern, SERVE_TIMEOUT, () => served.tail(25, "both"))

/** The base URL from its one line on stdout, `serving DIR at URL`. */
const urlOf = (served: Child, data: string) => {
  const dir = data.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  return printed(served, "stdout", new RegExp(`^serving ${dir} at (http://127\\.0\\.0\\.1:\\d+)\\n`)).pipe(Effect.map((match) => match[1]!))
}

/** GET `url`: its status and whole body. */
const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) })
    const bytes = Buffer.from(await response.arrayBuffer())
    return { status: response.status, bytes, json: (): unknown => JSON.parse(bytes.toString("utf8")) }
  })

const status = (url: string, headers: Record<string, string> = {}) => get(url, headers).pipe(Effect.map((response) => response.status))

/** Nothing answers at `url` any more (the listener is closed). */
const refused = (url: string) => httpStatus(url).pipe(Effect.map((code) => code === undefined))

describe("can-sync store commands", { timeout: TEST_TIMEOUT }, () => {
  it.live("add prints \"<sha256>  <file>\" per file, in argument order, and ls lists them in that order", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("add")
      const data = join(dir, "store")
      mkdirSync(join(dir, "sub"))
      const alpha = Buffer.from("alpha\n")
      const noise = random.bytes(10_000)
      writeFileSync(join(dir, "a.txt"), alpha)
      writeFileSync(join(dir, "b c.bin"), noise)
      writeFileSync(join(dir, "sub", "empty"), "")
      const files = [
        { arg: "a.txt", bytes: alpha },
        { arg: join(dir, "b c.bin"), bytes: noise },
        { arg: "sub/empty", bytes: Buffer.alloc(0) }
      ]

      const before = Date.now()
      const out = yield* ok(["add", "--data", data, ...files.map((f) => f.arg)], { cwd: dir })
      const after = Date.now()
      expect(out).toBe(files.map((f) => `${sha256(f.bytes)}  ${f.arg}\n`).join(""))

      const [records, lines] = yield* all([lsJson(data), ok(["ls", "--data", data])])
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

      for (const f of files) expect(readFileSync(objectPath(data, sha256(f.bytes))).equals(f.bytes)).toBe(true)
    }))

  it.live("add --description and repeated --tag show in ls and ls --json", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("describe")
      const data = join(dir, "store")
      const one = Buffer.from("first picture")
      const two = Buffer.from("second picture, a little longer")
      writeFileSync(join(dir, "one.jpg"), one)
      writeFileSync(join(dir, "two.jpg"), two)

      const out = yield* ok([
        "add", "--data", data, "one.jpg", "two.jpg",
        "--description", "holiday photos", "--tag", "beach", "--tag", "summer 2024"
      ], { cwd: dir })
      expect(out).toBe(`${sha256(one)}  one.jpg\n${sha256(two)}  two.jpg\n`)

      const [records, lines] = yield* all([lsJson(data), ok(["ls", "--data", data])])
      expect(records.map((r) => ({ hash: r.hash, size: r.size, description: r.meta.description, tags: r.meta.tags, trashed: r.meta.trashed })))
        .toEqual([one, two].map((bytes) => ({
          hash: sha256(bytes),
          size: bytes.length,
          description: "holiday photos",
          tags: ["beach", "summer 2024"],
          trashed: false
        })))
      expect(lines).toBe(records.map((r) => `${r.hash}  ${r.size}  ${iso(r.meta.createdAt)}  holiday photos #beach #summer 2024\n`).join(""))
    }))

  it.live("adding content the store already holds, under any name, is not a new asset", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("readd")
      const data = join(dir, "store")
      const bytes = random.bytes(4096)
      const hash = sha256(bytes)
      writeFileSync(join(dir, "original"), bytes)
      writeFileSync(join(dir, "copy"), bytes)

      expect(yield* ok(["add", "--data", data, "original"], { cwd: dir })).toBe(`${hash}  original\n`)
      const first = yield* lsJson(data)
      expect(yield* ok(["add", "--data", data, "copy", "original"], { cwd: dir })).toBe(`${hash}  copy\n${hash}  original\n`)

      expect(yield* lsJson(data)).toEqual(first)
      expect(first.map((r) => r.hash)).toEqual([hash])
      expect(objectFiles(data)).toEqual([join(hash.slice(0, 2), hash)])
      expect(readdirSync(join(data, "tmp"))).toEqual([])
    }))

  it.live("cat writes exactly the asset's bytes to stdout", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("cat")
      const data = join(dir, "store")
      const big = random.bytes(300 * 1024)
      writeFileSync(join(dir, "big.bin"), big)
      writeFileSync(join(dir, "empty"), "")
      yield* ok(["add", "--data", data, "big.bin", "empty"], { cwd: dir })

      const [catBig, catEmpty] = yield* all([
        canSync(["cat", "--data", data, sha256(big)]),
        canSync(["cat", "--data", data, sha256("")])
      ])
      for (const ran of [catBig, catEmpty]) expect({ code: ran.code, stderr: ran.stderr }).toEqual({ code: 0, stderr: "" })
      expect(catBig.bytes.length).toBe(big.length)
      expect(catBig.bytes.equals(big)).toBe(true)
      expect(catEmpty.bytes.length).toBe(0)
    }))

  it.live("meta shows and edits description, tags and trash; ls and ls --json follow every edit", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("meta")
      const data = join(dir, "store")
      const bytes = Buffer.from("a draft of the film")
      const hash = sha256(bytes)
      writeFileSync(join(dir, "film.mp4"), bytes)
      yield* ok(["add", "--data", data, "film.mp4", "--description", "draft", "--tag", "a"], { cwd: dir })
      const [added] = yield* lsJson(data)

      // Without an edit, meta shows the metadata and changes nothing.
      const [shown, shownJson] = yield* all([
        ok(["meta", "--data", data, hash]),
        ok(["meta", "--data", data, hash, "--json"])
      ])
      expect(shown).toBe(`${hash}  draft #a\n`)
      expect(JSON.parse(shownJson)).toEqual({ hash, ...added!.meta })
      expect(yield* lsJson(data)).toEqual([added])

      // --tag replaces the tags; the new version keeps createdAt and moves updatedAt and seq on.
      expect(yield* ok(["meta", "--data", data, hash, "--description", "final cut", "--tag", "x", "--tag", "y"]))
        .toBe(`${hash}  final cut #x #y\n`)
      const [edited] = yield* lsJson(data)
      expect(edited!.meta).toEqual({ ...added!.meta, description: "final cut", tags: ["x", "y"], updatedAt: edited!.meta.updatedAt })
      expect(edited!.meta.updatedAt).toBeGreaterThan(added!.meta.updatedAt)
      expect(edited!.seq).toBeGreaterThan(added!.seq)

      const trashedJson = JSON.parse(yield* ok(["meta", "--data", data, hash, "--trash", "--json"]))
      const [trashed] = yield* lsJson(data)
      expect(trashed!.meta).toEqual({ ...edited!.meta, trashed: true, updatedAt: trashed!.meta.updatedAt })
      expect(trashed!.meta.updatedAt).toBeGreaterThan(edited!.meta.updatedAt)
      expect(trashedJson).toEqual({ hash, ...trashed!.meta })
      expect(yield* ok(["ls", "--data", data])).toBe(`${hash}  ${bytes.length}  ${iso(added!.meta.createdAt)}  [trashed]  final cut #x #y\n`)

      // Trashing what is in the trash is not a new version.
      expect(yield* ok(["meta", "--data", data, hash, "--trash"])).toBe(`${hash}  [trashed]  final cut #x #y\n`)
      expect(yield* lsJson(data)).toEqual([trashed])

      expect(yield* ok(["meta", "--data", data, hash, "--untrash"])).toBe(`${hash}  final cut #x #y\n`)
      const [restored] = yield* lsJson(data)
      expect(restored!.meta).toEqual({ ...edited!.meta, trashed: false, updatedAt: restored!.meta.updatedAt })
      expect(restored!.meta.updatedAt).toBeGreaterThan(trashed!.meta.updatedAt)
      expect(restored!.seq).toBeGreaterThan(trashed!.seq)

      // --clear-tags removes them all; with --tag it is refused
      expect(yield* ok(["meta", "--data", data, hash, "--clear-tags"])).toBe(`${hash}  final cut\n`)
      expect((yield* lsJson(data))[0]!.meta.tags).toEqual([])
      expectErrorLine(yield* canSync(["meta", "--data", data, hash, "--clear-tags", "--tag", "z"]), "can-sync: --clear-tags and --tag exclude each other\n")
    }))

  it.live("verify passes a healthy store, sets old unindexed content aside in quarantine/, and names every damaged asset with a non-zero exit", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("verify")
      const data = join(dir, "store")
      const contents = ["healthy", "overwritten", "truncated", "removed"].map((name) => ({ name, bytes: random.bytes(2048) }))
      for (const c of contents) writeFileSync(join(dir, c.name), c.bytes)
      yield* ok(["add", "--data", data, ...contents.map((c) => c.name)], { cwd: dir })
      const [healthy, overwritten, truncated, removed] = contents.map((c) => sha256(c.bytes))

      // Content files no index entry names: one left by a killed add long ago, one of an add in progress.
      const orphan = Buffer.from("moved into place, then the process was killed")
      const young = Buffer.from("an add still in progress")
      for (const bytes of [orphan, young]) {
        mkdirSync(join(data, "objects", sha256(bytes).slice(0, 2)), { recursive: true })
        writeFileSync(objectPath(data, sha256(bytes)), bytes)
      }
      const longAgo = new Date(Date.now() - 20 * 60_000)
      utimesSync(objectPath(data, sha256(orphan)), longAgo, longAgo)

      const sound = yield* canSync(["verify", "--data", data])
      expect({ code: sound.code, stdout: sound.stdout }).toEqual({
        code: 0,
        stdout: `4 assets checked, 0 damaged\n` +
          `1 unindexed content file(s) moved to quarantine/ (${orphan.length} bytes; \`verify --rebuild-index\` indexes them)\n`
      })
      expect(sound.stderr).not.toContain("can-sync:")
      expect(objectFiles(data)).toEqual([...contents.map((c) => c.bytes), young].map((b) => join(sha256(b).slice(0, 2), sha256(b))).sort())
      expect(readFileSync(join(data, "quarantine", sha256(orphan)))).toEqual(orphan)

      const replacement = random.bytes(2048)
      writeFileSync(objectPath(data, overwritten!), replacement)
      truncateSync(objectPath(data, truncated!), 1000)
      unlinkSync(objectPath(data, removed!))

      const ran = yield* canSync(["verify", "--data", data])
      expect({ code: ran.code, stderr: ran.stderr }).toEqual({ code: 1, stderr: "can-sync: 3 damaged asset(s)\n" })
      expect(ran.stdout).toBe([
        `DAMAGED  ${overwritten}  content is damaged: it hashes to ${sha256(replacement)}`,
        `DAMAGED  ${truncated}  content file has 1000 bytes, the index says 2048`,
        `DAMAGED  ${removed}  content file is missing`,
        "4 assets checked, 3 damaged",
        "damaged content is set aside (quarantine/) and no longer offered; a sync with a peer that holds it fetches a good copy",
        ""
      ].join("\n"))
      expect(ran.stdout).not.toContain(healthy)
    }))

  it.live("a description or tag holding newlines and escape sequences cannot forge ls lines or reach the terminal raw", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("injection")
      const data = join(dir, "store")
      writeFileSync(join(dir, "file"), "injected")
      const forged = "ok\n" + "0".repeat(64) + "  1  2026-01-01T00:00:00.000Z  forged\x1b[2J\x1b]0;title\x07\u009b31m\u202eevil"
      yield* ok(["add", "--data", data, "file", "--description", forged, "--tag", "t\rx"], { cwd: dir })
      const listed = yield* ok(["ls", "--data", data])
      expect(listed.split("\n")).toHaveLength(2) // one line and the final newline
      expect(listed).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/)
      expect(listed).toContain("ok\\n0000")
      expect(listed).toContain("forged\\x1b[2J\\x1b]0;title\\x07\\x9b31m\\u202eevil #t\\rx")
      // --json keeps the exact text
      expect((yield* lsJson(data))[0]!.meta.description).toBe(forged)
    }))

  it.live("an add cut short by SIGINT or SIGTERM exits 130 or 143 and says which files were not added; what was added stays", () =>
    Effect.gen(function*() {
      for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
        const dir = yield* testDir(`interrupted-${signal}`)
        const data = join(dir, "store")
        writeFileSync(join(dir, "first"), `added before the ${signal}`)
        execFileSync("mkfifo", [join(dir, "slow")]) // a pipe that delivers a little, then nothing more
        const child = yield* cli(["add", "--data", data, "first", "slow", "never"], { cwd: dir, env: cleanEnv() })
        writeFileSync(join(dir, "never"), "not reached")
        const writer = yield* Effect.promise(() => open(join(dir, "slow"), "w")) // returns once add reads the pipe
        yield* Effect.promise(() => writer.write("a first piece of a long stream"))
        yield* child.waitFor("stdout", /  first\n/, "60 seconds")
        // The signal reaches the writer too (a terminal's Ctrl-C goes to the whole pipeline): the pipe closes.
        yield* child.kill(signal)
        yield* Effect.promise(() => writer.close())
        const exit = yield* child.exited.pipe(
          Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.die(new Error(`add did not exit after ${signal}: ${child.stderr}`)) })
        )
        expect({ signal, exit }).toEqual({ signal, exit: { code, signal: null } })
        expect(child.stderr).toContain("can-sync: added 1 of 3 file(s); not added: slow, never\n")
        expect(child.stderr).toContain(`can-sync: interrupted by ${signal}: \`add\` did not finish\n`)
        expect((yield* lsJson(data)).map((a) => a.size)).toEqual([`added before the ${signal}`.length])
      }
    }))

  it.live("a store whose index was lost: every command says how to rebuild it, and verify --rebuild-index brings every asset back", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("lost-index")
      const data = join(dir, "store")
      const random = seeded("lost-index")
      const contents = ["a", "b"].map((name) => ({ name, bytes: random.bytes(4096) }))
      for (const c of contents) writeFileSync(join(dir, c.name), c.bytes)
      yield* ok(["add", "--data", data, ...contents.map((c) => c.name)], { cwd: dir })
      for (const name of readdirSync(data)) if (name.startsWith("index.sqlite")) rmSync(join(data, name))

      const ls = yield* canSync(["ls", "--data", data])
      expect(ls.code).toBe(1)
      expect(ls.stdout).toBe("")
      expect(ls.stderr).toContain(`can-sync verify --rebuild-index --data ${data}`)
      const verify = yield* canSync(["verify", "--data", data])
      expect(verify.code).toBe(1)
      expect(objectFiles(data)).toHaveLength(2) // nothing was taken for an orphan

      const rebuilt = yield* canSync(["verify", "--rebuild-index", "--data", data])
      expect({ code: rebuilt.code, stdout: rebuilt.stdout }).toEqual({
        code: 0,
        stdout: `2 content file(s) indexed again (8192 bytes)\n2 assets checked, 0 damaged\n`
      })
      expect((yield* lsJson(data)).map((a) => a.hash).sort()).toEqual(contents.map((c) => sha256(c.bytes)).sort())
    }))

  it.live("verify of an empty store checks nothing and passes; ls prints nothing, ls --json []", () =>
    Effect.gen(function*() {
      const data = join(yield* testDir("empty"), "store")
      yield* Effect.scoped(EmbeddedStore.make({ dataDir: data })) // an empty store: its index and objects/
      const [verified, lines, json] = yield* all([
        ok(["verify", "--data", data]),
        ok(["ls", "--data", data]),
        ok(["ls", "--data", data, "--json"])
      ])
      expect({ verified, lines, json }).toEqual({ verified: "0 assets checked, 0 damaged\n", lines: "", json: "[]\n" })
    }))

  it.live("read-only commands on a data directory holding no store (a typo) say so, exit 2, and create nothing", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("typo")
      const typo = join(dir, "stroe")
      const hash = "0".repeat(64)
      const ran = yield* all([
        canSync(["ls", "--data", typo]),
        canSync(["cat", "--data", typo, hash]),
        canSync(["meta", "--data", typo, hash]),
        canSync(["verify", "--data", typo])
      ])
      for (const r of ran) expectErrorLine(r, `can-sync: Invalid value for flag --data: "${typo}"`, 2)
      expect(ran[0]!.stderr).toContain("check --data or CAN_SYNC_DATA")
      expect(readdirSync(dir)).toEqual([])
    }))

  it.live("CAN_SYNC_DATA stands in for --data, --data wins over it, and the default is $XDG_DATA_HOME/can-sync", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("config")
      const fromEnv = join(dir, "from-env")
      const fromFlag = join(dir, "from-flag")
      const xdg = join(dir, "xdg-data-home")
      const home = join(dir, "home-dir")
      const files = ["env", "flag", "xdg", "home"].map((name) => ({ name, bytes: Buffer.from(`stored via ${name}\n`) }))
      for (const f of files) writeFileSync(join(dir, f.name), f.bytes)
      const [viaEnv, viaFlag, viaXdg, viaHome] = files.map((f) => sha256(f.bytes))

      const outs = yield* all([
        ok(["add", "env"], { cwd: dir, env: { CAN_SYNC_DATA: fromEnv } }),
        ok(["add", "--data", fromFlag, "flag"], { cwd: dir, env: { CAN_SYNC_DATA: fromEnv } }),
        ok(["add", "xdg"], { cwd: dir, env: { XDG_DATA_HOME: xdg } }),
        ok(["add", "home"], { cwd: dir, env: { XDG_DATA_HOME: "", HOME: home } })
      ])
      expect(outs).toEqual([`${viaEnv}  env\n`, `${viaFlag}  flag\n`, `${viaXdg}  xdg\n`, `${viaHome}  home\n`])

      const listed = yield* all([
        ok(["ls", "--json"], { env: { CAN_SYNC_DATA: fromEnv } }),
        ok(["ls", "--data", fromFlag, "--json"]),
        ok(["ls", "--data", join(xdg, "can-sync"), "--json"]),
        ok(["ls", "--data", join(home, ".local", "share", "can-sync"), "--json"])
      ])
      expect(listed.map((json) => (JSON.parse(json) as ReadonlyArray<AssetRecord>).map((r) => r.hash)))
        .toEqual([[viaEnv], [viaFlag], [viaXdg], [viaHome]])
    }))

  it.live("a failing command prints one can-sync: line on stderr, exits 1 and stores nothing", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("errors")
      const data = join(dir, "store")
      const bytes = Buffer.from("the only asset")
      writeFileSync(join(dir, "only"), bytes)
      mkdirSync(join(dir, "a-directory"))
      yield* ok(["add", "--data", data, "only"], { cwd: dir })
      const [records, objects] = [yield* lsJson(data), objectFiles(data)]
      const unknown = sha256("content this store never saw")
      const missing = join(dir, "no-such-file")
      const directory = join(dir, "a-directory")

      const [catUnknown, catMalformed, addMissing, addDirectory, metaUnknown, showUnknown, metaBoth] = yield* all([
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

      expect(yield* lsJson(data)).toEqual(records)
      expect(objectFiles(data)).toEqual(objects)
      expect(readdirSync(join(data, "tmp"))).toEqual([])
    }))

  it.live("add checks every file first: one missing file among good ones adds none of them", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("add-all-or-none")
      const data = join(dir, "store")
      yield* Effect.scoped(EmbeddedStore.make({ dataDir: data }))
      writeFileSync(join(dir, "good-1"), "good one")
      writeFileSync(join(dir, "good-2"), "good two")
      const ran = yield* canSync(["add", "--data", data, "good-1", "missing", "good-2"], { cwd: dir })
      expectErrorLine(ran, "can-sync: cannot read missing: ENOENT")
      expect(yield* lsJson(data)).toEqual([])
    }))

  it.live("add reads a pipe (as from `<(cmd)`) as a stream", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("add-pipe")
      const data = join(dir, "store")
      const fifo = join(dir, "pipe")
      expect((yield* run("mkfifo", [fifo])).code).toBe(0)
      const content = random.bytes(3 * 1024 * 1024 + 17)
      const adding = yield* Effect.forkChild(canSync(["add", "--data", data, fifo]))
      yield* Effect.promise(() => writeFile(fifo, content)) // blocks until the CLI opens the pipe, ends when it is written
      const ran = yield* Fiber.join(adding)
      expect({ code: ran.code, stdout: ran.stdout, stderr: ran.stderr }).toEqual({ code: 0, stdout: `${sha256(content)}  ${fifo}\n`, stderr: "" })
      expect((yield* canSync(["cat", "--data", data, sha256(content)])).bytes.equals(content)).toBe(true)
    }))

  it.live("a command line that does not parse is one can-sync: line naming the problem and the help to read, exit 2", () =>
    Effect.gen(function*() {
      const dir = yield* testDir("parse")
      const data = join(dir, "store")
      yield* Effect.scoped(EmbeddedStore.make({ dataDir: data }))
      const [noHash, noFile, badFlag, noSignal, unknownCommand] = yield* all([
        canSync(["cat", "--data", data]),
        canSync(["add", "--data", data]),
        canSync(["ls", "--data", data, "--bogus"]),
        canSync(["sync", "--data", data]),
        canSync(["nosuch"])
      ])
      // a usage error: exit 2
      expectErrorLine(noHash!, "can-sync: Missing required argument: hash (see `can-sync cat --help`)\n", 2)
      expectErrorLine(noFile!, "can-sync: Missing required argument: file (see `can-sync add --help`)\n", 2)
      expectErrorLine(badFlag!, "can-sync: Unrecognized flag: --bogus", 2)
      expectErrorLine(noSignal!, "can-sync: Missing required flag: --signal (see `can-sync sync --help`)\n", 2)
      expectErrorLine(unknownCommand!, "can-sync: Unknown subcommand \"nosuch\"", 2)
      // asking for help is not an error: it goes to stdout
      const help = yield* canSync(["add", "--help"])
      expect({ code: help.code, stderr: help.stderr }).toEqual({ code: 0, stderr: "" })
      expect(help.stdout).toContain("--description")
    }))

  it.live("serve --token: /healthz is open, every other route needs the bearer token, assets download byte for byte; SIGTERM stops it", () =>
    Effect.gen(function*() {
      const random = seeded("content")
      const dir = yield* testDir("serve")
      const data = join(dir, "store")
      const token = "s3cret-token"
      const early = random.bytes(300 * 1024)
      const late = random.bytes(70 * 1024)
      writeFileSync(join(dir, "early"), early)
      writeFileSync(join(dir, "late"), late)
      yield* ok(["add", "--data", data, "early"], { cwd: dir })

      const served = yield* serve(["--data", data, "--host", "127.0.0.1", "--port", "0", "--token", token])
      const url = yield* urlOf(served, data)
      const bearer = { authorization: `Bearer ${token}` }

      const health = yield* get(`${url}/healthz`)
      expect({ status: health.status, body: health.json() }).toEqual({ status: 200, body: { ok: true } })
      expect(yield* all([
        status(`${url}/sync/info`),
        status(`${url}/sync/info`, { authorization: "Bearer not-the-token" }),
        status(`${url}/sync/info`, { authorization: token }),
        status(`${url}/assets/${sha256(early)}`),
        status(`${url}/assets/${sha256(early)}`, { authorization: `Bearer ${token}x` })
      ])).toEqual([401, 401, 401, 401, 401])
      const info = yield* get(`${url}/sync/info`, bearer)
      expect(info.status).toBe(200)
      expect(info.json()).toEqual({ storeId: expect.stringMatching(/^[0-9a-f]{32}$/), seq: 1 })

      // An asset added by another process while serving is served too.
      yield* ok(["add", "--data", data, "late"], { cwd: dir })
      for (const bytes of [early, late]) {
        const response = yield* get(`${url}/assets/${sha256(bytes)}`, bearer)
        expect(response.status).toBe(200)
        expect(response.bytes.equals(bytes)).toBe(true)
      }
      expect(yield* status(`${url}/assets/${sha256("never added")}`, bearer)).toBe(404)

      expect(yield* served.stop("SIGTERM", SERVE_TIMEOUT)).toEqual({ code: 0, signal: null })
      expect({ stdout: served.stdout, stderr: served.stderr }).toEqual({ stdout: `serving ${data} at ${url}\n`, stderr: "" })
      expect(yield* refused(`${url}/healthz`)).toBe(true)
    }))

  it.live("serve without --token prints a generated token on stderr, which then works; SIGINT stops it", () =>
    Effect.gen(function*() {
      const data = join(yield* testDir("serve-generated"), "store")
      const served = yield* serve(["--data", data, "--port", "0"])
      const url = yield* urlOf(served, data)
      const token = (yield* printed(served, "stderr", /^can-sync: no --token given; this run's token: (\S+)\n/))[1]!
      // 24 random bytes in base64url, and nothing else on stderr.
      expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/)
      expect(served.stderr).toBe(`can-sync: no --token given; this run's token: ${token}\n`)

      expect(yield* all([
        status(`${url}/sync/info`),
        status(`${url}/sync/info`, { authorization: `Bearer ${token}` })
      ])).toEqual([401, 200])

      expect(yield* served.stop("SIGINT", SERVE_TIMEOUT)).toEqual({ code: 0, signal: null })
      expect(yield* refused(`${url}/healthz`)).toBe(true)
    }))

  it.live("serve takes its token from CAN_SYNC_TOKEN and listens on the --port given", () =>
    Effect.gen(function*() {
      const data = join(yield* testDir("serve-env"), "store")
      const port = yield* freePort
      const served = yield* serve(["--data", data, "--port", String(port)], { env: { CAN_SYNC_TOKEN: "from-the-environment" } })
      const url = yield* urlOf(served, data)
      expect(url).toBe(`http://127.0.0.1:${port}`)

      expect(yield* all([
        status(`${url}/sync/info`),
        status(`${url}/sync/info`, { authorization: "Bearer from-the-environment" })
      ])).toEqual([401, 200])

      expect(yield* served.stop("SIGTERM", SERVE_TIMEOUT)).toEqual({ code: 0, signal: null })
      expect(served.stderr).toBe("")
    }))
})
