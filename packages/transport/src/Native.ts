/**
 * The one place that touches node-datachannel's process-wide state: peer connections are created
 * here from our options, the library's own log (why ICE, DTLS or SCTP failed) goes to ours, and
 * its `cleanup()` runs once, when the last scope that used the library closes (an RcRef; without
 * it the process lingers ~8 s or never exits). It also says which build of the library runs:
 * can-sync's (vendor/datachannel) or, where that cannot load, upstream's, with a warning.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as RcRef from "effect/RcRef"
import * as Scope from "effect/Scope"
import nodeDataChannel from "node-datachannel"
import type { DataChannel, LogLevel, PeerConnection, RtcConfig } from "node-datachannel"
import * as IceServers from "./IceServers.ts"

export type { DataChannel, PeerConnection, RtcConfig }

/** The library itself, for the benchmark's bare-channel baseline; the transport uses the helpers below. */
export const library = nodeDataChannel

/** How peer connections are created; all optional, none needed on loopback or a LAN. */
export interface RtcOptions {
  /**
   * STUN/TURN servers: `stun:host:port`, `turn:user:password@host:port[?transport=udp|tcp]`,
   * `turns:user:password@host:port` (checked by IceServers.parseAll when the transport starts; at
   * most two TURN servers).
   */
  readonly iceServers?: ReadonlyArray<string> | undefined
  /**
   * The local UDP port of the TurnStreamBridge of each TURN-over-TCP/TLS URL in `iceServers`
   * (Transport starts them); such a server without one is left out.
   */
  readonly turnBridges?: ReadonlyMap<string, number> | undefined
  /** Offer the peer only relayed (TURN) candidates (`--ice-relay-only`). */
  readonly relayOnly?: boolean | undefined
  /** Told the path of each link when it opens and whenever the selected pair changes, with its round trip. */
  readonly onPath?: ((peer: string, path: IceServers.IcePath, rttMillis: Effect.Effect<number | undefined>) => void) | undefined
  /** Gather ICE candidates on this local address only (e.g. "127.0.0.1" in tests). */
  readonly bindAddress?: string | undefined
  /** Local UDP port range for ICE. */
  readonly portRange?: { readonly begin: number; readonly end: number } | undefined
  /**
   * Path MTU for SCTP packets. Leave unset on real networks (libjuice receives at most 4096
   * bytes per datagram; larger values stall). Between two node agents on one host,
   * `LOOPBACK_MTU` makes fewer, larger packets and costs far less CPU (the transfer is CPU-bound
   * in the library's threads) — but a browser peer fails on packets above ~2 KB, so it is never
   * set automatically.
   */
  readonly mtu?: number | undefined
}

/** The MTU worth setting for node-to-node links on one host: just under libjuice's 4096-byte buffer. */
export const LOOPBACK_MTU = 4000

/** libdatachannel's levels, most verbose first; its log is quiet at "Warning" when all goes well. */
export const LIBRARY_LOG_LEVELS: ReadonlyArray<LogLevel> = ["Verbose", "Debug", "Info", "Warning", "Error", "Fatal"]
export const isLibraryLogLevel = (s: string): s is LogLevel => (LIBRARY_LOG_LEVELS as ReadonlyArray<string>).includes(s)

/** The library's log level: `CAN_SYNC_RTC_LOG` (e.g. "Info" to follow ICE and DTLS step by step), else "Warning". */
const libraryLogLevel = (): LogLevel => {
  const wanted = process.env.CAN_SYNC_RTC_LOG
  return wanted !== undefined && isLibraryLogLevel(wanted) ? wanted : "Warning"
}

/** Who uses the library now, in order: its log lines are written with the first one's logger. */
let logTargets: ReadonlyArray<Context.Context<never>> = []

const forwardLog = (at: LogLevel, message: string) => {
  // TURN/STUN trouble is remembered and reported once, in the operator's words (ConnectAttempt);
  // the library logs some of it at Info, so it runs at Info at least and the rest is dropped here
  const translated = IceServers.noteLibraryLine(message, Date.now()) !== undefined
  if (!translated && LIBRARY_LOG_LEVELS.indexOf(at) < LIBRARY_LOG_LEVELS.indexOf(libraryLogLevel())) return
  const context = logTargets[0]
  if (context === undefined) return
  const line = `libdatachannel: ${IceServers.unbridge(message)}`
  // The library's errors are a connection's failures, which the caller retries: warnings here.
  // Its warnings are mostly benign (a stream reset on a closing association): debug. Lower
  // levels come only when asked for with CAN_SYNC_RTC_LOG, so they are shown at info.
  const log = translated
    ? Effect.logDebug(line)
    : at === "Error" || at === "Fatal"
    ? Effect.logWarning(line)
    : at === "Warning"
    ? Effect.logDebug(line)
    : Effect.logInfo(line)
  Effect.runForkWith(context)(Effect.annotateLogs(log, { component: "libdatachannel", rtc_level: at }))
}

