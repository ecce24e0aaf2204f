/**
 * Connection setup time through each ICE path, with real agents in the NAT lab (test/nat): host
 * (two agents on one home network), server-reflexive (behind two cone NATs), relayed (behind
 * two symmetric NATs, through coturn over UDP) and relayed over TLS (`turns:` only, UDP to coturn
 * dropped at the routers: through the agents' TURN stream bridges). Per round, agent B starts anew; its setup time runs from its
 * registration with the signaling server to its "path to" report (knock, offer, ICE, DTLS,
 * AuthProofs). Prints a table, writes bench/results/nat.json. Needs root (namespaces), coturn.
 * Usage: node bench/nat.ts [--rounds N] [--paths host,server-reflexive,relayed,relayed-tls]
 */
import { Duration, Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Scenario } from "../test/e2e/Scenario.ts"
import * as NatLab from "../test/nat/NatLab.ts"
import { agent, ADMIN_PORT, blockUdpToPublic, type NatAgent, reportedPath, world } from "../test/nat/NatScenario.ts"

const SELF = fileURLToPath(import.meta.url)
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const rounds = Number(arg("rounds", "5"))

type Kind = "host" | "server-reflexive" | "relayed" | "relayed-tls"

interface Round {
  readonly setupMillis: number
  readonly path: string
  readonly local: string
  readonly remote: string
}

const timeOf = (a: NatAgent, pattern: RegExp, after = 0) =>
  a.logs(pattern).map((l) => Date.parse(String(l.timestamp))).find((t) => t >= after)

const median = (xs: ReadonlyArray<number>) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN

const measure = (kind: Kind) =>
  Effect.gen(function*() {
    const s = yield* Scenario.make(`bench-nat-${kind}`)
    const tls = kind === "relayed-tls"
    const w = yield* world(s, kind === "relayed" || tls ? ["symmetric", "symmetric"] : ["cone", "cone"], { tls })
    const [homeA, homeB] = w.lab.homes as [NatLab.Home, NatLab.Home]
    if (tls) yield* blockUdpToPublic(w)
    const ice = tls
      ? ["--ice", w.turn.turnsUrl()]
      : ["--ice", w.turn.stunUrl, "--ice", w.turn.turnUrl(), ...(kind === "server-reflexive" ? ["--ice-ports", `${NatLab.ICE_PORTS.begin}-${NatLab.ICE_PORTS.end}`] : [])]
    const env: Record<string, string> = tls ? { NODE_EXTRA_CA_CERTS: w.turn.caFile! } : {}
    const idA = yield* s.id(s.path("a"))
    const idB = yield* s.id(s.path("b"))
    yield* agent(s, w, homeA, { name: "A", data: s.path("a"), peer: idB, ice, env })
    const out: Array<Round> = []
    for (let r = 0; r < rounds; r++) {
      const b = yield* Effect.scoped(
        Effect.gen(function*() {
          const b = yield* agent(s, w, kind === "host" ? homeA : homeB, { name: `B${r}`, data: s.path("b"), peer: idA, ice, env, adminPort: ADMIN_PORT + 1 })
          const reported = yield* reportedPath(s, b, "60 seconds")
          const registered = timeOf(b, /^signaling: registered/)
          const connected = Date.parse(reported.at)
          return { setupMillis: registered === undefined ? NaN : connected - registered, path: reported.kind, local: reported.local, remote: reported.remote }
        })
      )
      out.push(b)
      console.error(`bench nat: ${kind} round ${r + 1}/${rounds}: ${b.setupMillis} ms (${b.path}: ${b.local} <-> ${b.remote})`)
      yield* Effect.sleep(Duration.seconds(1))
    }
    return { kind, rounds: out, medianSetupMillis: median(out.map((x) => x.setupMillis)), allocations: w.turn.allocations(), tlsSessions: w.turn.streamSessions().tls }
  }).pipe(Effect.scoped)

const main = Effect.gen(function*() {
  const probe = yield* NatLab.canNat
  if (!probe.ok) {
    console.error(`bench nat: skipped: ${probe.reason}`)
    fs.writeFileSync(path.join(path.dirname(SELF), "results", "nat.json"), `${JSON.stringify({ when: new Date().toISOString(), skipped: probe.reason }, null, 2)}\n`)
    return
  }
  const results = []
  const only = arg("paths", "host,server-reflexive,relayed,relayed-tls").split(",")
  for (const kind of ["host", "server-reflexive", "relayed", "relayed-tls"] as const) if (only.includes(kind)) results.push(yield* measure(kind))
  console.log("path               median setup   rounds (ms)")
  for (const r of results) {
    console.log(`${r.kind.padEnd(18)} ${`${r.medianSetupMillis} ms`.padStart(13)}   ${r.rounds.map((x) => x.setupMillis).join(", ")}`)
  }
  const out = path.join(path.dirname(SELF), "results", "nat.json")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, `${JSON.stringify({ when: new Date().toISOString(), loadavg: os.loadavg(), results }, null, 2)}\n`)
})

await Effect.runPromise(main)
