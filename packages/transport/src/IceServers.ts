/**
 * STUN and TURN servers as the operator gives them (`stun:`, `turn:`, `turns:` URLs with
 * credentials), checked against what the native library (libjuice) can use, handed to it in the
 * object form (no URL-encoding traps; TURN over TCP or TLS as the local UDP port of its
 * TurnStreamBridge), and printed only redacted. Also how ICE went: the path a link's selected
 * candidate pair takes, and TURN failures (the library's and the bridges') as one actionable line.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { IceServer as NativeIceServer } from "node-datachannel"

/** libjuice uses at most this many TURN servers and silently ignores the rest. */
export const MAX_TURN_SERVERS = 2

/** How the agent reaches a TURN server: UDP (libjuice itself), TCP or TLS (through a TurnStreamBridge). */
export type TurnTransport = "udp" | "tcp" | "tls"

export interface IceServer {
  readonly kind: "stun" | "turn"
  /** "udp" for stun:; for turn: from `?transport=` (default udp); "tls" for turns: */
  readonly transport: TurnTransport
  readonly host: string
  readonly port: number
  readonly username?: string | undefined
  readonly password?: string | undefined
}

/** An `--ice` URL the agent cannot use; the URL in it is already redacted. */
export class IceServerInvalid extends Schema.TaggedError<IceServerInvalid>()("IceServerInvalid", {
  url: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `ICE server ${this.url}: ${this.detail}`
  }
}

/** The URL with its password (and any query) replaced: safe for logs and errors. */
export const redactUrl = (url: string): string => {
  const m = /^([a-z]+):(?:([^:@]*)(?::[^@]*)?@)?([^?]*)/i.exec(url.trim())
  if (m === null) return "(unparsable ICE URL)"
  const [, scheme = "", user, rest = ""] = m
  return user === undefined ? `${scheme}:${rest}` : `${scheme}:${user}:***@${rest}`
}

/** How a parsed server is shown in logs (never its password). */
export const describe = (server: IceServer): string =>
  server.kind === "stun"
    ? `stun:${hostPort(server)}`
    : server.transport === "tls"
    ? `turns:${server.username ?? ""}:***@${hostPort(server)}`
    : `turn:${server.username ?? ""}:***@${hostPort(server)}${server.transport === "tcp" ? "?transport=tcp" : ""}`

/** A TURN server the agent reaches over a stream (TCP or TLS): libjuice gets it through a bridge. */
export const isStream = (server: IceServer): boolean => server.kind === "turn" && server.transport !== "udp"

const hostPort = (server: IceServer) => `${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}`