/**
 * libdatachannel's version. "-cansync.N" marks can-sync's build (vendor/datachannel), which
 * starts the DTLS handshake off libjuice's thread: upstream 0.24.5 can deadlock there on a
 * connection relayed through TURN, and the agent's event loop then blocks for good.
 */
export const libraryVersion: string = nodeDataChannel.getLibraryVersion()

/** Where the library runs: what decides which build of it was meant to load. */
export interface LibraryHost {
  readonly platform: string
  readonly arch: string
  /** The C library's version on glibc systems, else undefined. */
  readonly glibc: string | undefined
}

const thisHost = (): LibraryHost => ({
  platform: process.platform,
  arch: process.arch,
  glibc: (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime
})

/**
 * Why upstream's libdatachannel runs instead of can-sync's build, and what that risks, or
 * undefined when can-sync's build runs. The build exists for linux-x64 with glibc 2.30 or newer.
 */
export const missingLibraryFix = (version: string = libraryVersion, host: () => LibraryHost = thisHost): string | undefined => {
  if (version.includes("-cansync.")) return undefined
  const { platform, arch, glibc } = host()
  const why = platform === "linux" && arch === "x64" && glibc !== undefined
    ? `it did not load; it needs glibc 2.30 or newer, this is ${glibc}`
    : `it is built for linux-x64 with glibc only; this is ${platform}-${arch}${glibc === undefined ? "" : ` with glibc ${glibc}`}`
  return `libdatachannel ${version} from upstream runs here, not can-sync's build (${why}): ` +
    "a connection relayed through TURN can, rarely, hang the agent during the DTLS handshake"
}

/** The library's process-wide state: its logger set up by the first user, `cleanup()` after the last. */
const libraryState: RcRef.RcRef<void> = Effect.runSync(
  RcRef.make({
    acquire: Effect.acquireRelease(
      Effect.gen(function*() {
        const missing = missingLibraryFix()
        if (missing !== undefined) yield* Effect.logWarning(`transport: ${missing}`)
        try {
          const wanted = libraryLogLevel()
          nodeDataChannel.initLogger(LIBRARY_LOG_LEVELS.indexOf(wanted) > LIBRARY_LOG_LEVELS.indexOf("Info") ? "Info" : wanted, forwardLog)
        } catch (error) {
          // only the log is lost; the release below still runs cleanup()
          yield* Effect.logWarning(`libdatachannel's log is not available: ${error instanceof Error ? error.message : String(error)}`)
        }
      }),
      () => Effect.sync(() => nodeDataChannel.cleanup())
    )
  }).pipe(Scope.provide(Scope.makeUnsafe()))
)

/**
 * Use the native library for the life of the current scope; when the last scope using it closes
 * (after every connection opened inside it has been closed), `cleanup()` runs. While in use, the
 * library's log lines become our log lines (annotated `component: "libdatachannel"`), written
 * with the logger of the oldest user still open.
 */
export const useLibrary: Effect.Effect<void, never, Scope.Scope> = Effect.gen(function*() {
  yield* RcRef.get(libraryState)
  const context = yield* Effect.context<never>()
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      logTargets = [...logTargets, context]
    }),
    () =>
      Effect.sync(() => {
        logTargets = logTargets.filter((target) => target !== context)
      })
  )
})

export const rtcConfig = (options: RtcOptions): RtcConfig => {
  const config: RtcConfig = { iceServers: IceServers.toNative(options.iceServers ?? [], options.turnBridges) }
  if (options.relayOnly === true) config.iceTransportPolicy = "relay"
  if (options.bindAddress !== undefined) config.bindAddress = options.bindAddress
  if (options.portRange !== undefined) {
    config.portRangeBegin = options.portRange.begin
    config.portRangeEnd = options.portRange.end
  }
  if (options.mtu !== undefined) config.mtu = options.mtu
  return config
}

/** A peer connection, closed when the scope closes. */
export const peerConnection = (name: string, options: RtcOptions): Effect.Effect<PeerConnection, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => new nodeDataChannel.PeerConnection(name, rtcConfig(options))),
    (pc) => Effect.sync(() => pc.close())
  )

export { fingerprintOf } from "./Binding.ts"
