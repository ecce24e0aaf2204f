/**
 * `can-sync sync`: its flags, a contract users script against. The agent itself (SyncAgent.ts,
 * with WebRTC, the engine and telemetry) is loaded only when this command runs, so the other
 * commands start fast and small.
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import { Command, Flag } from "effect/cli"
import { dataFlag, jsonFlag, tokenFlag } from "./Config.ts"

export const sync = Command.make("sync", {
  data: dataFlag,
  signal: Flag.String("signal").pipe(
    Flag.withDescription("Signaling server, ws://HOST:PORT (env CAN_SYNC_SIGNAL)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_SIGNAL"))
  ),
  peers: Flag.String("peer").pipe(Flag.withDescription("A peer id allowed to sync with this agent (repeatable)"), Flag.atLeast(0)),
  peersFile: Flag.String("peers-file").pipe(
    Flag.withDescription("File of allowed peer ids, one per line (env CAN_SYNC_PEERS_FILE)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_PEERS_FILE")),
    Flag.optional
  ),
  canUrl: Flag.String("can-url").pipe(
    Flag.withDescription("Sync a CAN HTTP service instead of the embedded store (env CAN_SYNC_CAN_URL)"),
    Flag.withFallbackConfig(Config.String("CAN_SYNC_CAN_URL")),
    Flag.optional
  ),
  token: tokenFlag,
  pollInterval: Flag.String("poll-interval").pipe(
    Flag.withDescription("Fallback incremental query of the store, in case an event was missed"),
    Flag.withDefault("30s")
  ),
  ice: Flag.String("ice").pipe(Flag.withDescription("STUN/TURN server, e.g. stun:stun.example.org:3478 (repeatable)"), Flag.atLeast(0)),
  bindAddress: Flag.String("bind-address").pipe(
    Flag.withDescription("Gather ICE candidates on this local address only (e.g. 127.0.0.1)"),
    Flag.optional
  ),
  mtu: Flag.Int("mtu").pipe(
    Flag.withDescription("SCTP path MTU; unset on real networks (4000 speeds up node agents on one host; browsers need the default)"),
    Flag.optional
  ),
  adminHost: Flag.String("admin-host").pipe(Flag.withDescription("Address of the admin endpoints"), Flag.withDefault("127.0.0.1")),
  adminPort: Flag.Int("admin-port").pipe(
    Flag.withDescription("Serve /healthz and /readyz on this port (env CAN_SYNC_ADMIN_PORT)"),
    Flag.withFallbackConfig(Config.Int("CAN_SYNC_ADMIN_PORT")),
    Flag.optional
  ),
  json: jsonFlag
}, (flags) => Effect.promise(() => import("./SyncAgent.ts")).pipe(Effect.flatMap((agent) => agent.run(flags)))
).pipe(Command.withDescription("Run the sync agent: keep this store converged with its peers' over WebRTC"))
