/**
 * The agent's watchdog, on a real `can-sync sync`: its main thread is stopped from outside (the
 * inspector, opened by --inspect, evaluates an endless loop there) and the process ends by
 * itself with one FATAL line, as a supervisor needs it to, also as PID 1 of a PID namespace (a
 * container without --init); `--watchdog off` leaves it running,
 * and so does stopping the whole process for a while (SIGSTOP, as a machine asleep).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { cleanEnv, cliMain, runCli, spawn } from "../kit/Process.ts"

const TEST_TIMEOUT = 60_000
/** A PID namespace of our own needs root (CI runs as root). */
const canUnsharePid = process.getuid?.() === 0 && existsSync("/usr/bin/unshare")
if (!canUnsharePid) console.warn("watchdog as PID 1 test skipped: it needs root and unshare")

/** A data directory for the length of the scope. */
const dataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "can-sync-watchdog-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/**
 * An agent (no peers, a signaling URL nobody answers: it keeps retrying) with the inspector open,
 * and a connection to that inspector, through which a test runs code on the agent's main thread.
 */
const inspectedAgent = (watchdog: string, options: { readonly asPid1?: boolean } = {}) =>
  Effect.gen(function*() {
    const data = yield* dataDir
    const argv = [process.execPath, "--inspect=127.0.0.1:0", cliMain, "sync", "--data", data, "--signal", "ws://127.0.0.1:9", "--watchdog", watchdog, "--json"]
    // as a container runs it without --init: PID 1 of a PID namespace of its own
    const [command, ...args] = options.asPid1 === true ? ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", ...argv] : argv
    const agent = yield* spawn(command!, args, { name: "agent", env: cleanEnv(), stop: "SIGKILL" })
    const [, url] = yield* agent.waitFor("stderr", /Debugger listening on (ws:\/\/\S+)/, "30 seconds")
    yield* agent.waitFor("stderr", /"agent [a-z2-7]{32} syncing /, "30 seconds")
    const inspector = yield* Effect.acquireRelease(
      Effect.callback<WebSocket, Error>((resume) => {
        const ws = new WebSocket(url!)
        ws.onopen = () => resume(Effect.succeed(ws))
        ws.onerror = () => resume(Effect.fail(new Error(`could not reach the agent's inspector at ${url}`)))
      }),
      (ws) => Effect.sync(() => ws.close())
    )
    /** Evaluate `expression` on the agent's main thread (its answer is not awaited). */
    const evaluate = (expression: string) => inspector.send(JSON.stringify({ id: 1, method: "Runtime.evaluate", params: { expression } }))
    return { agent, evaluate }
  })

/** An agent whose main thread is stuck for good in an endless loop. */
const stuckAgent = (watchdog: string, options: { readonly asPid1?: boolean } = {}) =>
  Effect.gen(function*() {
    const { agent, evaluate } = yield* inspectedAgent(watchdog, options)
    evaluate("for (;;) {}")
    return agent
  })

describe("the agent's watchdog", () => {
  it.live("a main thread that stops running ends the process with one FATAL line, within the limit and a beat", () =>
    Effect.gen(function*() {
      const agent = yield* stuckAgent("2s")
      const exit = yield* agent.exited.pipe(Effect.timeout("20 seconds"))
      expect(exit.signal, agent.stderr.slice(-2000)).toBe("SIGKILL")
      const fatal = agent.stderr.split("\n").filter((line) => line.includes('"level":"FATAL"')).map((line) => JSON.parse(line) as { message: string })
      expect(fatal).toHaveLength(1)
      expect(fatal[0]!.message).toMatch(/^watchdog: the main thread has not run for \d+ s \(a hang in native code, such as the WebRTC library\); ending the process so that its supervisor restarts it$/)
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live.skipIf(!canUnsharePid)("as PID 1 of a container, which no signal of its own can end, it exits with status 137", () =>
    Effect.gen(function*() {
      const agent = yield* stuckAgent("2s", { asPid1: true })
      const exit = yield* agent.exited.pipe(Effect.timeout("20 seconds"))
      expect(exit.code, agent.stderr.slice(-2000)).toBe(137)
      expect(agent.stderr.split("\n").filter((line) => line.includes('"level":"FATAL"'))).toHaveLength(1)
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live("--watchdog off leaves a stuck agent running", () =>
    Effect.gen(function*() {
      const agent = yield* stuckAgent("off")
      yield* Effect.sleep("5 seconds") // more than twice the limit the first test ends within
      expect(agent.running, agent.stderr.slice(-2000)).toBe(true)
      expect(agent.stderr).not.toContain("watchdog:")
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live("time the whole process was stopped (a machine asleep) does not count", () =>
    Effect.gen(function*() {
      const { agent, evaluate } = yield* inspectedAgent("3s")
      process.kill(agent.pid, "SIGSTOP")
      // waiting while the process is stopped: on waking, the main thread first spins for 1 s, so
      // the watchdog looks before the main thread can say it is alive (and without the rule it
      // would see 8 s of silence)
      evaluate("{ const t = Date.now(); while (Date.now() - t < 1000) {} }")
      yield* Effect.sleep("8 seconds")
      process.kill(agent.pid, "SIGCONT")
      yield* Effect.sleep("5 seconds")
      expect(agent.running, agent.stderr.slice(-2000)).toBe(true)
      expect(agent.stderr).not.toContain("watchdog:")
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live("a watchdog limit that is not a duration is refused before the agent starts", () =>
    Effect.gen(function*() {
      const data = yield* dataDir
      const ran = yield* runCli(["sync", "--data", data, "--signal", "ws://127.0.0.1:9", "--watchdog", "soon"], { deadline: "30 seconds" })
      expect(ran.code).not.toBe(0)
      expect(ran.stderr).toMatch(/a positive duration such as 60s or 5m, or off/)
    }).pipe(Effect.scoped), TEST_TIMEOUT)
})
