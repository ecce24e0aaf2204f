/**
 * Signaling: a small WebSocket server relaying opaque JSON between registered peer ids, and the
 * client each agent keeps connected (reconnecting with backoff, registering again after a server
 * restart). Registering means signing the server's challenge, so nobody takes over another's id;
 * the server holds no secret, and relayed signals are signed end to end (Signal.ts).
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Latch from "effect/Latch"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { Backoff } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import { randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import { WebSocket, WebSocketServer } from "ws"
import type { RawData } from "ws"
import type { PeerIdentity } from "./Identity.ts"
import { isPeerId, verifySignature } from "./Identity.ts"
import * as RateLimit from "./RateLimit.ts"

/** Largest signaling message either side accepts (an SDP is a few KB). */
export const MAX_MESSAGE_BYTES = 64 * 1024
const REGISTER_TIMEOUT = "10 seconds"
const KEEPALIVE_MILLIS = 10_000
/** A peer that stops reading gets no more relays past this much queued. */
const MAX_SOCKET_BACKLOG = 1024 * 1024
/** Close code sent to a connection whose peer id registered again elsewhere. */
export const CLOSE_REPLACED = 4000

// ---- protocol -------------------------------------------------------------------------------

const ClientMessage = Schema.Union([
  Schema.Struct({
    type: Schema.Literal("register"),
    peerId: Schema.String,
    publicKey: Schema.String,
    signature: Schema.String
  }),
  Schema.Struct({
    type: Schema.Literal("relay"),
    to: Schema.String,
    ref: Schema.optional(Schema.String),
    data: Schema.Unknown
  })
])
type ClientMessage = typeof ClientMessage.Type

const ServerMessage = Schema.Union([
  // relaysPerSecond: the server's per-connection limit, which the client paces itself under
  // (absent from servers before it was announced: DEFAULT_RELAYS_PER_SECOND is assumed)
  Schema.Struct({ type: Schema.Literal("challenge"), nonce: Schema.String, relaysPerSecond: Schema.optional(Schema.Number) }),
  Schema.Struct({ type: Schema.Literal("registered"), peerId: Schema.String }),
  Schema.Struct({ type: Schema.Literal("relay"), from: Schema.String, data: Schema.Unknown }),
  Schema.Struct({ type: Schema.Literal("undeliverable"), to: Schema.String, ref: Schema.optional(Schema.String) }),
  Schema.Struct({ type: Schema.Literal("error"), message: Schema.String })
])
type ServerMessage = typeof ServerMessage.Type

const registrationBytes = (nonce: string, peerId: string): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(["can-sync/register/v1", nonce, peerId]))

const parseJson = <A>(decode: (u: unknown) => Result.Result<A, unknown>, raw: RawData): A | undefined => {
  const text = Array.isArray(raw)
    ? Buffer.concat(raw).toString("utf8")
    : raw instanceof ArrayBuffer
    ? Buffer.from(new Uint8Array(raw)).toString("utf8")
    : raw.toString("utf8")
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const decoded = decode(value)
  return Result.isSuccess(decoded) ? decoded.success : undefined
}
const decodeClient = Schema.decodeUnknownResult(ClientMessage)
const decodeServer = Schema.decodeUnknownResult(ServerMessage)

const sendJson = (ws: WebSocket, message: ClientMessage | ServerMessage): boolean => {
  if (ws.readyState !== WebSocket.OPEN) return false
  ws.send(JSON.stringify(message))
  return true
}

type SocketEvent =
  | { readonly _tag: "Open" }
  | { readonly _tag: "Message"; readonly data: RawData }
  | { readonly _tag: "Pong" }

/**
 * A socket's events as a stream that ends when the socket closes. The buffer is bounded: the
 * socket is paused while it is full, so a flood from one peer cannot grow memory.
 */