const decode = (s: string): string | undefined => {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

/**
 * One URL: `stun:HOST[:PORT]`, `turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]` or
 * `turns:USER:PASSWORD@HOST[:PORT]` (TLS, default port 5349; user and password percent-encoded
 * when they hold `@`, `:` or `%`). `stuns:` is refused: STUN over TLS finds no address UDP can use.
 */
export const parse = (url: string): Result.Result<IceServer, IceServerInvalid> => {
  const shown = redactUrl(url)
  const invalid = (detail: string) => Result.fail(new IceServerInvalid({ url: shown, detail }))
  const m = /^([a-z]+):(?:([^@]*)@)?(\[[0-9a-f:.]+\]|[^:/?@[\]]+)(?::(\d+))?(?:\?(.*))?$/i.exec(url.trim())
  if (m === null) return invalid("expected stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT] (percent-encode @ and : in the user or password)")
  const [, rawScheme = "", credentials, rawHost = "", rawPort, query] = m
  const scheme = rawScheme.toLowerCase()
  if (scheme === "stuns") {
    return invalid("stuns: (STUN over TLS) is not supported: a STUN address learnt over TLS is no use to UDP; use stun: (or turns: to get through a firewall)")
  }
  if (scheme !== "stun" && scheme !== "turn" && scheme !== "turns") return invalid(`unknown scheme "${scheme}:" (stun:, turn: or turns:)`)
  const port = rawPort === undefined ? (scheme === "turns" ? 5349 : 3478) : Number(rawPort)
  if (!Number.isInteger(port) || port < 1 || port > 65535) return invalid(`port ${rawPort} is not 1-65535`)
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost
  let transport: TurnTransport = scheme === "turns" ? "tls" : "udp"
  if (query !== undefined && query !== "") {
    const wanted = new URLSearchParams(query).get("transport")?.toLowerCase()
    if (wanted !== undefined) {
      if (scheme === "stun") return invalid("a stun: URL takes no transport (STUN is UDP)")
      if (wanted !== "udp" && wanted !== "tcp") return invalid(`transport=${wanted} is not one of udp, tcp`)
      if (scheme === "turns" && wanted !== "tcp") return invalid("turns: runs over TLS on TCP: drop ?transport=udp")
      if (scheme === "turn") transport = wanted
    }
  }
  if (scheme === "stun") {
    if (credentials !== undefined) return invalid("a stun: URL takes no credentials")
    return Result.succeed({ kind: "stun", transport: "udp", host, port })
  }
  const colon = credentials?.indexOf(":") ?? -1
  if (credentials === undefined || colon <= 0 || colon === credentials.length - 1) {
    return invalid(`a ${scheme}: URL needs USER:PASSWORD@ (long-term credentials, or TURN REST ones)`)
  }
  const username = decode(credentials.slice(0, colon))
  const password = decode(credentials.slice(colon + 1))
  if (username === undefined || password === undefined) return invalid("bad percent-encoding in the user or password")
  return Result.succeed({ kind: "turn", transport, host, port, username, password })
}

export interface ParsedIceServers {
  readonly servers: ReadonlyArray<IceServer>
  /** Redacted, for the startup log line. */
  readonly shown: ReadonlyArray<string>
}

/** Every URL, or the first that cannot be used; more than two TURN servers is refused too. */
export const parseAll = (urls: ReadonlyArray<string>): Result.Result<ParsedIceServers, IceServerInvalid> => {
  const servers: Array<IceServer> = []
  for (const url of urls) {
    const parsed = parse(url)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    servers.push(parsed.success)
  }
  const turns = servers.filter((s) => s.kind === "turn")
  if (turns.length > MAX_TURN_SERVERS) {
    return Result.fail(
      new IceServerInvalid({
        url: turns.map(describe).join(", "),
        detail: `at most ${MAX_TURN_SERVERS} TURN servers are used by the WebRTC library (libjuice); give no more`
      })
    )
  }
  return Result.succeed({ servers, shown: servers.map(describe) })
}

/**
 * The library's configuration: TURN in the object form (credentials are not parsed again). A TURN
 * server over TCP or TLS is given as UDP TURN at 127.0.0.1 on its bridge's port (`bridges`, by
 * URL, from TurnStreamBridge); without a bridge it is left out.
 */
export const toNative = (urls: ReadonlyArray<string>, bridges?: ReadonlyMap<string, number>): Array<string | NativeIceServer> =>
  urls.flatMap((url): Array<string | NativeIceServer> => {
    const parsed = parse(url)
    if (Result.isFailure(parsed)) return [] // refused when the transport started
    const s = parsed.success
    if (s.kind === "stun") return [`stun:${hostPort(s)}`]
    const bridge = isStream(s) ? bridges?.get(url) : undefined
    if (isStream(s) && bridge === undefined) return []
    return [{
      hostname: bridge === undefined ? s.host : BRIDGE_ADDRESS,
      port: bridge ?? s.port,
      username: s.username ?? "",
      password: s.password ?? "",
      relayType: "TurnUdp" as const
    }]
  })

/** Where the TURN stream bridges listen for libjuice's datagrams. */
export const BRIDGE_ADDRESS = "127.0.0.1"

export const hasTurn = (urls: ReadonlyArray<string>): boolean =>
  urls.some((url) => {
    const parsed = parse(url)
    return Result.isSuccess(parsed) && parsed.success.kind === "turn"
  })

/** `MIN-MAX` → a UDP port range (at least 2 ports: each connection takes one). */
export const parsePortRange = (text: string): Result.Result<{ readonly begin: number; readonly end: number }, string> => {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim())
  if (m === null) return Result.fail(`expected MIN-MAX, e.g. 40000-40100 (got "${text}")`)
  const begin = Number(m[1])
  const end = Number(m[2])
  if (begin < 1024 || end > 65535 || begin >= end) return Result.fail(`expected 1024 <= MIN < MAX <= 65535 (got ${begin}-${end})`)
  return Result.succeed({ begin, end })
}

// ---- the path a link takes --------------------------------------------------------------------

/** host: both on one network; server-reflexive: straight through NATs (STUN); relayed: through TURN. */
export type PathKind = "host" | "server-reflexive" | "relayed"

export interface IcePath {
  readonly kind: PathKind
  /** The selected pair's candidate types as the library reports them (host, srflx, prflx, relay). */
  readonly local: string
  readonly remote: string
  readonly localAddress: string
  readonly remoteAddress: string
}

