/**
 * Real agents across the network lab's emulated link: the signaling server in A's namespace, one
 * `can-sync sync` in each of A and B, ICE bound to the link's addresses, so everything between
 * the agents (signaling included) crosses linkemu's delay, loss and outages. Status is read with
 * curl inside the agent's namespace; stores are read from outside (`can-sync ls/verify`).
 */
import { type Duration, Effect, type Scope } from "effect"
import { mkdir } from "node:fs/promises"
import type { AgentStatus, GeneratedFile, PeerStatus, Scenario } from "../e2e/Scenario.ts"
import { notYet } from "../kit/Eventually.ts"
import { type Child, cliMain, spawn } from "../kit/Process.ts"
import { writeContent } from "../kit/Seeded.ts"
import type * as Netlab from "./Netlab.ts"

export const SIGNAL_PORT = 7777
export const ADMIN_PORT = 7070

export interface WanAgent {
  readonly name: string
  readonly ns: Netlab.Namespace
  readonly data: string
  readonly peerId: string
  readonly proc: Child
  /** `/status`, fetched with curl inside the agent's namespace (undefined if it does not answer) */
  readonly status: Effect.Effect<AgentStatus | undefined>
}

/** The signaling server in A's namespace, on A's link address; its ws:// URL. */
export const signal = (s: Scenario, p: Netlab.Pair): Effect.Effect<string, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const proc = yield* spawn("ip", ["netns", "exec", p.a.name, process.execPath, cliMain, "signal", "--host", p.addressA, "--port", String(SIGNAL_PORT)], {
      name: "signal",
      grace: "3 seconds"
    })
    s.procs.push(proc)
    const match = yield* proc.waitFor("stdout", /signaling at (ws:\/\/\S+)/, "60 seconds")
    return match[1]!
  })

/** `can-sync sync` in `ns` (ICE on `address` only), allowing `peer`; waits for its admin endpoint. */
export const agent = (
  s: Scenario,
  options: {
    readonly name: string
    readonly ns: Netlab.Namespace
    readonly address: string
    readonly data: string
    readonly peer: string
    readonly signalUrl: string
    readonly env?: Record<string, string>
  }
): Effect.Effect<WanAgent, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const peerId = yield* s.id(options.data)
    const proc = yield* spawn("ip", [
      "netns", "exec", options.ns.name, "env", ...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
      process.execPath, cliMain, "sync",
      "--data", options.data,
      "--signal", options.signalUrl,
      "--peer", options.peer,
      "--bind-address", options.address,
      "--admin-port", String(ADMIN_PORT),
      "--json"
    ], { name: options.name, grace: "5 seconds" })
    s.procs.push(proc)
    yield* proc.waitFor("stderr", /admin endpoints at/, "60 seconds", s.diagnostics)
    const status = options.ns.exec(["curl", "-s", "--max-time", "5", `http://127.0.0.1:${ADMIN_PORT}/status`]).pipe(
      Effect.map((out) => JSON.parse(out.stdout) as AgentStatus),
      Effect.orElseSucceed(() => undefined)
    )
    return { name: options.name, ns: options.ns, data: options.data, peerId, proc, status }
  })

/** `a`'s /status entry for `peer` once it satisfies `until`. */
export const peerWhere = (s: Scenario, a: WanAgent, peer: string, what: string, until: (p: PeerStatus) => boolean, deadline: Duration.Input = "90 seconds") =>
  s.wait(`${a.name}: ${what}`, a.status.pipe(Effect.map((st) => {
    const p = st?.peers.find((x) => x.peer === peer)
    return p !== undefined && until(p) ? p : notYet(p ?? st)
  })), deadline)

/**
 * `count` files of mixed sizes under `dir`: mostly small (100 B – 64 KiB), every tenth 256 KiB –
 * 1.25 MiB, content fixed by `seed` and the index.
 */
export const mixedFiles = (s: Scenario, dir: string, seed: string, count: number): Effect.Effect<ReadonlyArray<GeneratedFile>> =>
  Effect.promise(() => mkdir(s.path(dir), { recursive: true })).pipe(
    Effect.andThen(Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => {
      const path = s.path(dir, `f-${i}`)
      const size = i % 10 === 9 ? 256 * 1024 + ((i * 104729) % (1024 * 1024)) : 100 + ((i * 7919) % (64 * 1024))
      return writeContent(path, `${seed}/${i}`, size).pipe(Effect.map((hash) => ({ path, size, hash })))
    }))
  )