const socketEvents = (ws: WebSocket): Stream.Stream<SocketEvent> =>
  Stream.callback<SocketEvent>(
    (queue) => {
      const push = (event: SocketEvent) => {
        if (Queue.offerUnsafe(queue, event)) return
        ws.pause()
        Effect.runFork(Queue.offer(queue, event).pipe(Effect.ensuring(Effect.sync(() => ws.resume()))))
      }
      const onOpen = () => push({ _tag: "Open" })
      const onMessage = (data: RawData) => push({ _tag: "Message", data })
      const onPong = () => push({ _tag: "Pong" })
      const onClose = () => Queue.endUnsafe(queue)
      const onError = () => Queue.endUnsafe(queue)
      if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) Queue.endUnsafe(queue)
      return Effect.acquireRelease(
        Effect.sync(() => ws.on("open", onOpen).on("message", onMessage).on("pong", onPong).on("close", onClose).on("error", onError)),
        () =>
          Effect.sync(() => {
            ws.off("open", onOpen).off("message", onMessage).off("pong", onPong).off("close", onClose)
            // keep a no-op error listener: an 'error' without one would crash the process
            ws.off("error", onError).on("error", () => {})
          })
      )
    },
    { bufferSize: 64 }
  )

/** Ping every interval; terminate the socket when no pong came back for three intervals. */
const keepalive = (ws: WebSocket, lastPong: () => number): Effect.Effect<never> =>
  Clock.currentTimeMillis.pipe(
    Effect.map((now) => {
      if (ws.readyState !== WebSocket.OPEN) return
      if (now - lastPong() > 3 * KEEPALIVE_MILLIS) ws.terminate()
      else ws.ping()
    }),
    Effect.andThen(Effect.sleep(KEEPALIVE_MILLIS)),
    Effect.forever
  )

// ---- server ---------------------------------------------------------------------------------

export class SignalingError extends Schema.TaggedError<SignalingError>()("SignalingError", {
  reason: Schema.String
}) {
  override get message(): string {
    return `signaling server: ${this.reason}`
  }
}

export interface SignalingServerOptions {
  /** Interface to listen on; default "127.0.0.1" (use "0.0.0.0" to serve a LAN). */
  readonly host?: string | undefined
  /** TCP port; 0 picks a free one. Default 7777. */
  readonly port?: number | undefined
  /** Connections open at once, registered or not; one more is refused (close code 1013). Default 10,000. */
  readonly maxConnections?: number | undefined
  /**
   * Relays one connection may send per second, sustained; twice as many in a burst. Past that
   * they are dropped and the sender is told, once per second. A connection attempt takes up to a
   * few dozen (description and candidates), and an agent may connect to many peers at once. The
   * rate is announced in the challenge, and our client paces itself under it. Default 200.
   */
  readonly relaysPerSecond?: number | undefined
}

export const DEFAULT_MAX_CONNECTIONS = 10_000
export const DEFAULT_RELAYS_PER_SECOND = 200
/** Close code for a connection refused because the server is full ("try again later"). */
export const CLOSE_FULL = 1013

/** A token bucket: `rate` per second, holding at most `2 * rate`; `take` says whether one was left. */
const tokenBucket = (rate: number, clock: Clock.Clock) => {
  const capacity = 2 * rate
  let tokens = capacity
  let refilledAt = clock.currentTimeMillisUnsafe()
  return {
    take: (): boolean => {
      const now = clock.currentTimeMillisUnsafe()
      tokens = Math.min(capacity, tokens + ((now - refilledAt) / 1000) * rate)
      refilledAt = now
      if (tokens < 1) return false
      tokens -= 1
      return true
    }
  }
}

/**
 * The client's side of the relay limit: each relay waits, in turn, until it fits under `rate` per
 * second with about `rate` at once (RateLimit's bucket, one token a relay). That stays under the
 * server's bucket (its rate a second, twice that at once), so dialing many peers at once is
 * slowed, never dropped.
 */
const relayPacer = (rate: number): Effect.Effect<void> => RateLimit.tokenBucket(rate, Math.max(1, rate)).take(1)

