/**
 * The store commands against damage and misuse (issue 12), each a real `can-sync` process on a
 * temp data directory: metadata outside the bounds refused by `meta`, a row past 2^53 still
 * listed, a second `serve` on one data directory refused naming the first one's pid, `ls`/`cat`
 * on a read-only mount, and `cat` of damaged content failing loudly instead of printing it.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { scratchRoot, tempDir } from "../kit/Files.ts"
import { type Child, cleanEnv, cli, type Ran, repoRoot, run, runCli } from "../kit/Process.ts"

const COMMAND_TIMEOUT = "60 seconds"
const SERVE_TIMEOUT = "60 seconds"
const TEST_TIMEOUT = 300_000

const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex")

const defaultXdg = join(scratchRoot, `can-sync-hardening-xdg-${process.pid}`)
afterAll(() => rmSync(defaultXdg, { recursive: true, force: true }))
const env = () => cleanEnv({ XDG_DATA_HOME: defaultXdg })

const canSync = (args: ReadonlyArray<string>) => runCli(args, { cwd: repoRoot, env: env(), deadline: COMMAND_TIMEOUT })

const ok = (args: ReadonlyArray<string>) =>
  canSync(args).pipe(Effect.map((ran) => {
    expect({ args, code: ran.code, stderr: ran.stderr }).toEqual({ args, code: 0, stderr: "" })
    return ran.stdout
  }))

/** Exit `code` (1: a runtime failure, 2: a usage error), nothing on stdout, exactly one stderr line matching `pattern`. */
const expectErrorLine = (ran: Ran, pattern: RegExp, code = 1) => {
  expect({ code: ran.code, signal: ran.signal, stdout: ran.stdout }).toEqual({ code, signal: null, stdout: "" })
  expect(ran.stderr).toMatch(/^can-sync: [^\n]+\n$/)
  expect(ran.stderr).toMatch(pattern)
}

/** A data directory holding one asset with `content`; returns it and the asset's hash. */
const storeWith = (name: string, content: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(`cli-hardening-${name}`)
    const data = join(dir, "store")
    const file = join(dir, "content.txt")
    writeFileSync(file, content)
    const out = yield* ok(["add", "--data", data, "--description", "original", file])
    return { dir, data, hash: out.slice(0, 64) }
  })

const serve = (data: string) => cli(["serve", "--data", data, "--port", "0", "--token", "t"], { cwd: repoRoot, env: env() })

const served = (child: Child) =>
  child.waitFor("stdout", /^serving .* at (http:\/\/127\.0\.0\.1:\d+)\n/, SERVE_TIMEOUT, () => child.tail(25, "both"))

/** True when this machine can make a private read-only bind mount (`unshare -rm`, user namespaces). */
const canMountReadOnly = run("unshare", ["-rm", "true"], { deadline: "10 seconds" }).pipe(
  Effect.map((ran) => ran.code === 0),
  Effect.catch(() => Effect.succeed(false))
)

/** `can-sync ARGS` with `dir` bind-mounted read-only over itself, in a private mount namespace. */
const onReadOnlyMount = (dir: string, args: ReadonlyArray<string>) =>
  run("unshare", [
    "-rm",
    "sh",
    "-c",
    `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"`,
    "sh",
    dir,
    process.execPath,
    join(repoRoot, "packages", "cli", "src", "main.ts"),
    ...args
  ], { cwd: repoRoot, env: env(), deadline: COMMAND_TIMEOUT })

const readOnlyMounts = await Effect.runPromise(canMountReadOnly)
if (!readOnlyMounts) console.warn("read-only mount test skipped: `unshare -rm` (user namespaces) is not available here")

