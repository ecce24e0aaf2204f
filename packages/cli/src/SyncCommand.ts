/**
 * `can-sync sync`: its flags, a contract users script against, checked as the command line is
 * parsed (`SyncFlags` is what they resolve to). The agent itself (SyncAgent.ts, with WebRTC, the
 * engine and telemetry) is loaded only when this command runs, so the other commands start fast.
 */
import * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import { CliError, Command, Flag } from "effect/cli"
import * as IceServers from "@can-sync/transport/IceServers"
import * as RateLimit from "@can-sync/transport/RateLimit"
import * as Result from "effect/Result"
import { dataFlag, duration, jsonFlag, optionalFileFlag, parseDuration, port, tokenFlag, url, within } from "./SharedFlags.ts"

/** The resolved flags of `can-sync sync`. */
export interface SyncFlags {
  readonly data: string
  /** A ws:// or wss:// URL. */
  readonly signal: string
  readonly peers: ReadonlyArray<string>
  /** A readable file. */
  readonly peersFile: Option.Option<string>
  /** An http:// or https:// URL. */
  readonly canUrl: Option.Option<string>
  readonly token: Option.Option<Redacted.Redacted<string>>
  readonly pollInterval: Duration.Duration
  /** Checked STUN/TURN URLs (never logged unredacted); `--ice-file` adds more when the agent starts. */
  readonly ice: ReadonlyArray<string>
  /** A readable file of ICE URLs, one per line (keeps TURN credentials out of the command line). */
  readonly iceFile: Option.Option<string>
  readonly iceRelayOnly: boolean
  readonly icePorts: Option.Option<{ readonly begin: number; readonly end: number }>
  readonly bindAddress: Option.Option<string>
  readonly mtu: Option.Option<number>
  /** Bandwidth limits, bytes per second: all peers together, and each peer. */
  readonly maxSendRate: Option.Option<number>
  readonly maxRecvRate: Option.Option<number>
  readonly maxSendRatePerPeer: Option.Option<number>
  readonly maxRecvRatePerPeer: Option.Option<number>
  readonly adminHost: string
  readonly adminPort: Option.Option<number>
  /** End the process when its main thread has not run this long (none: `--watchdog off`). */
  readonly watchdog: Option.Option<Duration.Duration>
  readonly json: boolean
}

/** A bandwidth limit: 10MB/s, 512KiB/s, 1000000 (bytes per second), optionally from the environment. */
const rateFlag = (name: string, description: string, env?: string) => {
  const flag = Flag.String(name).pipe(Flag.withDescription(description))
  return (env === undefined ? flag : flag.pipe(Flag.withFallbackConfig(Config.String(env)))).pipe(
    Flag.filterMap(
      (text) => Option.fromUndefinedOr(RateLimit.parseRate(text)),
      () => "a rate such as 10MB/s, 512KiB/s or 1000000 (bytes per second)"
    ),
    Flag.optional
  )
}