/** The share of the server's announced relay rate a client uses (room for timing jitter). */
const RELAY_PACE_SHARE = 0.9
/** The pace for an announced rate; a missing or absurd one counts as the default. */
const paceFor = (announced: number | undefined): number =>
  RELAY_PACE_SHARE * (announced !== undefined && Number.isFinite(announced) && announced >= 1 ? announced : DEFAULT_RELAYS_PER_SECOND)

export interface SignalingServerInfo {
  readonly url: string
  readonly host: string
  readonly port: number
}

const serveConnection = (ws: WebSocket, peers: Map<string, WebSocket>, relaysPerSecond: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const nonce = randomBytes(16).toString("base64")
    let peerId: string | undefined
    const relays = tokenBucket(relaysPerSecond, clock)
    let droppedSince = 0
    let toldAt = 0
    sendJson(ws, { type: "challenge", nonce, relaysPerSecond })
    const refuse = (message: string, code = 4002) =>
      Effect.sync(() => {
        sendJson(ws, { type: "error", message })
        ws.close(code, message.slice(0, 120))
      })
    const handle = (raw: RawData): Effect.Effect<void> => {
      const message = parseJson(decodeClient, raw)
      if (message === undefined) return refuse("malformed message")
      if (message.type === "register") {
        if (peerId !== undefined) return refuse("already registered")
        const publicKey = new Uint8Array(Buffer.from(message.publicKey, "base64"))
        const signature = new Uint8Array(Buffer.from(message.signature, "base64"))
        if (!isPeerId(message.peerId) || !verifySignature(message.peerId, publicKey, registrationBytes(nonce, message.peerId), signature)) {
          return Effect.andThen(
            Effect.logWarning(`signaling: refused a registration as ${message.peerId}: the proof does not verify`),
            refuse("registration proof does not verify", 4003)
          )
        }
        const id = message.peerId
        peerId = id
        const previous = peers.get(id)
        peers.set(id, ws)
        sendJson(ws, { type: "registered", peerId: id })
        return Effect.gen(function*() {
          if (previous !== undefined && previous !== ws) {
            previous.close(CLOSE_REPLACED, "replaced by a newer registration")
            yield* Effect.logWarning(`signaling: ${id} registered again; the older connection was closed`)
          }
          yield* Effect.logInfo(`signaling: ${id} registered (${peers.size} online)`)
        })
      }
      if (peerId === undefined) return refuse("register first")
      if (!relays.take()) {
        droppedSince++
        const now = clock.currentTimeMillisUnsafe()
        if (now - toldAt < 1000) return Effect.void
        toldAt = now
        const dropped = droppedSince
        droppedSince = 0
        sendJson(ws, { type: "error", message: `rate limited: more than ${relaysPerSecond} relays per second; ${dropped} dropped` })
        return Effect.logWarning(`signaling: ${peerId} is over ${relaysPerSecond} relays per second; dropped ${dropped}`)
      }
      const target = peers.get(message.to)
      if (target === undefined || target.readyState !== WebSocket.OPEN || target.bufferedAmount > MAX_SOCKET_BACKLOG) {
        sendJson(ws, message.ref === undefined ? { type: "undeliverable", to: message.to } : { type: "undeliverable", to: message.to, ref: message.ref })
        return Effect.void
      }
      sendJson(target, { type: "relay", from: peerId, data: message.data })
      return Effect.void
    }
    const registerDeadline = Effect.andThen(
      Effect.sleep(REGISTER_TIMEOUT),
      Effect.suspend(() => (peerId === undefined ? refuse("registration timed out") : Effect.void))
    )
    yield* Effect.forkScoped(registerDeadline)
    // a peer that vanished without closing (cable pulled) is dropped, so it stops receiving relays
    let lastPong = clock.currentTimeMillisUnsafe()
    yield* Effect.forkScoped(keepalive(ws, () => lastPong))
    yield* socketEvents(ws).pipe(Stream.runForEach((event) => {
      if (event._tag === "Pong") lastPong = clock.currentTimeMillisUnsafe()
      return event._tag === "Message" ? handle(event.data) : Effect.void
    }))
    if (peerId !== undefined && peers.get(peerId) === ws) {
      peers.delete(peerId)
      yield* Effect.logInfo(`signaling: ${peerId} left (${peers.size} online)`)
    }
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.sync(() => ws.terminate()))
  )

