/**
 * Test support for multi-process tests: a fixture peer in its own OS process as a scoped
 * resource (stdin closed, then SIGKILL after a grace period, when the scope ends), its JSON-line
 * events, bounded waits on them, and an in-process log capture for the test's own transport.
 */
import { Effect, Logger } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcessWithoutNullStreams } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Identity } from "../../src/Identity.ts"
import type { PeerIdentity } from "../../src/Identity.ts"
import type { PeerFixtureConfig } from "../fixtures/peer.ts"

const FIXTURE = fileURLToPath(new URL("../fixtures/peer.ts", import.meta.url))

export type PeerEvent = { readonly event: string } & Record<string, unknown>

export interface PeerProcess {
  readonly pid: number
  readonly events: ReadonlyArray<PeerEvent>
  /** The first event (from the start) matching, waiting at most `timeoutMs`. */
  readonly waitFor: (what: string, match: (e: PeerEvent) => boolean, timeoutMs?: number) => Effect.Effect<PeerEvent>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Resolves with the exit code and signal once the process has exited. */
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly hasExited: () => boolean
}

export const tempDir = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), `can-sync-${prefix}-`))

/** A data directory with a fresh identity in it, so the test knows the peer id before starting it. */
export const identityDir = (name: string) =>
  Effect.gen(function*() {
    const dir = tempDir(name)
    const identity: PeerIdentity = yield* Identity.loadOrCreate(dir)
    return { dir, identity }
  }).pipe(Effect.orDie)

const poll = <A>(check: () => A | undefined, timeoutMs: number, describe: () => string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const value = check()
      if (value !== undefined) return value
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.die(new Error(describe()))
  })

export const waitUntil = (what: string, check: () => boolean, timeoutMs = 20_000) =>
  poll(() => (check() ? true : undefined), timeoutMs, () => `timed out after ${timeoutMs} ms waiting for ${what}`)

/** Start the fixture peer; it is stopped (stdin closed, SIGKILL after 5 s) when the scope closes. */
export const spawnPeer = (name: string, config: PeerFixtureConfig) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [FIXTURE, JSON.stringify(config)], {
        stdio: ["pipe", "pipe", "pipe"]
      })
      const events: Array<PeerEvent> = []
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
      const exitWaiters: Array<() => void> = []
      let buffered = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        buffered += chunk
        const lines = buffered.split("\n")
        buffered = lines.pop() ?? ""
        for (const line of lines) {
          if (line.trim() === "") continue
          try {
            events.push(JSON.parse(line) as PeerEvent)
          } catch {
            events.push({ event: "stdout", line })
          }
        }
      })
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk
      })
      child.on("exit", (code, signal) => {
        exit = { code, signal }
        for (const waiter of exitWaiters.splice(0)) waiter()
      })
      const describe = (what: string, timeoutMs: number) =>
        `${name}: timed out after ${timeoutMs} ms waiting for ${what}; events:\n${events.map((e) => JSON.stringify(e)).join("\n")}\nstderr:\n${stderr}`
      const exited = Effect.callback<{ code: number | null; signal: NodeJS.Signals | null }>((resume) => {
        if (exit !== undefined) return resume(Effect.succeed(exit))
        exitWaiters.push(() => resume(Effect.succeed(exit!)))
      })
      const handle: PeerProcess = {
        pid: child.pid!,
        events,
        waitFor: (what, match, timeoutMs = 30_000) => poll(() => events.find(match), timeoutMs, () => describe(what, timeoutMs)),
        kill: (signal) => Effect.sync(() => void child.kill(signal)),
        exited,
        hasExited: () => exit !== undefined
      }
      return { child, handle, exited }
    }),
    ({ child, exited }) =>
      Effect.gen(function*() {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.stdin.end()
        const gone = yield* exited.pipe(Effect.timeoutOption("5 seconds"))
        if (gone._tag === "None") {
          child.kill("SIGKILL")
          yield* exited
        }
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** Log lines of the transport running in the test process, captured for assertions. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make((options) => {
    lines.push(Array.isArray(options.message) ? options.message.map(String).join(" ") : String(options.message))
  })
  return { lines, layer: Logger.layer([logger]) }
}
