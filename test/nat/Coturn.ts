/**
 * Debian's coturn as the NAT lab's STUN and TURN server: started by the test in the public
 * namespace with long-term credentials generated per run, its verbose log kept (allocations,
 * refused credentials), and restartable on the same address and port ("TURN went away").
 */
import { Effect, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import type { TimedOut, GaveUp } from "../kit/Eventually.ts"
import { type Child, spawn } from "../kit/Process.ts"
import type { Namespace } from "../netlab/Netlab.ts"

export interface TurnCredentials {
  readonly username: string
  readonly password: string
  readonly realm: string
}

/** Fresh credentials for this run (the password is URL-safe base64: no percent-encoding needed). */
export const generateCredentials = (): TurnCredentials => ({
  username: `agent-${randomBytes(4).toString("hex")}`,
  password: randomBytes(18).toString("base64url"),
  realm: "can-sync.test"
})

export interface Coturn {
  readonly address: string
  readonly port: number
  readonly credentials: TurnCredentials
  /** `--ice` URLs: the STUN one, and TURN with these (or other) credentials */
  readonly stunUrl: string
  readonly turnUrl: (credentials?: { readonly username: string; readonly password: string }) => string
  /** Every instance's log so far (restarts included), oldest first. */
  readonly log: () => string
  /** Allocations coturn granted so far, from its own log. */
  readonly allocations: () => number
  /** Stops the server (SIGKILL: a crash, not a goodbye) until `start`. */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same address, port and credentials; waits until it listens. */
  readonly start: Effect.Effect<void, TimedOut | GaveUp, Scope.Scope>
}

/**
 * coturn on `address`:3478 in `ns`, for the length of the scope. Private ranges are denied as
 * relay peers (coturn's own advice, and without it a check to an unroutable private address
 * makes coturn drop the whole allocation: /tmp/coord/h7.md); the lab's 100.64/10 stays allowed.
 */
export const make = (ns: Namespace, address: string, dir: string): Effect.Effect<Coturn, TimedOut | GaveUp, Scope.Scope> =>
  Effect.gen(function*() {
    const credentials = generateCredentials()
    const port = 3478
    const instances: Array<Child> = []
    const argv = [
      "netns", "exec", ns.name, "turnserver", "-n",
      `--listening-ip=${address}`, `--relay-ip=${address}`, `--listening-port=${port}`,
      "--lt-cred-mech", `--user=${credentials.username}:${credentials.password}`, `--realm=${credentials.realm}`,
      "--no-tls", "--no-dtls", "--fingerprint", "--no-cli", "--no-multicast-peers",
      "--denied-peer-ip=10.0.0.0-10.255.255.255", "--denied-peer-ip=172.16.0.0-172.31.255.255",
      "--denied-peer-ip=192.168.0.0-192.168.255.255",
      `--pidfile=${join(dir, "turnserver.pid")}`, `--userdb=${join(dir, "turndb")}`,
      "--log-file=stdout", "--simple-log", "-v"
    ]
    const start = Effect.gen(function*() {
      const child = yield* spawn("ip", argv, { name: "coturn", grace: "2 seconds" })
      instances.push(child)
      yield* child.waitFor("stdout", /UDP listener opened on/, "30 seconds")
    })
    yield* start
    const log = () => instances.map((c) => c.stdout).join("\n")
    const coturn: Coturn = {
      address,
      port,
      credentials,
      stunUrl: `stun:${address}:${port}`,
      turnUrl: (c = credentials) => `turn:${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@${address}:${port}?transport=udp`,
      log,
      allocations: () => (log().match(/ALLOCATE processed, success/g) ?? []).length,
      kill: Effect.suspend(() => {
        const running = instances.filter((c) => c.running)
        return Effect.forEach(running, (c) => c.stop("SIGKILL", "2 seconds"), { discard: true })
      }),
      start
    }
    return coturn
  })
