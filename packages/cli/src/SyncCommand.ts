/**
 * `can-sync sync`: the agent. Opens the store (embedded by default, or a CAN HTTP service with
 * `--can-url`), loads the identity, joins the signaling server, and runs one PeerActor per
 * authenticated, allowed peer under the PeerManager. Progress on a terminal, structured logs
 * otherwise; admin endpoints with `--admin-port`; SIGINT/SIGTERM close everything and exit 0.
 */
import { InvalidInput, Metrics } from "@can-sync/core"
import type { CanStoreShape } from "@can-sync/core"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as PeerManager from "@can-sync/core/PeerManager"
import { EmbeddedStore, HttpStore } from "@can-sync/store"
import { Identity, isPeerId } from "@can-sync/transport/Identity"
import { Transport } from "@can-sync/transport/Transport"
import { Config, Effect, Metric, Option, Ref, Schedule, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import { readFile } from "node:fs/promises"
import * as Admin from "./Admin.ts"
import { dataFlag, jsonFlag, tokenFlag } from "./Config.ts"
import * as Duration from "./Duration.ts"
import * as Logging from "./Logging.ts"
import * as Progress from "./Progress.ts"
import * as Telemetry from "./Telemetry.ts"

/** `--peers-file`: one peer id per line; blank lines and `#` comments are ignored. */
const readPeersFile = (path: string) =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (error) => new InvalidInput({ message: `cannot read peers file ${path}: ${String(error)}` })
  }).pipe(Effect.map((text) =>
    text.split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "")
  ))

const allowList = (peers: ReadonlyArray<string>, file: Option.Option<string>) =>
  Effect.gen(function*() {
    const fromFile = Option.isSome(file) ? yield* readPeersFile(file.value) : []
    const all = [...new Set([...peers, ...fromFile].map((p) => p.trim().toLowerCase()))]
    const bad = all.filter((p) => !isPeerId(p))
    if (bad.length > 0) {
      return yield* new InvalidInput({ message: `not a peer id: ${bad.join(", ")} (see \`can-sync id\` on that machine)` })
    }
    return all
  })

const openStore = (data: string, canUrl: Option.Option<string>, token: Option.Option<string>) =>
  Option.isSome(canUrl)
    ? Option.isNone(token)
      ? Effect.fail(new InvalidInput({ message: "--can-url needs --token (or CAN_SYNC_TOKEN)" }))
      : HttpStore.make({ baseUrl: canUrl.value, token: token.value }).pipe(
        Effect.map((store): { store: CanStoreShape; stats: Option.Option<EmbeddedStore.EmbeddedStoreShape["stats"]> } => ({ store, stats: Option.none() }))
      )
    : EmbeddedStore.make({ dataDir: data }).pipe(Effect.map((store) => ({ store: store as CanStoreShape, stats: Option.some(store.stats) })))

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
}, (flags) =>
  Effect.gen(function*() {
    const pollInterval = yield* Duration.parse(flags.pollInterval)
    const allowed = yield* allowList(flags.peers, flags.peersFile)
    const identity = yield* Identity.loadOrCreate(flags.data)
    const { store, stats } = yield* openStore(flags.data, flags.canUrl, flags.token)
    const config = EngineConfig.make({ localPeerId: identity.peerId, pollInterval })
    const manager = yield* PeerManager.make(config, store)
    const transport = yield* Transport.make({
      signalingUrl: flags.signal,
      peers: allowed,
      rtc: {
        iceServers: flags.ice,
        bindAddress: Option.getOrUndefined(flags.bindAddress),
        mtu: Option.getOrUndefined(flags.mtu)
      }
    }).pipe(Effect.provideService(Identity, identity))
    const registered = yield* Ref.make(false)
    yield* Effect.forkScoped(transport.registered.pipe(Effect.andThen(Ref.set(registered, true))))

    if (Option.isSome(flags.adminPort)) {
      const admin = yield* Admin.serve({
        host: flags.adminHost,
        port: flags.adminPort.value,
        ready: Ref.get(registered),
        status: manager.sessions.pipe(Effect.map((sessions) => ({
          peerId: identity.peerId,
          peers: sessions.map((s) => ({ peer: s.peer, state: s.state, role: s.role, restarts: s.restarts, ...s.stats }))
        })))
      })
      yield* Effect.logInfo(`admin endpoints at ${admin.url}`)
    }

    // Every authenticated, allowed link runs one session; a newer link replaces an older one.
    yield* Effect.forkScoped(Stream.runForEach(transport.links, (link) =>
      manager.disconnect(link.remotePeer).pipe(
        Effect.andThen(manager.accept(link, link.role === "offerer" ? "dialer" : "acceptor")),
        Effect.catchTag("DuplicatePeer", (e) => Effect.logWarning(`refused a second session with ${e.peer}`))
      )))

    // Store size for the dashboard (embedded store only; a remote service reports its own).
    if (Option.isSome(stats)) {
      yield* Effect.forkScoped(stats.value.pipe(
        Effect.flatMap((s) =>
          Effect.all([Metric.update(Metrics.storeAssets, s.assets), Metric.update(Metrics.storeBytes, s.bytes)], { discard: true })
        ),
        Effect.catch(() => Effect.void),
        Effect.repeat(Schedule.spaced("10 seconds"))
      ))
    }

    const tty = process.stderr.isTTY === true && !flags.json
    yield* Effect.forkScoped(tty ? Progress.terminal(manager) : Progress.logLines(manager))
    yield* Effect.logInfo(
      `agent ${identity.peerId} syncing ${Option.getOrElse(flags.canUrl, () => flags.data)} with ${allowed.length} allowed peer(s) via ${flags.signal}`
    )
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide(Telemetry.layer),
    Effect.provide(Logging.layer({ json: flags.json ? true : "auto" }))
  )
).pipe(Command.withDescription("Run the sync agent: keep this store converged with its peers' over WebRTC"))
