/**
 * Loud, actionable failures, through the real `can-sync` process: an unreachable signaling server
 * is a WARN naming the URL and the reason at every retry, an agent with nobody allowed says how to
 * allow a peer, `--log-level` works for every command, NO_COLOR is honoured, and every failure is
 * one plain stderr line with exit 1 (runtime) or 2 (usage) — no raw JSON, no "internal error".
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { eventually, notYet } from "../../../test/kit/Eventually.ts"
import { tempDir } from "../../../test/kit/Files.ts"
import { freePort } from "../../../test/kit/Net.ts"
import { cleanEnv, cli, cliMain, type Ran, run, runCli } from "../../../test/kit/Process.ts"

/**
 * The exit code, nothing on stdout, and besides the log lines (JSON, as stderr is not a terminal)
 * exactly one stderr line, `can-sync: ...`, with none of the old failure shapes.
 */
const expectOneLine = (ran: Ran, code: number, ...parts: ReadonlyArray<string>) => {
  expect({ code: ran.code, stdout: ran.stdout }, ran.stderr).toEqual({ code, stdout: "" })
  const lines = ran.stderr.split("\n").filter((line) => line !== "" && !line.startsWith("{"))
  expect(lines, ran.stderr).toHaveLength(1)
  const line = `${lines[0]}\n`
  expect(line).toMatch(/^can-sync: /)
  expect(line).not.toMatch(/\{"_tag"|internal error/)
  for (const part of parts) expect(line).toContain(part)
}

describe("failures say what happened and what to do", () => {
  it.live("an unreachable signaling server is a WARN with its URL and reason, at the first failure and every retry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cli-signal-down")
      const port = yield* freePort // nothing listens there
      const url = `ws://127.0.0.1:${port}`
      const agent = yield* cli(["sync", "--data", join(dir, "a"), "--signal", url])
      const warnings = () =>
        agent.json("stderr").filter((l) => l.level === "WARN" && String(l.message).startsWith(`signaling: cannot register at ${url}`))
      yield* eventually("three signaling WARNs", Effect.sync(() => (warnings().length >= 3 ? true : notYet(agent.tail()))), "30 seconds")
      const [first, , third] = warnings().map((l) => String(l.message))
      expect(first).toMatch(/attempt 1, next in [\d.]+ s\): connection refused .*ECONNREFUSED.*: is `can-sync signal` running there\?/)
      expect(third).toContain("attempt 3")
      // nobody allowed: said once, with how to allow a peer
      const lonely = agent.json("stderr").filter((l) => l.level === "WARN" && String(l.message).startsWith("no allowed peers"))
      expect(lonely).toHaveLength(1)
      expect(String(lonely[0]?.message)).toContain("--peer")
    }).pipe(Effect.scoped))

  it.live("--log-level works for every command, before or after the subcommand", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cli-log-level")
      const created = /created a new identity/
      const plain = yield* runCli(["id", "--data", join(dir, "one")])
      expect(plain.stderr).toMatch(created)
      const quiet = yield* runCli(["id", "--log-level", "warn", "--data", join(dir, "two")])
      expect(quiet.code).toBe(0)
      expect(quiet.stderr).not.toMatch(created)
      const quietFirst = yield* runCli(["--log-level", "error", "id", "--data", join(dir, "three")])
      expect(quietFirst.code).toBe(0)
      expect(quietFirst.stderr).not.toMatch(created)

      // sync: debug lines only when asked for, and none of its INFO lines at error
      const signalPort = yield* freePort
      const base = ["sync", "--data", join(dir, "agent"), "--signal", `ws://127.0.0.1:${signalPort}`, "--admin-port", "0"]
      const debug = yield* cli([...base, "--log-level", "debug"])
      yield* debug.waitFor("stderr", /"level":"DEBUG"/, "30 seconds")
      const error = yield* cli([...base.map((a) => a.replace(join(dir, "agent"), join(dir, "agent2"))), "--log-level", "error"])
      yield* Effect.sleep("3 seconds")
      expect(error.running).toBe(true)
      expect(error.stderr).not.toMatch(/"level":"(INFO|WARN|DEBUG)"/)
    }).pipe(Effect.scoped))

  it.live("NO_COLOR turns the colors of the readable log format off", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cli-no-color")
      // `script` gives the command a terminal, where logs are readable lines in color
      const onTty = (data: string, env: Record<string, string>) =>
        run("script", ["-qec", `${process.execPath} ${cliMain} id --data ${data}`, "/dev/null"], {
          env: { ...cleanEnv(), NO_COLOR: "", ...env }
        })
      const colored = yield* onTty(join(dir, "a"), {})
      expect(colored.stdout).toMatch(/\x1b\[32mINFO/)
      const plain = yield* onTty(join(dir, "b"), { NO_COLOR: "1" })
      expect(plain.stdout).toMatch(/INFO +created a new identity/)
      expect(plain.stdout).not.toContain("\x1b[")
    }).pipe(Effect.scoped))

  it.live("usage errors exit 2, runtime failures 1, each as one plain line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cli-exit-codes")
      const data = join(dir, "a")
      expectOneLine(yield* runCli(["sync", "--data", data, "--signal", "127.0.0.1:7777"]), 2, "--signal", "ws:// or wss://")
      expectOneLine(yield* runCli(["signal", "--port", "99999"]), 2, "--port", "0 to 65535")
      expectOneLine(yield* runCli(["nosuch"]), 2, "Unknown subcommand")
      expectOneLine(yield* runCli(["sync", "--data", data, "--signal", "ws://127.0.0.1:1", "--peer", "nonsense"]), 2, "not a peer id: nonsense")
      expectOneLine(
        yield* runCli(["sync", "--data", data, "--signal", "ws://127.0.0.1:1", "--can-url", "http://127.0.0.1:1"]),
        2,
        "--can-url needs --token"
      )

      // a port someone else holds: the signaling server and the agent's admin port
      const signal = yield* cli(["signal", "--port", "0"])
      const [, taken] = yield* signal.waitFor("stdout", /signaling at ws:\/\/127\.0\.0\.1:(\d+)/, "30 seconds")
      expectOneLine(
        yield* runCli(["signal", "--port", taken!]),
        1,
        `cannot listen on 127.0.0.1:${taken}`,
        "choose another port"
      )
      expectOneLine(
        yield* runCli(["sync", "--data", data, "--signal", `ws://127.0.0.1:${taken}`, "--admin-port", taken!]),
        1,
        `can-sync: cannot listen on 127.0.0.1:${taken}: the port is already in use; stop the process holding it or choose another port\n`
      )

      // a second agent on a data directory an agent already uses
      const first = yield* cli(["sync", "--data", data, "--signal", `ws://127.0.0.1:${taken}`, "--admin-port", "0"])
      yield* first.waitFor("stderr", /admin endpoints at/, "30 seconds")
      expectOneLine(
        yield* runCli(["sync", "--data", data, "--signal", `ws://127.0.0.1:${taken}`]),
        1,
        `another can-sync process (pid ${first.pid}) is using this data directory; stop it first`
      )
    }).pipe(Effect.scoped))
})