interface SelectedPair {
  readonly local: { readonly type: string; readonly address: string; readonly port: number }
  readonly remote: { readonly type: string; readonly address: string; readonly port: number }
}

/** The path of a selected candidate pair: relayed if either end is a TURN relay. */
export const pathOf = (pair: SelectedPair | null | undefined): IcePath | undefined => {
  if (pair === null || pair === undefined) return undefined
  const types = [pair.local.type, pair.remote.type]
  const kind: PathKind = types.includes("relay")
    ? "relayed"
    : types.some((t) => t === "srflx" || t === "prflx")
    ? "server-reflexive"
    : "host"
  return {
    kind,
    local: pair.local.type,
    remote: pair.remote.type,
    localAddress: `${pair.local.address}:${pair.local.port}`,
    remoteAddress: `${pair.remote.address}:${pair.remote.port}`
  }
}

export const describePath = (path: IcePath): string =>
  `${path.kind} (local ${path.local} ${path.localAddress} <-> remote ${path.remote} ${path.remoteAddress})`

/** The candidate type in an `a=candidate:` line (host, srflx, prflx, relay). */
export const candidateType = (candidate: string): string | undefined => / typ ([a-z]+)/.exec(candidate)?.[1]

// ---- TURN trouble, from the library's log -----------------------------------------------------

/** The library's own lines about TURN, and what the operator should do about each. */
const turnLines: ReadonlyArray<readonly [RegExp, string]> = [
  [/TURN authentication failed/, "TURN refused the credentials: check the user and password in --ice"],
  [/TURN address resolution failed/, "the TURN server's address does not resolve: check the host in --ice (a password holding @ or : must be percent-encoded)"],
  [/TURN allocation failed/, "the TURN server refused or dropped the relay allocation: check the server's log and its quota"],
  [/TURN transports TCP and TLS are not supported/, "the WebRTC library was handed TURN over TCP or TLS directly (a bug: it goes through the agent's bridge)"],
  [/STUN server binding failed|STUN server address resolution failed/, "the STUN server did not answer: check the stun: host and port in --ice and that UDP gets out"]
]

let turnTrouble: { readonly text: string; readonly at: number } | undefined
/** The bridges' trouble (TCP or TLS to a TURN server): more precise than what libjuice says after it. */
let streamTrouble: { readonly text: string; readonly at: number } | undefined

/** A TurnStreamBridge could not reach its server (refused, TLS handshake or certificate): the operator's line. */
export const noteStreamTrouble = (text: string, now: number): void => {
  streamTrouble = { text, at: now }
}

/** The bridges' local ports and the redacted URL each stands for: the library's lines name the former. */
const bridgeNames = new Map<string, string>()

export const nameBridge = (port: number, shown: string): void => {
  bridgeNames.set(`${BRIDGE_ADDRESS}:${port}`, shown)
}

export const forgetBridge = (port: number): void => {
  bridgeNames.delete(`${BRIDGE_ADDRESS}:${port}`)
}

/** A library line with each bridge's local address replaced by the TURN server it stands for. */
export const unbridge = (message: string): string =>
  bridgeNames.size === 0 ? message : message.replace(/127\.0\.0\.1:(\d+)/g, (local) => bridgeNames.get(local) ?? local)

/**
 * Reads one library log line; if it is about TURN or STUN trouble, remembers the operator's version
 * (what connect failures then report) and returns it, so the raw line can be shown at debug only.
 */
export const noteLibraryLine = (message: string, now: number): string | undefined => {
  for (const [pattern, text] of turnLines) {
    if (pattern.test(message)) {
      turnTrouble = { text, at: now }
      return text
    }
  }
  return undefined
}

/** The latest TURN/STUN trouble the library reported since `since` (ms since epoch), if any. */
export const troubleSince = (since: number): string | undefined =>
  streamTrouble !== undefined && streamTrouble.at >= since
    ? streamTrouble.text
    : turnTrouble !== undefined && turnTrouble.at >= since
    ? turnTrouble.text
    : undefined

/** What the last reported trouble was, to log a line only when it changes (then `undefined` once solved). */
let reported: string | undefined

/** Returns the line to log when the TURN state changed since the last report (once per change). */
export const reportTurnState = (trouble: string | undefined, servers: string): string | undefined => {
  if (trouble === reported) return undefined
  const previous = reported
  reported = trouble
  return trouble !== undefined
    ? `ICE: ${servers}: ${trouble}; no relayed path until this is fixed`
    : previous !== undefined
    ? `ICE: ${servers}: relay allocated again`
    : undefined
}