/**
 * Run a signaling server for the life of the scope. It relays `{to, data}` from a registered
 * peer to the peer registered under `to` (as `{from, data}`, `from` being the sender's proven
 * id), answers `undeliverable` when nobody is, and closes every connection when the scope ends.
 */
export const serve = Effect.fn("SignalingServer.serve")(function*(options: SignalingServerOptions = {}) {
  const host = options.host ?? "127.0.0.1"
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  const relaysPerSecond = options.relaysPerSecond ?? DEFAULT_RELAYS_PER_SECOND
  if (!(Number.isSafeInteger(maxConnections) && maxConnections > 0)) {
    return yield* new SignalingError({ reason: `maxConnections must be a positive integer, got ${maxConnections}` })
  }
  if (!(Number.isFinite(relaysPerSecond) && relaysPerSecond >= 1)) {
    return yield* new SignalingError({ reason: `relaysPerSecond must be at least 1, got ${relaysPerSecond}` })
  }
  const wss = yield* Effect.acquireRelease(
    Effect.callback<WebSocketServer, SignalingError>((resume) => {
      const server = new WebSocketServer({ host, port: options.port ?? 7777, maxPayload: MAX_MESSAGE_BYTES })
      const onError = (error: Error) => {
        server.close()
        resume(Effect.fail(new SignalingError({ reason: `cannot listen on ${host}:${options.port ?? 7777}: ${error.message}` })))
      }
      server.once("error", onError)
      server.once("listening", () => {
        server.off("error", onError)
        server.on("error", () => {})
        resume(Effect.succeed(server))
      })
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        for (const client of server.clients) client.terminate()
        server.close(() => resume(Effect.void))
      })
  )
  const peers = new Map<string, WebSocket>()
  const connections = Stream.callback<WebSocket>((queue) =>
    Effect.acquireRelease(
      Effect.sync(() =>
        wss.on("connection", (ws) => {
          // `clients` already counts this one
          if (wss.clients.size > maxConnections) {
            sendJson(ws, { type: "error", message: `server full: ${maxConnections} connections` })
            ws.close(CLOSE_FULL, "server full")
            return
          }
          if (!Queue.offerUnsafe(queue, ws)) ws.terminate()
        })
      ),
      () => Effect.sync(() => wss.removeAllListeners("connection"))
    ), { bufferSize: 256 })
  const served = yield* FiberSet.make()
  yield* Effect.forkScoped(connections.pipe(Stream.runForEach((ws) => FiberSet.run(served, serveConnection(ws, peers, relaysPerSecond)))))
  const port = (wss.address() as AddressInfo).port
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host
  const info: SignalingServerInfo = { url: `ws://${urlHost}:${port}`, host, port }
  yield* Effect.logInfo(`signaling: listening on ${info.url}`)
  return info
}) satisfies (options?: SignalingServerOptions) => Effect.Effect<SignalingServerInfo, SignalingError, Scope.Scope>

// ---- client ---------------------------------------------------------------------------------

/** Why a connection to the signaling server failed, worded with what to check. */
const failureReason = (error: Error): string => {
  const code = (error as NodeJS.ErrnoException).code
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused (${error.message}): is \`can-sync signal\` running there?`
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `unknown host (${error.message}): check the host name in --signal`
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `unreachable (${error.message}): check the network and firewall`
  }
  if (/Unexpected server response/.test(error.message)) return `${error.message}: is that a can-sync signaling server?`
  if (/handshake has timed out/i.test(error.message)) return "no answer to the WebSocket handshake within 5 s"
  return error.message
}

const closeReason = (code: number, reason: string): string =>
  code === 1006 ? "the connection dropped" : `closed by the server (code ${code}${reason === "" ? "" : `: ${reason}`})`

