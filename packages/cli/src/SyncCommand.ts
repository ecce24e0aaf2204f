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
import { Command, Flag } from "effect/cli"
import { dataFlag, duration, jsonFlag, port, readableFile, tokenFlag, url, within } from "./SharedFlags.ts"

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
  readonly ice: ReadonlyArray<string>
  readonly bindAddress: Option.Option<string>
  readonly mtu: Option.Option<number>
  readonly adminHost: string
  readonly adminPort: Option.Option<number>
  readonly json: boolean
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
  peersFile: Flag.File("peers-file", { mustExist: true }).pipe(
    Flag.withDescription("File of allowed peer ids, one per line (env CAN_SYNC_PEERS_FILE)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_PEERS_FILE")),
    readableFile("peers-file"),
    Flag.optional
  ),
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
  ice: Flag.String("ice").pipe(Flag.withDescription("STUN/TURN server, e.g. stun:stun.example.org:3478 (repeatable)"), Flag.atLeast(0)),
  bindAddress: Flag.String("bind-address").pipe(
    Flag.withDescription("Gather ICE candidates on this local address only (e.g. 127.0.0.1)"),
    Flag.optional
  ),
  mtu: Flag.Int("mtu").pipe(
    Flag.withDescription("SCTP path MTU, 1200 to 65535; unset on real networks (4000 speeds up node agents on one host; browsers need the default)"),
    within(1200, 65535),
    Flag.optional
  ),
  adminHost: Flag.String("admin-host").pipe(Flag.withDescription("Address of the admin endpoints"), Flag.withDefault("127.0.0.1")),
  adminPort: Flag.Int("admin-port").pipe(
    Flag.withDescription("Serve /healthz and /readyz on this port (env CAN_SYNC_ADMIN_PORT)"),
    Flag.withFallbackConfig(Config.Int("CAN_SYNC_ADMIN_PORT")),
    port,
    Flag.optional
  ),
  json: jsonFlag
}

export const sync = Command.make("sync", syncFlags, (flags: SyncFlags) => Effect.promise(() => import("./SyncAgent.ts")).pipe(Effect.flatMap((agent) => agent.run(flags)))
).pipe(Command.withDescription("Run the sync agent: keep this store converged with its peers' over WebRTC"))
