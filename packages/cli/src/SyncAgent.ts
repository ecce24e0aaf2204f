/**
 * The agent behind `can-sync sync` (loaded only when that command runs). Opens the store
 * (embedded by default, or a CAN HTTP service with `--can-url`), loads the identity, joins the
 * signaling server, and has the PeerManager dial every allowed peer through the transport (the
 * manager owns retries and backoff; the transport makes one attempt per connect). Progress on a
 * terminal, structured logs otherwise; admin endpoints with `--admin-port`; SIGINT/SIGTERM close
 * everything and exit 0; a watchdog thread ends the process if its main thread stops running.
 */
import { InvalidInput, Metrics } from "@can-sync/core"
import type { CanStoreShape, PeerId } from "@can-sync/core"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as PeerManager from "@can-sync/core/PeerManager"
import * as Status from "@can-sync/core/Status"
import { EmbeddedStore, HttpStore } from "@can-sync/store"
import { Identity, isPeerId } from "@can-sync/transport/Identity"
import type { PeerIdentity } from "@can-sync/transport/Identity"
import { Transport } from "@can-sync/transport/Transport"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { readFile } from "node:fs/promises"
import * as Admin from "./Admin.ts"
import * as HeapTuning from "./HeapTuning.ts"
import { UsageError } from "./Errors.ts"
import * as AgentMetrics from "./AgentMetrics.ts"
import * as Logging from "./Logging.ts"
import * as Progress from "./Progress.ts"
import * as Prometheus from "./Prometheus.ts"
import * as StatusPage from "./StatusPage.ts"
import type { SyncFlags } from "./SyncCommand.ts"
import * as Telemetry from "./Telemetry.ts"
import { version } from "./Version.ts"
import * as Watchdog from "./Watchdog.ts"

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
      return yield* new UsageError({ reason: `not a peer id: ${bad.join(", ")} (\`can-sync id\` on that machine prints its id)` })
    }
    return all.filter(isPeerId)
  })

/** `--ice-file`: one ICE URL per line; blank lines and `#` comments are ignored (never echoed: credentials). */
const readIceFile = (path: Option.Option<string>) =>
  Option.isNone(path)
    ? Effect.succeed([])
    : Effect.tryPromise({
      try: () => readFile(path.value, "utf8"),
      catch: (error) => new InvalidInput({ message: `cannot read ICE file ${path.value}: ${String(error)}` })
    }).pipe(Effect.map((text) => text.split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "")))

const openStore = (data: string, canUrl: Option.Option<string>, token: Option.Option<Redacted.Redacted<string>>) =>
  Option.isSome(canUrl)
    ? Option.isNone(token)
      ? Effect.fail(new UsageError({ reason: "--can-url needs --token (or CAN_SYNC_TOKEN): the CAN service's bearer token" }))
      : HttpStore.make({ baseUrl: canUrl.value, token: Redacted.value(token.value) }).pipe(
        Effect.map((store): { store: CanStoreShape; stats: Option.Option<EmbeddedStore.EmbeddedStoreShape["stats"]> } => ({ store, stats: Option.none() }))
      )
    : EmbeddedStore.make({ dataDir: data, lock: true }).pipe(Effect.map((store) => ({ store: store as CanStoreShape, stats: Option.some(store.stats) })))

/**
 * On a terminal (and without --json) the bottom of the screen is a live status block, and log
 * lines go above it through the same region, so neither overwrites the other.
 */
const terminalRegion = (flags: SyncFlags): Progress.LiveRegion | undefined =>
  process.stderr.isTTY === true && !flags.json
    ? Progress.makeRegion({ columns: terminalColumns, write: (text) => process.stderr.write(text) })
    : undefined

/**
 * The terminal's width now, asked of the terminal (Node's `_refreshSize`, an ioctl) rather than
 * the value cached at the last SIGWINCH: a block drawn for the old width after a resize but before
 * the signal is handled would wrap, and leave rows behind.
 */
const terminalColumns = (): number => {
  const refresh: unknown = Reflect.get(process.stderr, "_refreshSize")
  if (typeof refresh === "function") Reflect.apply(refresh, process.stderr, [])
  return process.stderr.columns ?? 80
}