/** Not registered with the signaling server right now (it is down or restarting). */
export class SignalingUnavailable extends Schema.TaggedError<SignalingUnavailable>()("SignalingUnavailable", {
  url: Schema.String
}) {
  override get message(): string {
    return `not registered with the signaling server ${this.url}`
  }
}

export type Inbound =
  | { readonly _tag: "Relay"; readonly from: string; readonly data: unknown }
  | { readonly _tag: "Undeliverable"; readonly to: string; readonly ref: string | undefined }

export interface SignalingClientOptions {
  readonly url: string
  readonly identity: PeerIdentity
  /** Delays between reconnects (default: from 250 ms up to 10 s); reset once registered. */
  readonly backoff?: Backoff.BackoffOptions | undefined
}

export interface SignalingClient {
  /** Relay `data` to a peer; fails at once (nothing queued) when not registered right now. */
  readonly send: (to: PeerId, data: unknown, ref?: string) => Effect.Effect<void, SignalingUnavailable>
  /** Messages relayed to us and undeliverable notices; one consumer. */
  readonly inbound: Queue.Dequeue<Inbound, Cause.Done>
  /** Completes when registered (now, or at the next successful registration). */
  readonly registered: Effect.Effect<void>
  /** Whether we are registered right now. */
  readonly isRegistered: Effect.Effect<boolean>
  /** How many times this client has registered (reconnects count). */
  readonly registrations: Effect.Effect<number>
  /** Where the registration stands now, and why the last connection ended (for `/status`). */
  readonly status: Effect.Effect<SignalingStatus>
}

/**
 * The client's registration now: `connecting` before the first registration, `registered`, or
 * `failing` (the connection was refused or lost; the next attempt is at `nextRetryAt`).
 */
export interface SignalingStatus {
  readonly url: string
  readonly state: "connecting" | "registered" | "failing"
  readonly registrations: number
  /** Failed attempts since the last registration. */
  readonly failures: number
  readonly registeredAt: number | undefined
  /** Why the last connection ended, and when (ms since the epoch); kept after a new registration. */
  readonly lastError: string | undefined
  readonly lastErrorAt: number | undefined
  readonly nextRetryAt: number | undefined
}

/**
 * Keep a registration with the signaling server for the life of the scope, reconnecting with
 * backoff whenever the connection drops (the server restarting, the network going away).
 */
