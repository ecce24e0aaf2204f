/**
 * Real processes for the end-to-end observability tests: the `can-sync` CLI run once (`id`,
 * `add`, `ls`) or kept running for the length of a scope (`signal`, `sync`), stopped with
 * SIGTERM (then SIGKILL) on release; plus free ports, temp dirs and HTTP polling.
 */
import { Data, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const root = join(import.meta.dirname, "..", "..")
export const cliMain = join(root, "packages", "cli", "src", "main.ts")

export class CommandFailed extends Data.TaggedError("CommandFailed")<{
  readonly argv: ReadonlyArray<string>
  readonly code: number | null
  readonly stderr: string
}> {}

export class NotYet extends Data.TaggedError("NotYet")<{ readonly waitingFor: string }> {}

/** The environment of this process without any OTEL_* variable, plus `extra`. */
export const cleanEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  ...Object.fromEntries(Object.entries(process.env).flatMap(([k, v]) => (v === undefined || k.startsWith("OTEL_") ? [] : [[k, v]]))),
  ...extra
})

/** Runs a command to completion; fails with its stderr when it exits non-zero. */
export const run = (argv: ReadonlyArray<string>, env: Record<string, string> = cleanEnv(), cwd = root) =>
  Effect.callback<{ readonly stdout: string; readonly stderr: string }, CommandFailed>((resume) => {
    const [file = "", ...args] = argv
    const child = execFile(file, args, { env, cwd, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) resume(Effect.succeed({ stdout, stderr }))
      else resume(Effect.fail(new CommandFailed({ argv, code: typeof error.code === "number" ? error.code : null, stderr: `${stderr}${error.message}` })))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** `can-sync ARGS` with this repository's CLI. */
export const cli = (args: ReadonlyArray<string>, env?: Record<string, string>) => run([process.execPath, cliMain, ...args], env)

export interface Running {
  readonly pid: number
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** SIGTERM, then the exit code (SIGKILL after `graceSeconds`, giving null). */
  readonly stop: (graceSeconds?: number) => Effect.Effect<number | null>
  readonly exitCode: () => number | null | undefined
}

const waitExit = (child: ChildProcess, seconds: number) =>
  Effect.callback<number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
    }, seconds * 1000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed(code))
    })
  })

/** Starts a long-running process for the length of the scope. */
export const start = (argv: ReadonlyArray<string>, env: Record<string, string>, cwd = root): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const [file = "", ...args] = argv
      const child = spawn(file, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
      child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
      const stop = (graceSeconds = 20) =>
        Effect.suspend(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
          return waitExit(child, graceSeconds)
        })
      const running: Running = {
        pid: child.pid ?? -1,
        output: () => ({ stdout, stderr }),
        stop,
        exitCode: () => (child.exitCode === null && child.signalCode === null ? undefined : child.exitCode)
      }
      return running
    }),
    (running) => running.stop(10).pipe(Effect.asVoid)
  )

/** A port that was free a moment ago (the OS hands out a fresh one for port 0). */
export const freePort = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A temporary directory, removed with the scope. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), `${prefix}-`))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Retries `look` every `everyMs` until it yields a value, at most `seconds`. */
export const eventually = <A, E, R>(waitingFor: string, look: Effect.Effect<A | undefined, E, R>, seconds = 60, everyMs = 250) =>
  look.pipe(
    Effect.flatMap((a) => (a === undefined ? Effect.fail(new NotYet({ waitingFor })) : Effect.succeed(a))),
    Effect.retry(Schedule.spaced(`${everyMs} millis`).pipe(Schedule.upTo({ times: Math.ceil((seconds * 1000) / everyMs) })))
  )

/** The HTTP status of GET `url`, or undefined when nothing answers. */
export const httpStatus = (url: string) =>
  Effect.promise(() => fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.status, () => undefined))