export const run = (flags: SyncFlags) => {
  HeapTuning.tuneForStreaming()
  const region = terminalRegion(flags)
  // JSON lines unless a terminal shows the live block; the watchdog writes its line the same way
  const json = region === undefined && (flags.json || Logging.jsonByDefault())
  const logging = region === undefined
    ? Logging.layer({ json })
    : Logging.layer({ json: false, write: region.log, colors: !Logging.noColor() })
  return Effect.gen(function*() {
    if (Option.isSome(flags.watchdog)) yield* Watchdog.watch(flags.watchdog.value, { json })
    const allowed = yield* allowList(flags.peers, flags.peersFile)
    const identity = yield* Identity.loadOrCreate(flags.data)
    // telemetry's service.instance.id is the peer id: the same series across restarts
    return yield* agent(flags, allowed, identity, region).pipe(
      Effect.provide(Telemetry.layerWith({ serviceVersion: version, attributes: { "service.instance.id": identity.peerId } }))
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(logging),
    // the block stays on the screen; what follows (the shell's prompt) goes below it
    Effect.ensuring(Effect.sync(() => region?.close()))
  )
}

const agent = (flags: SyncFlags, allowed: ReadonlyArray<PeerId>, identity: PeerIdentity, region: Progress.LiveRegion | undefined) =>
  Effect.gen(function*() {
    if (allowed.length === 0) {
      yield* Effect.logWarning(
        `no allowed peers: this agent will sync with nobody. Add one with --peer <id> (repeatable) or --peers-file FILE; \`can-sync id\` prints a machine's id`
      )
    }
    yield* AgentMetrics.registerAll({ peerId: identity.peerId, version, peers: allowed })
    const { store, stats } = yield* openStore(flags.data, flags.canUrl, flags.token)
    const config = EngineConfig.make({ localPeerId: identity.peerId, pollInterval: flags.pollInterval })
    const manager = yield* PeerManager.make(config, store)
    const iceServers = [...flags.ice, ...(yield* readIceFile(flags.iceFile))]
    const transport = yield* Transport.make({
      signalingUrl: flags.signal,
      peers: allowed,
      rtc: {
        iceServers,
        relayOnly: flags.iceRelayOnly,
        portRange: Option.getOrUndefined(flags.icePorts),
        bindAddress: Option.getOrUndefined(flags.bindAddress),
        mtu: Option.getOrUndefined(flags.mtu)
      },
      rates: {
        send: Option.getOrUndefined(flags.maxSendRate),
        receive: Option.getOrUndefined(flags.maxRecvRate),
        sendPerPeer: Option.getOrUndefined(flags.maxSendRatePerPeer),
        receivePerPeer: Option.getOrUndefined(flags.maxRecvRatePerPeer)
      }
    }).pipe(Effect.provideService(Identity, identity))
    const registered = yield* Ref.make(false)
    yield* Effect.forkScoped(transport.registered.pipe(Effect.andThen(Ref.set(registered, true))))

    // Sampled gauges for the dashboard: each allowed peer's ICE path, RTT and backlog, the store's
    // size (embedded store only; a remote service reports its own) and the process' health; every
    // 5 s and at each scrape of /metrics.
    const storeSize = Option.match(stats, {
      onNone: () => Effect.void,
      onSome: (read) =>
        read.pipe(
          Effect.flatMap((s) =>
            Effect.all([Metric.update(Metrics.storeAssets, s.assets), Metric.update(Metrics.storeBytes, s.bytes)], { discard: true })
          ),
          Effect.catch(() => Effect.void)
        )
    })
    const links = transport.paths.pipe(Effect.flatMap((paths) =>
      Effect.forEach(allowed, (peer) => {
        const path = paths.get(peer)
        return Metrics.recordLink(peer, path?.kind, path?.rttMillis)
      }, { discard: true })
    ))
    // The one status model: /status, the terminal block, the log lines, the page and the backlog gauges render it.
    const status = yield* Status.make({
      version,
      peerId: identity.peerId,
      peers: allowed,
      sessions: manager.sessions,
      links: transport.paths,
      signaling: transport.signaling,
      store: Option.match(stats, {
        onNone: () => Effect.succeed(undefined),
        onSome: (read) => read.pipe(Effect.map((s) => ({ assets: s.assets, bytes: s.bytes })), Effect.catch(() => Effect.succeed(undefined)))
      })
    })
    const processHealth = yield* AgentMetrics.processSampler
    const backlog = status.current.pipe(Effect.flatMap(AgentMetrics.recordBacklog))
    const sample = Effect.all([storeSize, links, backlog, processHealth], { discard: true })

    if (Option.isSome(flags.adminPort)) {
      const admin = yield* Admin.serve({
        host: flags.adminHost,
        port: flags.adminPort.value,
        ready: Ref.get(registered),
        metrics: sample.pipe(Effect.andThen(Prometheus.exposition)),
        status: Effect.all([status.current, manager.sessions, transport.paths]).pipe(Effect.map(([model, sessions, paths]) =>
          StatusPage.statusJson(model, sessions, paths)
        )),
        page: { html: StatusPage.html, events: status.changes }
      })
      yield* Effect.logInfo(`admin endpoints at ${admin.url}`)
    }

    // One dial per allowed peer: the manager retries with backoff, cut short when the peer asks for a link.
    for (const peer of allowed) {
      yield* manager.dial(peer, transport.connect(peer), { wake: transport.wake(peer) })
    }

    yield* Effect.forkScoped(sample.pipe(Effect.repeat(Schedule.spaced("5 seconds"))))

    if (region === undefined) yield* Effect.forkScoped(Progress.logLines(status))
    else {
      yield* Effect.acquireRelease(
        Effect.sync(() => process.stderr.on("resize", region.redraw)),
        () => Effect.sync(() => process.stderr.off("resize", region.redraw))
      )
      yield* Effect.forkScoped(Progress.terminal(status, region))
    }
    yield* Effect.logInfo(
      `agent ${identity.peerId} syncing ${Option.getOrElse(flags.canUrl, () => flags.data)} with ${allowed.length} allowed peer(s) via ${flags.signal}`
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)