export const connect = Effect.fn("SignalingClient.connect")(function*(options: SignalingClientOptions) {
  const { url, identity } = options
  const backoff = Backoff.exponential({ base: "250 millis", cap: "10 seconds", ...options.backoff })
  const inbound = yield* Queue.bounded<Inbound, Cause.Done>(256)
  const ready = yield* Latch.make(false)
  let current: WebSocket | undefined
  /** Paces relays under the current connection's limit (set from each connection's challenge). */
  let pace = relayPacer(paceFor(undefined))
  let registrations = 0
  let failures = 0
  let registeredAt: number | undefined
  let lastError: string | undefined
  let lastErrorAt: number | undefined
  let nextRetryAt: number | undefined

  /** One connection, from dial to close: whether it got registered, and why it ended. */
  const session = Effect.gen(function*() {
    let ended: string | undefined
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const ws = new WebSocket(url, { handshakeTimeout: 5000, maxPayload: MAX_MESSAGE_BYTES })
        // the first cause wins: an error is followed by a close that says less
        ws.on("error", (error) => (ended ??= failureReason(error)))
        ws.on("close", (code, reason) => (ended ??= closeReason(code, reason.toString("utf8"))))
        return ws
      }),
      (ws) =>
        Effect.sync(() => {
          if (current === ws) current = undefined
          ready.closeUnsafe()
          ws.terminate()
        })
    )
    let registered = false
    const clock = yield* Clock.Clock
    let lastPong = clock.currentTimeMillisUnsafe()
    yield* Effect.forkScoped(keepalive(ws, () => lastPong))
    const handle = (event: SocketEvent): Effect.Effect<void> => {
      if (event._tag === "Pong") {
        lastPong = clock.currentTimeMillisUnsafe()
        return Effect.void
      }
      if (event._tag === "Open") return Effect.void
      const message = parseJson(decodeServer, event.data)
      if (message === undefined) return Effect.logWarning(`signaling: ignored a malformed message from ${url}`)
      switch (message.type) {
        case "challenge": {
          pace = relayPacer(paceFor(message.relaysPerSecond))
          const signature = identity.sign(registrationBytes(message.nonce, identity.peerId))
          sendJson(ws, {
            type: "register",
            peerId: identity.peerId,
            publicKey: Buffer.from(identity.publicKey).toString("base64"),
            signature: Buffer.from(signature).toString("base64")
          })
          return Effect.void
        }
        case "registered":
          return Effect.suspend(() => {
            registered = true
            registrations++
            current = ws
            registeredAt = clock.currentTimeMillisUnsafe()
            nextRetryAt = undefined
            ready.openUnsafe()
            return Effect.logInfo(`signaling: registered as ${identity.peerId} at ${url}`)
          })
        case "relay":
          return Queue.offer(inbound, { _tag: "Relay", from: message.from, data: message.data })
        case "undeliverable":
          return Queue.offer(inbound, { _tag: "Undeliverable", to: message.to, ref: message.ref })
        case "error":
          return Effect.logWarning(`signaling: server says: ${message.message}`)
      }
    }
    yield* socketEvents(ws).pipe(Stream.runForEach(handle))
    return { registered, ended: ended ?? "the connection closed" }
  }).pipe(Effect.scoped)

  // Loud: the first failure and every backoff step is a WARN naming the URL and the reason.
  const loop = Effect.gen(function*() {
    let step = yield* Schedule.toStep(backoff)
    while (true) {
      const { registered, ended } = yield* session
      // a connection that got registered starts the delays over
      if (registered) {
        step = yield* Schedule.toStep(backoff)
        failures = 0
      }
      const now = yield* Clock.currentTimeMillis
      const [, delay] = yield* step(now, undefined)
      lastError = ended
      lastErrorAt = now
      nextRetryAt = now + Duration.toMillis(delay)
      const wait = `${(Duration.toMillis(delay) / 1000).toFixed(1)} s`
      if (registered) yield* Effect.logWarning(`signaling: lost the connection to ${url} (reconnecting in ${wait}): ${ended}`)
      else {
        failures++
        yield* Effect.logWarning(`signaling: cannot register at ${url} (attempt ${failures}, next in ${wait}): ${ended}`)
      }
      yield* Effect.sleep(delay)
    }
  })
  yield* Effect.forkScoped(loop)
  yield* Effect.addFinalizer(() => Queue.end(inbound))

  const client: SignalingClient = {
    send: (to, data, ref) =>
      Effect.andThen(
        Effect.suspend(() => current === undefined ? Effect.fail(new SignalingUnavailable({ url })) : pace),
        Effect.suspend(() => {
          const ws = current
          if (ws === undefined) return Effect.fail(new SignalingUnavailable({ url }))
          const message: ClientMessage = ref === undefined ? { type: "relay", to, data } : { type: "relay", to, data, ref }
          return sendJson(ws, message) ? Effect.void : Effect.fail(new SignalingUnavailable({ url }))
        })
      ),
    inbound,
    registered: ready.await,
    isRegistered: Effect.sync(() => current !== undefined),
    registrations: Effect.sync(() => registrations),
    status: Effect.sync((): SignalingStatus => ({
      url,
      state: current !== undefined ? "registered" : registrations === 0 && failures === 0 ? "connecting" : "failing",
      registrations,
      failures,
      registeredAt,
      lastError,
      lastErrorAt,
      nextRetryAt: current !== undefined ? undefined : nextRetryAt
    }))
  }
  return client
}) satisfies (options: SignalingClientOptions) => Effect.Effect<SignalingClient, never, Scope.Scope>
