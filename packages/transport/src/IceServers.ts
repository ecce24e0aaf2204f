/**
 * STUN and TURN servers as the operator gives them (`stun:`, `turn:`, `turns:` URLs with
 * credentials), checked against what the native library (libjuice) can use, handed to it in the
 * object form (no URL-encoding traps), and printed only redacted. Also how ICE went: the path a
 * link's selected candidate pair takes, and the library's TURN failures as one actionable line.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { IceServer as NativeIceServer } from "node-datachannel"

/** libjuice uses at most this many TURN servers and silently ignores the rest. */
export const MAX_TURN_SERVERS = 2

export interface IceServer {
  readonly kind: "stun" | "turn"
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
    : `turn:${server.username ?? ""}:***@${hostPort(server)}`

const hostPort = (server: IceServer) => `${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}`

const decode = (s: string): string | undefined => {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

/**
 * One URL: `stun:HOST[:PORT]` or `turn:USER:PASSWORD@HOST[:PORT][?transport=udp]` (user and
 * password percent-encoded when they hold `@`, `:` or `%`). `turns:`, `stuns:` and
 * `?transport=tcp` are refused: libjuice relays over UDP only and would drop them silently.
 */
export const parse = (url: string): Result.Result<IceServer, IceServerInvalid> => {
  const shown = redactUrl(url)
  const invalid = (detail: string) => Result.fail(new IceServerInvalid({ url: shown, detail }))
  const m = /^([a-z]+):(?:([^@]*)@)?(\[[0-9a-f:.]+\]|[^:/?@[\]]+)(?::(\d+))?(?:\?(.*))?$/i.exec(url.trim())
  if (m === null) return invalid("expected stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT] (percent-encode @ and : in the user or password)")
  const [, rawScheme = "", credentials, rawHost = "", rawPort, query] = m
  const scheme = rawScheme.toLowerCase()
  if (scheme === "turns" || scheme === "stuns") {
    return invalid(`${scheme}: (TLS) is not supported by the WebRTC library (libjuice relays over UDP only): use turn:...?transport=udp`)
  }
  if (scheme !== "stun" && scheme !== "turn") return invalid(`unknown scheme "${scheme}:" (stun: or turn:)`)
  const port = rawPort === undefined ? 3478 : Number(rawPort)
  if (!Number.isInteger(port) || port < 1 || port > 65535) return invalid(`port ${rawPort} is not 1-65535`)
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost
  if (query !== undefined && query !== "") {
    const transport = new URLSearchParams(query).get("transport")
    if (transport !== null && transport.toLowerCase() !== "udp") {
      return invalid(`transport=${transport} is not supported by the WebRTC library (libjuice relays over UDP only): use ?transport=udp`)
    }
  }
  if (scheme === "stun") {
    if (credentials !== undefined) return invalid("a stun: URL takes no credentials")
    return Result.succeed({ kind: "stun", host, port })
  }
  const colon = credentials?.indexOf(":") ?? -1
  if (credentials === undefined || colon <= 0 || colon === credentials.length - 1) {
    return invalid("a turn: URL needs USER:PASSWORD@ (long-term credentials, or TURN REST ones)")
  }
  const username = decode(credentials.slice(0, colon))
  const password = decode(credentials.slice(colon + 1))
  if (username === undefined || password === undefined) return invalid("bad percent-encoding in the user or password")
  return Result.succeed({ kind: "turn", host, port, username, password })
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

/** The library's configuration: TURN in the object form (credentials are not parsed again). */
export const toNative = (urls: ReadonlyArray<string>): Array<string | NativeIceServer> =>
  urls.flatMap((url): Array<string | NativeIceServer> => {
    const parsed = parse(url)
    if (Result.isFailure(parsed)) return [] // refused when the transport started
    const s = parsed.success
    return s.kind === "stun"
      ? [`stun:${hostPort(s)}`]
      : [{ hostname: s.host, port: s.port, username: s.username ?? "", password: s.password ?? "", relayType: "TurnUdp" as const }]
  })

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
  [/TURN transports TCP and TLS are not supported/, "TURN over TCP or TLS is not supported: use turn:...?transport=udp"],
  [/STUN server binding failed|STUN server address resolution failed/, "the STUN server did not answer: check the stun: host and port in --ice and that UDP gets out"]
]

let turnTrouble: { readonly text: string; readonly at: number } | undefined

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
  turnTrouble !== undefined && turnTrouble.at >= since ? turnTrouble.text : undefined

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
