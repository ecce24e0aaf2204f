/**
 * Real agents across the NAT lab: the signaling server and coturn in the public namespace, one
 * `can-sync sync` process in each home, as an operator would run them (only the network is
 * emulated). The agents' own reports are read back: their JSON log lines (the selected ICE path,
 * TURN trouble) and `/status`, fetched from inside the agent's namespace.
 */
import { type Duration, Effect, type Scope } from "effect"
import { GaveUp, notYet, type TimedOut } from "../kit/Eventually.ts"
import { type Child, cleanEnv, cliMain, type JsonLine, spawn } from "../kit/Process.ts"
import type { AgentStatus, PeerStatus, Scenario } from "../e2e/Scenario.ts"
import * as Coturn from "./Coturn.ts"
import * as NatLab from "./NatLab.ts"
import type { Home, NatKind } from "./NatLab.ts"

export const SIGNAL_PORT = 7777
export const ADMIN_PORT = 7070

/** An agent's report of the path one of its links took (its "transport: path to ..." log line). */
export interface PathReport {
  readonly kind: string
  readonly local: string
  readonly remote: string
  readonly message: string
  readonly at: string
}

export interface NatAgent {
  readonly name: string
  readonly home: Home
  readonly data: string
  readonly peerId: string
  readonly proc: Child
  /** `/status`, fetched with curl inside the agent's namespace */
  readonly status: Effect.Effect<AgentStatus | undefined>
  /** Every path the agent reported so far, oldest first. */
  readonly paths: () => ReadonlyArray<PathReport>
  /** Its JSON log lines whose message matches. */
  readonly logs: (pattern: RegExp) => ReadonlyArray<JsonLine>
}

export interface NatWorld {
  readonly lab: NatLab.NatLab
  readonly turn: Coturn.Coturn
  readonly signalUrl: string
}

/** The lab, coturn and the signaling server; all gone when the scope closes. */
export const world = (scenario: Scenario, nats: ReadonlyArray<NatKind>, options: { readonly tls?: boolean } = {}): Effect.Effect<NatWorld, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const lab = yield* NatLab.make(nats)
    const turn = yield* Coturn.make(lab.pub, NatLab.PUBLIC_ADDRESS, scenario.root, options)
    const signal = yield* spawn("ip", ["netns", "exec", lab.pub.name, process.execPath, cliMain, "signal", "--host", NatLab.PUBLIC_ADDRESS, "--port", String(SIGNAL_PORT)], {
      name: "signal",
      grace: "3 seconds"
    })
    scenario.procs.push(signal)
    const match = yield* signal.waitFor("stdout", /signaling at (ws:\/\/\S+)/, "60 seconds")
    return { lab, turn, signalUrl: match[1]! }
  })

const messageOf = (line: JsonLine) => (typeof line.message === "string" ? line.message : "")

/** `can-sync sync` in `home`, allowing `peer`, with `args` for ICE; waits for its admin endpoint. */
export const agent = (
  scenario: Scenario,
  w: NatWorld,
  home: Home,
  options: {
    readonly name: string
    readonly data: string
    readonly peer: string
    readonly ice: ReadonlyArray<string>
    readonly adminPort?: number
    /** Extra environment, e.g. NODE_EXTRA_CA_CERTS for a TURN server's test CA. */
    readonly env?: Record<string, string>
  }
): Effect.Effect<NatAgent, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const peerId = yield* scenario.id(options.data)
    const adminPort = options.adminPort ?? ADMIN_PORT
    const proc = yield* spawn("ip", [
      "netns", "exec", home.host.name, process.execPath, cliMain, "sync",
      "--data", options.data,
      "--signal", w.signalUrl,
      "--peer", options.peer,
      "--admin-port", String(adminPort),
      "--json",
      ...options.ice
    ], { name: options.name, grace: "5 seconds", env: cleanEnv(options.env) })
    scenario.procs.push(proc)
    yield* proc.waitFor("stderr", /admin endpoints at/, "60 seconds", scenario.diagnostics)
    const status = home.host.exec(["curl", "-s", "--max-time", "5", `http://127.0.0.1:${adminPort}/status`]).pipe(
      Effect.map((out) => JSON.parse(out.stdout) as AgentStatus),
      Effect.orElseSucceed(() => undefined)
    )
    const logs = (pattern: RegExp) => proc.json("stderr").filter((line) => pattern.test(messageOf(line)))
    const paths = () =>
      logs(/^transport: path (changed )?to /).map((line) => ({
        kind: String(line.ice_path),
        local: String(line.ice_local),
        remote: String(line.ice_remote),
        message: messageOf(line),
        at: String(line.timestamp)
      }))
    return { name: options.name, home, data: options.data, peerId, proc, status, paths, logs }
  })

/** In each home's router, UDP to the public host is dropped: TURN can only be reached over TCP or TLS. */
export const blockUdpToPublic = (w: NatWorld): Effect.Effect<void, unknown> =>
  Effect.forEach(w.lab.homes, (home) => home.router.exec(["iptables", "-I", "FORWARD", "-p", "udp", "-d", NatLab.PUBLIC_ADDRESS, "-j", "DROP"]), { discard: true })

/** The ICE path `a` reported last for its link (waits for one). */
export const reportedPath = (scenario: Scenario, a: NatAgent, deadline: Duration.Input = "60 seconds"): Effect.Effect<PathReport, TimedOut | GaveUp> =>
  scenario.wait(`${a.name} to report its link's path`, Effect.sync(() => a.paths().at(-1)), deadline)

/** `a`'s /status entry for its peer once live (path included). */
export const livePeer = (scenario: Scenario, a: NatAgent, peer: string, deadline: Duration.Input = "90 seconds"): Effect.Effect<PeerStatus & { readonly path?: { readonly kind: string; readonly rttMillis?: number } }, TimedOut | GaveUp> =>
  scenario.wait(`${a.name} to be live with its peer (/status)`, a.status.pipe(Effect.map((s) => {
    const p = s?.peers.find((x) => x.peer === peer) as (PeerStatus & { readonly path?: { readonly kind: string; readonly rttMillis?: number } }) | undefined
    return p !== undefined && p.state === "live" ? p : notYet(p ?? s)
  })), deadline)

export { GaveUp }
