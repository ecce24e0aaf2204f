/**
 * Debian's coturn as the NAT lab's STUN and TURN server: started by the test in the public
 * namespace with long-term credentials generated per run, its verbose log kept (allocations,
 * refused credentials), and restartable on the same address and port ("TURN went away").
 * With `tls`, it also takes TLS on 5349 with a server certificate from a throwaway CA (openssl).
 */
import { Effect, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import type { TimedOut, GaveUp } from "../kit/Eventually.ts"
import { type Child, type CommandFailed, type CommandTimedOut, runOk, spawn } from "../kit/Process.ts"
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
  /** With `tls`: the CA file that signed coturn's certificate (an agent's NODE_EXTRA_CA_CERTS), the turns: URL, TURN over TCP */
  readonly caFile: string | undefined
  readonly turnsUrl: () => string
  readonly turnTcpUrl: () => string
  /** Sessions over TLS and plain TCP connections coturn accepted so far, from its log. */
  readonly streamSessions: () => { readonly tls: number; readonly tcp: number }
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
export const TLS_PORT = 5349

/**
 * A throwaway CA and a server certificate it signed for `address` (IP SAN), in `dir`: EC P-256,
 * valid one day. Gives the CA file and the server's certificate and key files.
 */
export const testCertificates = (dir: string, address: string): Effect.Effect<{ readonly ca: string; readonly cert: string; readonly key: string }, CommandFailed | CommandTimedOut> =>
  Effect.gen(function*() {
    const file = (name: string) => join(dir, name)
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    yield* runOk("openssl", ["req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "1", "-subj", "/CN=can-sync test CA"])
    yield* runOk("openssl", ["req", ...ec, "-keyout", file("turn.key"), "-out", file("turn.csr"), "-subj", `/CN=${address}`])
    writeFileSync(file("turn.ext"), `basicConstraints=CA:FALSE\nsubjectAltName=IP:${address}\nextendedKeyUsage=serverAuth\n`)
    yield* runOk("openssl", ["x509", "-req", "-in", file("turn.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial", "-out", file("turn.pem"), "-days", "1", "-extfile", file("turn.ext")])
    return { ca: file("ca.pem"), cert: file("turn.pem"), key: file("turn.key") }
  })

export const make = (ns: Namespace, address: string, dir: string, options: { readonly tls?: boolean } = {}): Effect.Effect<Coturn, TimedOut | GaveUp | CommandFailed | CommandTimedOut, Scope.Scope> =>
  Effect.gen(function*() {
    const credentials = generateCredentials()
    const port = 3478
    const instances: Array<Child> = []
    const certificates = options.tls === true ? yield* testCertificates(dir, address) : undefined
    const argv = [
      "netns", "exec", ns.name, "turnserver", "-n",
      `--listening-ip=${address}`, `--relay-ip=${address}`, `--listening-port=${port}`,
      "--lt-cred-mech", `--user=${credentials.username}:${credentials.password}`, `--realm=${credentials.realm}`,
      ...(certificates === undefined ? ["--no-tls"] : [`--cert=${certificates.cert}`, `--pkey=${certificates.key}`, `--tls-listening-port=${TLS_PORT}`]),
      "--no-dtls", "--fingerprint", "--no-cli", "--no-multicast-peers",
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
    const secret = (c: { readonly username: string; readonly password: string }) => `${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}`
    const coturn: Coturn = {
      address,
      port,
      credentials,
      stunUrl: `stun:${address}:${port}`,
      turnUrl: (c = credentials) => `turn:${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@${address}:${port}?transport=udp`,
      caFile: certificates?.ca,
      turnsUrl: () => `turns:${secret(credentials)}@${address}:${TLS_PORT}`,
      turnTcpUrl: () => `turn:${secret(credentials)}@${address}:${port}?transport=tcp`,
      streamSessions: () => {
        // a session over TLS names its cipher; every TCP or TLS connection is "tcp or tls connected to"
        const tls = (log().match(/: new, realm=.*cipher=.*method=TLS/g) ?? []).length
        return { tls, tcp: (log().match(/tcp or tls connected to/g) ?? []).length - tls }
      },
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
