/**
 * A child process as a scoped resource: stdout and stderr captured (the tail, as text and bytes),
 * JSON lines parsed, its exit awaitable; when the scope closes it is stopped (SIGTERM, or stdin
 * closed, then SIGKILL after a grace period) and its exit awaited. `run` is the one-shot form, with
 * a deadline. `cli`/`runCli` start this repository's `can-sync` exactly as a user would.
 */
import { Data, Deferred, Duration, Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn as spawnChild } from "node:child_process"
import { join, resolve } from "node:path"
import { StringDecoder } from "node:string_decoder"
import type { Writable } from "node:stream"
import { eventually, GaveUp, notYet, type NotYet, type TimedOut } from "./Eventually.ts"

export const repoRoot = resolve(import.meta.dirname, "..", "..")
export const cliMain = join(repoRoot, "packages", "cli", "src", "main.ts")

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface SpawnOptions {
  /** For messages (default: the command and its first argument). */
  readonly name?: string
  readonly cwd?: string
  /** The whole environment (default `cleanEnv()`). */
  readonly env?: NodeJS.ProcessEnv
  /** `pipe` keeps stdin open (`stop: "stdin"` closes it); default `ignore`. */
  readonly stdin?: "ignore" | "pipe"
  /** How the scope's release asks it to stop: a signal (default SIGTERM) or closing stdin. */
  readonly stop?: NodeJS.Signals | "stdin"
  /** Time between the polite stop and SIGKILL (default 5 s). */
  readonly grace?: Duration.Input
  /** Bytes kept of each stream, the most recent (default 4 MiB). */
  readonly capture?: number
}

/** One output stream's captured tail. */
class Captured {
  private chunks: Array<Buffer> = []
  private size = 0
  private text_ = ""
  private readonly decoder = new StringDecoder("utf8")
  private readonly limit: number
  constructor(limit: number) {
    this.limit = limit
  }
  push(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.size += chunk.length
    this.text_ += this.decoder.write(chunk)
    while (this.size > this.limit && this.chunks.length > 1) this.size -= this.chunks.shift()!.length
    if (this.text_.length > this.limit) this.text_ = this.text_.slice(-this.limit)
  }
  get text(): string {
    return this.text_
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks)
  }
}

export type Stream = "stdout" | "stderr"
export type JsonLine = { readonly [key: string]: unknown }

/** A running (or exited) child process. */
export class Child {
  readonly name: string
  readonly pid: number
  /** Its stdin when spawned with `stdin: "pipe"`. */
  readonly stdin: Writable | null
  /** Completes with the exit once the process exited and both pipes are drained. */
  readonly exited: Effect.Effect<Exit>
  /** Set when its exit is part of the plan (stopped by the test, a one-shot command). */
  expectExit = false
  private readonly out: Captured
  private readonly err: Captured
  private exit_: Exit | undefined
  readonly child: ChildProcess

  constructor(child: ChildProcess, name: string, capture: number, exited: Deferred.Deferred<Exit>) {
    this.child = child
    this.name = name
    this.pid = child.pid ?? -1
    this.stdin = child.stdin
    this.out = new Captured(capture)
    this.err = new Captured(capture)
    child.stdout?.on("data", (chunk: Buffer) => this.out.push(chunk))
    child.stderr?.on("data", (chunk: Buffer) => this.err.push(chunk))
    const done = (exit: Exit) => {
      if (this.exit_ !== undefined) return
      this.exit_ = exit
      everyChild.delete(child)
      Deferred.doneUnsafe(exited, Effect.succeed(exit))
    }
    // "close", not "exit": both pipes are drained by then.
    child.once("close", (code, signal) => done({ code, signal }))
    child.once("error", () => done({ code: null, signal: null }))
    this.exited = Deferred.await(exited)
  }