/** The flags of `sync`, each checked as it parses. */
export const syncFlags = {
  data: dataFlag,
  signal: Flag.String("signal").pipe(
    Flag.withDescription("Signaling server, ws://HOST:PORT (env CAN_SYNC_SIGNAL)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_SIGNAL")),
    url(["ws:", "wss:"], "ws://127.0.0.1:7777")
  ),
  peers: Flag.String("peer").pipe(Flag.withDescription("A peer id allowed to sync with this agent (repeatable)"), Flag.atLeast(0)),
  peersFile: optionalFileFlag("peers-file", "CAN_SYNC_PEERS_FILE", "File of allowed peer ids, one per line"),
  canUrl: Flag.String("can-url").pipe(
    Flag.withDescription("Sync a CAN HTTP service instead of the embedded store (env CAN_SYNC_CAN_URL)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_CAN_URL")),
    url(["http:", "https:"], "http://127.0.0.1:7650"),
    Flag.optional
  ),
  token: tokenFlag,
  pollInterval: Flag.String("poll-interval").pipe(
    Flag.withDescription("Fallback incremental query of the store, in case an event was missed (30s, 500ms, 2m, 1h)"),
    Flag.withDefault("30s"),
    duration
  ),
  ice: Flag.String("ice").pipe(
    Flag.withDescription(
      "STUN/TURN server: stun:HOST[:PORT], turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp] or turns:USER:PASSWORD@HOST[:PORT] (TLS, default port 5349) (repeatable; at most 2 TURN servers; percent-encode @ and : in credentials; env CAN_SYNC_ICE, space-separated)"
    ),
    Flag.atLeast(0),
    Flag.mapEffect((given) =>
      Effect.gen(function*() {
        // a repeated flag has no fallback of its own: the environment is read when none is given
        const urls = given.length > 0
          ? given
          : (yield* Config.String("CAN_SYNC_ICE").pipe(Config.withDefault(""), Effect.orElseSucceed(() => ""))).split(/\s+/).filter((u) => u !== "")
        const checked = IceServers.parseAll(urls)
        return Result.isSuccess(checked)
          ? urls
          : yield* new CliError.InvalidValue({ option: "ice", value: checked.failure.url, expected: checked.failure.detail, kind: "flag" })
      })
    )
  ),
  iceFile: optionalFileFlag(
    "ice-file",
    "CAN_SYNC_ICE_FILE",
    "File of --ice URLs, one per line, # comments (keeps TURN credentials off the command line)"
  ),
  iceRelayOnly: Flag.Boolean("ice-relay-only").pipe(
    Flag.withDescription("Offer peers only TURN-relayed candidates (needs a turn: server in --ice)"),
    Flag.withDefault(false)
  ),
  icePorts: Flag.String("ice-ports").pipe(
    Flag.withDescription("Local UDP port range for ICE, MIN-MAX (e.g. 40000-40100, for firewalls and containers)"),
    Flag.filterMap((s) => Result.getSuccess(IceServers.parsePortRange(s)), () => "a port range MIN-MAX with 1024 <= MIN < MAX <= 65535"),
    Flag.optional
  ),
  bindAddress: Flag.String("bind-address").pipe(
    Flag.withDescription("Gather ICE candidates on this local address only (e.g. 127.0.0.1)"),
    Flag.optional
  ),
  mtu: Flag.Int("mtu").pipe(
    Flag.withDescription("SCTP path MTU, 1200 to 65535; unset on real networks (4000 speeds up node agents on one host; browsers need the default)"),
    within(1200, 65535),
    Flag.optional
  ),
  maxSendRate: rateFlag("max-send-rate", "The most this agent sends, all peers together, e.g. 10MB/s (env CAN_SYNC_MAX_SEND_RATE)", "CAN_SYNC_MAX_SEND_RATE"),
  maxRecvRate: rateFlag("max-recv-rate", "The most this agent receives, all peers together, e.g. 10MB/s (env CAN_SYNC_MAX_RECV_RATE)", "CAN_SYNC_MAX_RECV_RATE"),
  maxSendRatePerPeer: rateFlag("max-send-rate-per-peer", "The most this agent sends to each peer, e.g. 2MB/s"),
  maxRecvRatePerPeer: rateFlag("max-recv-rate-per-peer", "The most this agent receives from each peer, e.g. 2MB/s (the peer is held back through credit)"),
  adminHost: Flag.String("admin-host").pipe(Flag.withDescription("Address of the admin endpoints"), Flag.withDefault("127.0.0.1")),
  adminPort: Flag.Int("admin-port").pipe(
    Flag.withDescription("Serve /healthz and /readyz on this port (env CAN_SYNC_ADMIN_PORT)"),
    Flag.withFallbackConfig(Config.Int("CAN_SYNC_ADMIN_PORT")),
    port,
    Flag.optional
  ),
  watchdog: Flag.String("watchdog").pipe(
    Flag.withDescription(
      "End the process when its main thread has not run this long, a hang in native code, so that a supervisor restarts it; off to disable (default 60s; env CAN_SYNC_WATCHDOG)"
    ),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_WATCHDOG")),
    Flag.withDefault("60s"),
    Flag.filterMap(
      (s) => (s.trim() === "off" ? Option.some(Option.none()) : Option.map(parseDuration(s), Option.some)),
      () => "a positive duration such as 60s or 5m, or off"
    )
  ),
  json: jsonFlag
}

export const sync = Command.make("sync", syncFlags, (flags: SyncFlags) => Effect.promise(() => import("./SyncAgent.ts")).pipe(Effect.flatMap((agent) => agent.run(flags)))
).pipe(Command.withDescription("Run the sync agent: keep this store converged with its peers' over WebRTC"))
