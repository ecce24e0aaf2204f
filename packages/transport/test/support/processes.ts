/**
 * Test support for multi-process tests, on the shared test kit (test/kit): a fixture peer in its
 * own OS process as a scoped resource (stdin closed, then SIGKILL after a grace period, when the
 * scope ends) with its JSON-line events, and an in-process log capture for the test's transport.
 */
import { Effect, Logger } from "effect"
import type { Duration, Scope } from "effect"
import { fileURLToPath } from "node:url"
import { eventually } from "../../../../test/kit/Eventually.ts"
import type { GaveUp, TimedOut } from "../../../../test/kit/Eventually.ts"
import { tempDir } from "../../../../test/kit/Files.ts"
import { spawn } from "../../../../test/kit/Process.ts"
import type { Exit, JsonLine } from "../../../../test/kit/Process.ts"
import { Identity } from "../../src/Identity.ts"
import type { PeerIdentity } from "../../src/Identity.ts"
import type { PeerFixtureConfig } from "../fixtures/peer.ts"

const FIXTURE = fileURLToPath(new URL("../fixtures/peer.ts", import.meta.url))

export type PeerEvent = JsonLine & { readonly event?: unknown }

export interface PeerProcess {
  /** Every event the peer printed so far. */
  readonly events: ReadonlyArray<PeerEvent>
  /** The first event (from the start) matching, within `deadline`. */
  readonly waitFor: (what: string, match: (e: PeerEvent) => boolean, deadline?: Duration.Input) => Effect.Effect<PeerEvent, TimedOut | GaveUp>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Its exit, once it has exited. */
  readonly exited: Effect.Effect<Exit>
}

/** A data directory with a fresh identity in it, so the test knows the peer id before starting it. */
export const identityDir = (name: string): Effect.Effect<{ readonly dir: string; readonly identity: PeerIdentity }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* tempDir(`can-sync-${name}-`)
    const identity = yield* Identity.loadOrCreate(dir)
    return { dir, identity }
  }).pipe(Effect.orDie)

/** Wait for `check` to hold, within `deadline`. */
export const waitUntil = (what: string, check: () => boolean, deadline: Duration.Input = "20 seconds") =>
  eventually(what, Effect.sync(() => (check() ? true : undefined)), deadline, { interval: "20 millis" })

/** Start the fixture peer; it is stopped (stdin closed, SIGKILL after 5 s) when the scope closes. */
export const spawnPeer = (name: string, config: PeerFixtureConfig): Effect.Effect<PeerProcess, never, Scope.Scope> =>
  Effect.map(
    spawn(process.execPath, [FIXTURE, JSON.stringify(config)], { name, stdin: "pipe", stop: "stdin" }),
    (child): PeerProcess => ({
      get events() {
        return child.json("stdout")
      },
      waitFor: (what, match, deadline = "30 seconds") => child.waitForJson("stdout", what, match, deadline),
      kill: (signal) => child.kill(signal),
      exited: child.exited
    })
  )

/** Log lines of the transport running in the test process, captured for assertions. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make((options) => {
    lines.push(Array.isArray(options.message) ? options.message.map(String).join(" ") : String(options.message))
  })
  return { lines, layer: Logger.layer([logger]) }
}