describe("can-sync store commands against damage and misuse", { timeout: TEST_TIMEOUT }, () => {
  it.live("meta and add refuse metadata outside the bounds as a usage error (exit 2, one plain line) and change nothing", () =>
    Effect.gen(function*() {
      const { dir, data, hash } = yield* storeWith("meta", "bounded")
      const before = yield* ok(["meta", "--data", data, hash, "--json"])
      expectErrorLine(
        yield* canSync(["meta", "--data", data, hash, "--description", "d".repeat(40_000)]),
        /^can-sync: invalid metadata \(description\): 40000 bytes, more than 32768\n$/,
        2
      )
      expectErrorLine(
        yield* canSync(["meta", "--data", data, hash, "--tag", "t".repeat(300)]),
        /^can-sync: invalid metadata \(tags\): a tag of 300 bytes, more than 256\n$/,
        2
      )
      // each part within its bound, the whole record over the total
      yield* ok(["meta", "--data", data, hash, "--description", "d".repeat(32_768)])
      const edited = yield* ok(["meta", "--data", data, hash, "--json"])
      expectErrorLine(
        yield* canSync(["meta", "--data", data, hash, ...Array.from({ length: 128 }, (_, i) => ["--tag", `${i}`.padEnd(256, "t")]).flat()]),
        /^can-sync: invalid metadata \(total\): \d+ bytes, more than 65536\n$/,
        2
      )
      expect(yield* ok(["meta", "--data", data, hash, "--json"])).toBe(edited)
      expect(edited).not.toBe(before)
      // add checks the metadata before it reads a file
      writeFileSync(join(dir, "other.txt"), "not added")
      expectErrorLine(
        yield* canSync(["add", "--data", data, "--tag", "t".repeat(300), join(dir, "other.txt")]),
        /^can-sync: invalid metadata \(tags\): a tag of 300 bytes, more than 256\n$/,
        2
      )
      expect((yield* ok(["ls", "--data", data])).split("\n").length).toBe(2)
    }))

  it.live("ls lists an asset whose index row holds integers past 2^53 (written by an older version)", () =>
    Effect.gen(function*() {
      const { data, hash } = yield* storeWith("bigint", "past 2^53")
      const db = new DatabaseSync(join(data, "index.sqlite"))
      db.prepare("UPDATE assets SET updated_at = ?, created_at = ? WHERE hash = ?").run(2n ** 60n, 2n ** 62n, hash)
      db.close()
      const listed = yield* ok(["ls", "--data", data])
      expect(listed).toBe(`${hash}  9  +275760-09-13T00:00:00.000Z  original\n`)
      expect(yield* ok(["verify", "--data", data])).toBe("1 assets checked, 0 damaged\n")
      // and the next edit is stored and read back
      yield* ok(["meta", "--data", data, hash, "--description", "edited"])
      expect(yield* ok(["ls", "--data", data])).toBe(`${hash}  9  +275760-09-13T00:00:00.000Z  edited\n`)
    }))

  it.live("a second serve on one data directory is refused naming the first one's pid; once it stops, serve starts again", () =>
    Effect.gen(function*() {
      const { data } = yield* storeWith("lock", "locked")
      const first = yield* serve(data)
      yield* served(first)
      const second = yield* canSync(["serve", "--data", data, "--port", "0", "--token", "t"])
      expectErrorLine(
        second,
        new RegExp(`^can-sync: store unavailable \\(lock data directory\\): .*another can-sync process \\(pid ${first.pid}\\) is using this data directory`)
      )
      // one-shot commands share the directory with the holder
      yield* ok(["ls", "--data", data])
      expect(yield* first.stop("SIGTERM", SERVE_TIMEOUT)).toEqual({ code: 0, signal: null })
      const third = yield* serve(data)
      yield* served(third)
    }))

  // Without user namespaces (and root ignores file modes) there is nothing to mount read-only with.
  it.live.skipIf(!readOnlyMounts)("ls, cat and meta work on a data directory mounted read-only", () =>
    Effect.gen(function*() {
      const { data, hash } = yield* storeWith("readonly", "read only")
      const ls = yield* onReadOnlyMount(data, ["ls", "--data", data])
      expect({ code: ls.code, stderr: ls.stderr }).toEqual({ code: 0, stderr: "" })
      expect(ls.stdout).toMatch(new RegExp(`^${hash}  9  \\S+  original\\n$`))
      const cat = yield* onReadOnlyMount(data, ["cat", "--data", data, hash])
      expect({ code: cat.code, stderr: cat.stderr, stdout: cat.stdout }).toEqual({ code: 0, stderr: "", stdout: "read only" })
      const meta = yield* onReadOnlyMount(data, ["meta", "--data", data, hash])
      expect({ code: meta.code, stdout: meta.stdout }).toEqual({ code: 0, stdout: `${hash}  original\n` })
      // an edit, an add or a verify says exactly why it cannot run
      const edit = yield* onReadOnlyMount(data, ["meta", "--data", data, hash, "--description", "new"])
      expectErrorLine(edit, /read-only/)
      for (const args of [["verify", "--data", data], ["add", "--data", data, join(repoRoot, "package.json")]]) {
        const refused = yield* onReadOnlyMount(data, args)
        expectErrorLine(refused, new RegExp(`^can-sync: store unavailable \\(open data directory\\): ${data} cannot be written \\(a read-only mount, or permissions\\)`))
      }
      expect(sha256("read only")).toBe(hash)
    }))
})