  get stdout(): string {
    return this.out.text
  }
  get stderr(): string {
    return this.err.text
  }
  /** stdout as bytes (the captured tail). */
  get stdoutBytes(): Buffer {
    return this.out.bytes
  }
  /** Its exit, once it exited. */
  get exit(): Exit | undefined {
    return this.exit_
  }
  get running(): boolean {
    return this.exit_ === undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The complete lines of a stream that parse as JSON objects (others are skipped). */
  json(stream: Stream): ReadonlyArray<JsonLine> {
    const out: Array<JsonLine> = []
    const lines = this[stream].split("\n")
    lines.pop() // incomplete, or empty after the last newline
    for (const line of lines) {
      if (!line.startsWith("{")) continue
      try {
        out.push(JSON.parse(line) as JsonLine)
      } catch {
        // a line cut at the capture limit
      }
    }
    return out
  }

  /** Messages of its JSON log lines on stderr matching `pattern`. */
  messages(pattern: RegExp): ReadonlyArray<string> {
    return this.json("stderr").map((r) => String(r.message ?? "")).filter((m) => pattern.test(m))
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.running) this.child.kill(signal)
    })
  }

  /** Sends `signal` (or closes stdin), SIGKILL after `grace`; the exit. */
  stop(how: NodeJS.Signals | "stdin" = "SIGTERM", grace: Duration.Input = "5 seconds"): Effect.Effect<Exit> {
    return Effect.suspend(() => {
      this.expectExit = true
      if (this.running) {
        if (how === "stdin") this.child.stdin?.end()
        else this.child.kill(how)
      }
      return this.exited.pipe(
        Effect.timeoutOrElse({ duration: grace, orElse: () => this.kill("SIGKILL").pipe(Effect.andThen(this.exited)) })
      )
    })
  }

  /** Fails with GaveUp if it exited when it was not expected to (for probes). */
  get alive(): Effect.Effect<void, GaveUp> {
    return Effect.suspend(() =>
      this.running || this.expectExit ? Effect.void : Effect.fail(new GaveUp({ what: "", reason: `${this.name} exited (${this.describeExit()})`, diagnostics: "" }))
    )
  }

  /** The first match of `pattern` on `stream`, within `deadline`; gives up if the process exits. */
  waitFor(stream: Stream, pattern: RegExp, deadline: Duration.Input, diagnostics?: () => string): Effect.Effect<RegExpExecArray, TimedOut | GaveUp> {
    return eventually(`${this.name} to print ${pattern} on ${stream}`, Effect.suspend((): Effect.Effect<RegExpExecArray | NotYet, GaveUp> => {
      const match = pattern.exec(this[stream])
      if (match !== null) return Effect.succeed(match)
      if (!this.running) return Effect.fail(new GaveUp({ what: "", reason: `${this.name} exited (${this.describeExit()}) before printing it`, diagnostics: "" }))
      return Effect.succeed(notYet(`no match in ${this[stream].split("\n").length - 1} lines`))
    }), deadline, { interval: "25 millis", diagnostics: diagnostics ?? (() => this.tail()) })
  }

  /** The first JSON line on `stream` satisfying `match`, within `deadline`. */
  waitForJson(stream: Stream, what: string, match: (line: JsonLine) => boolean, deadline: Duration.Input): Effect.Effect<JsonLine, TimedOut | GaveUp> {
    return eventually(`${this.name}: ${what}`, Effect.suspend((): Effect.Effect<JsonLine | NotYet, GaveUp> => {
      const found = this.json(stream).find(match)
      if (found !== undefined) return Effect.succeed(found)
      if (!this.running) return Effect.fail(new GaveUp({ what: "", reason: `${this.name} exited (${this.describeExit()})`, diagnostics: "" }))
      return Effect.succeed(notYet(`no match in ${this.json(stream).length} JSON lines`))
    }), deadline, { interval: "20 millis", diagnostics: () => this.tail(200, "both") })
  }

  describeExit(): string {
    const exit = this.exit_ ?? { code: this.child.exitCode, signal: this.child.signalCode }
    return exit.signal !== null ? exit.signal : `code ${exit.code}`
  }

  /** The last lines of stderr (or both streams), for failure messages. */
  tail(lines = 25, which: "stderr" | "both" = "stderr"): string {
    const last = (text: string) => text.trimEnd().split("\n").slice(-lines).join("\n")
    const head = `--- ${this.name} (pid ${this.pid}${this.running ? "" : `, exited ${this.describeExit()}`})`
    return which === "stderr"
      ? `${head} stderr tail:\n${last(this.stderr)}`
      : `${head} stdout tail:\n${last(this.stdout)}\n--- stderr tail:\n${last(this.stderr)}`
  }
}

