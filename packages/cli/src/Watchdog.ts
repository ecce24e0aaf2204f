/**
 * The agent's watchdog: a worker thread that ends the process when the main thread has not run
 * for `limit`. A hang in native code (the WebRTC library once deadlocked in a DTLS handshake:
 * vendor/datachannel/README.md) otherwise leaves the agent running but silent for good, with no
 * log, no /status and no sync, and a supervisor (compose's restart policy, systemd's Restart=)
 * restarts only a process that exits. The worker writes one line to stderr itself, since the
 * main thread's logger cannot run, then kills the process (SIGKILL: exit status 137; as PID 1
 * of a container, which ignores signals it has no handler for, it exits through WASI's
 * proc_exit with 137). Time in which the worker did not run either (a laptop asleep, a stopped
 * process) does not count.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Worker } from "node:worker_threads"

/** How often the main thread says it is alive, and how often the worker looks. */
const BEAT_MILLIS = 1_000

/** The worker: CommonJS, evaluated from this string (no file of its own to ship or resolve). */
const watcher = `
const { workerData } = require("node:worker_threads")
const { writeSync } = require("node:fs")
const beats = new Int32Array(workerData.beats)
let last = Atomics.load(beats, 0)
let since = Date.now()
let checked = since
setInterval(() => {
  const now = Date.now()
  const beat = Atomics.load(beats, 0)
  // this thread did not run either (the machine slept, the process was stopped): start over
  const suspended = now - checked > 3 * workerData.beatMillis
  checked = now
  if (beat !== last || suspended) {
    last = beat
    since = now
    return
  }
  if (now - since < workerData.limitMillis) return
  const message = "watchdog: the main thread has not run for " + Math.round((now - since) / 1000) + " s " +
    "(a hang in native code, such as the WebRTC library); ending the process so that its supervisor restarts it"
  writeSync(2, workerData.json
    ? JSON.stringify({ timestamp: new Date(now).toISOString(), level: "FATAL", message }) + "\\n"
    : "[" + new Date(now).toISOString().slice(11, 23) + "] FATAL: " + message + "\\n")
  process.kill(process.pid, "SIGKILL")
  // Still here: we are PID 1 of a container (no --init), which no signal of its own can end.
  // WASI's proc_exit ends the whole process from any thread.
  const { WASI } = require("node:wasi")
  const wasi = new WASI({ version: "preview1", returnOnExit: false })
  wasi.start(new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(workerData.exitModule)), wasi.getImportObject()))
}, workerData.beatMillis)
`

/**
 * A WebAssembly module whose \`_start\` calls WASI's \`proc_exit(137)\`: the status a SIGKILL
 * gives, for a supervisor that looks at it.
 */
const exitModule = [
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...[0x01, 0x08, 0x02, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00], // types: (i32) -> (), () -> ()
  ...[0x02, 0x24, 0x01, 0x16, ...Buffer.from("wasi_snapshot_preview1"), 0x09, ...Buffer.from("proc_exit"), 0x00, 0x00], // import it
  ...[0x03, 0x02, 0x01, 0x01], // one function of type () -> ()
  ...[0x05, 0x03, 0x01, 0x00, 0x01], // one page of memory (WASI wants it exported)
  ...[0x07, 0x13, 0x02, 0x06, ...Buffer.from("_start"), 0x00, 0x01, 0x06, ...Buffer.from("memory"), 0x02, 0x00],
  ...[0x0a, 0x09, 0x01, 0x07, 0x00, 0x41, 0x89, 0x01, 0x10, 0x00, 0x0b] // _start: i32.const 137; call proc_exit
]

/**
 * Watch the main thread for the life of the scope: if it does not run for `limit`, the process
 * ends with a FATAL line on stderr (a JSON line when `json`). Neither the worker nor the beat
 * keeps the process alive.
 */
export const watch = (limit: Duration.Duration, options: { readonly json: boolean }): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const beats = new SharedArrayBuffer(4)
      const view = new Int32Array(beats)
      const beat = setInterval(() => Atomics.add(view, 0, 1), BEAT_MILLIS)
      beat.unref()
      const worker = new Worker(watcher, {
        eval: true,
        workerData: { beats, limitMillis: Duration.toMillis(limit), beatMillis: BEAT_MILLIS, json: options.json, exitModule },
        // a small heap: the worker only compares two numbers
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 }
      })
      worker.unref()
      return { beat, worker }
    }),
    ({ beat, worker }) =>
      Effect.promise(async () => {
        clearInterval(beat)
        await worker.terminate()
      })
  )