/** Everything spawned in this worker, SIGKILLed on exit as a last resort. */
const everyChild = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of everyChild) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
})

/** This process's environment without configuration from the developer's shell, plus `extra`. */
export const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("CAN_SYNC_") || key.startsWith("OTEL_")) continue
    env[key] = value
  }
  return { ...env, NO_COLOR: "1", ...extra }
}

/** Starts `command args` for the length of the scope. */
export const spawn = (command: string, args: ReadonlyArray<string>, options: SpawnOptions = {}): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exited = yield* Deferred.make<Exit>()
      const child = spawnChild(command, args, {
        cwd: options.cwd ?? repoRoot,
        env: options.env ?? cleanEnv(),
        stdio: [options.stdin ?? "ignore", "pipe", "pipe"]
      })
      everyChild.add(child)
      return new Child(child, options.name ?? [command, args[0] ?? ""].join(" ").trim(), options.capture ?? 4 * 1024 * 1024, exited)
    }),
    (child) => child.stop(options.stop ?? "SIGTERM", options.grace ?? "5 seconds")
  )

/** What a one-shot command left. */
export interface Ran extends Exit {
  readonly stdout: string
  readonly stderr: string
  /** stdout as bytes. */
  readonly bytes: Buffer
}

export class CommandTimedOut extends Data.TaggedError("CommandTimedOut")<{ readonly argv: ReadonlyArray<string>; readonly after: Duration.Duration; readonly stderr: string }> {
  override get message(): string {
    return `${this.argv.join(" ")} did not exit within ${Duration.format(this.after)} (killed)\n${this.stderr.slice(-4_000)}`
  }
}

export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly argv: ReadonlyArray<string>; readonly ran: Ran }> {
  override get message(): string {
    return `${this.argv.join(" ")} exited ${this.ran.signal ?? this.ran.code}\n${this.ran.stderr.slice(-4_000)}`
  }
}

/** Runs `command args` to completion, whatever its exit code; SIGKILLed and failed after `deadline`. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: Omit<SpawnOptions, "stop" | "grace"> & { readonly deadline?: Duration.Input } = {}
): Effect.Effect<Ran, CommandTimedOut> =>
  Effect.scoped(Effect.gen(function*() {
    const child = yield* spawn(command, args, { capture: 256 * 1024 * 1024, ...options, stop: "SIGKILL", grace: "5 seconds" })
    child.expectExit = true
    const deadline = options.deadline ?? "60 seconds"
    const exit = yield* child.exited.pipe(
      Effect.timeoutOrElse({
        duration: deadline,
        orElse: () => Effect.fail(new CommandTimedOut({ argv: [command, ...args], after: Duration.fromInputUnsafe(deadline), stderr: child.stderr }))
      })
    )
    return { ...exit, stdout: child.stdout, stderr: child.stderr, bytes: child.stdoutBytes }
  }))

/** Like `run`, but a non-zero exit is a failure. */
export const runOk = (command: string, args: ReadonlyArray<string>, options: Parameters<typeof run>[2] = {}): Effect.Effect<Ran, CommandTimedOut | CommandFailed> =>
  run(command, args, options).pipe(
    Effect.flatMap((ran) => (ran.code === 0 ? Effect.succeed(ran) : Effect.fail(new CommandFailed({ argv: [command, ...args], ran }))))
  )

/** `can-sync ARGS` (this repository's CLI) for the length of the scope. */
export const cli = (args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  spawn(process.execPath, [cliMain, ...args], { name: `can-sync ${args[0] ?? ""}`, ...options })

/** `can-sync ARGS` to completion. */
export const runCli = (args: ReadonlyArray<string>, options: Parameters<typeof run>[2] = {}) =>
  run(process.execPath, [cliMain, ...args], { name: `can-sync ${args[0] ?? ""}`, ...options })
