/**
 * TURN over TCP or TLS (`turn:...?transport=tcp`, `turns:`) for libjuice, which speaks TURN over
 * UDP only: per such server a UDP socket on 127.0.0.1, handed to libjuice as a UDP TURN server.
 * Each local sender (one libjuice agent: one peer connection) gets its own TCP or TLS connection
 * to the real server, since the allocation is bound to it; messages are framed on the stream as
 * RFC 8656 §12.5 says (the pure framing is first below, then the bridge).
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as dgram from "node:dgram"
import * as net from "node:net"
import * as tls from "node:tls"
import * as IceServers from "./IceServers.ts"

// ---- framing ----------------------------------------------------------------------------------

/**
 * The longest message body taken from a server (STUN attributes or ChannelData payload). libjuice
 * reads at most 4096 bytes per datagram, so a longer one is of no use to it; a length past this
 * means the stream is not TURN (or lost its framing).
 */
export const MAX_MESSAGE_BYTES = 16 * 1024

const STUN_HEADER = 20
const isStun = (first: number) => (first & 0xc0) === 0
const isChannelData = (first: number) => first >= 0x40 && first <= 0x7f
const padded = (n: number) => (n + 3) & ~3

/**
 * A datagram from libjuice as it goes on the stream: a STUN message as it is, a ChannelData
 * message padded to a multiple of 4 bytes; `undefined` for anything else (not TURN, or cut short).
 */
export const frameDatagram = (datagram: Uint8Array): Uint8Array | undefined => {
  if (datagram.length < 4) return undefined
  const first = datagram[0]!
  const length = (datagram[2]! << 8) | datagram[3]!
  if (isStun(first)) return datagram.length === STUN_HEADER + length ? datagram : undefined
  if (!isChannelData(first)) return undefined
  const end = 4 + length
  if (datagram.length < end) return undefined
  if (datagram.length === padded(end)) return datagram
  const out = new Uint8Array(padded(end))
  out.set(datagram.subarray(0, end))
  return out
}

/**
 * Cuts what a server sends on the stream into the messages it frames, however the reads split or
 * coalesce them: each ChannelData message without its padding, each STUN message whole. Fails
 * (and should not be fed again) when the stream is not TURN.
 */
export class Deframer {
  private rest: Uint8Array = new Uint8Array(0)

  push(chunk: Uint8Array): Result.Result<Array<Uint8Array>, string> {
    const buf = this.rest.length === 0 ? chunk : Buffer.concat([this.rest, chunk])
    const messages: Array<Uint8Array> = []
    let at = 0
    while (buf.length - at >= 4) {
      const first = buf[at]!
      const length = (buf[at + 2]! << 8) | buf[at + 3]!
      let message: number
      let size: number
      if (isStun(first)) {
        if (length % 4 !== 0) return Result.fail(`a STUN message of length ${length}, not a multiple of 4`)
        message = STUN_HEADER + length
        size = message
      } else if (isChannelData(first)) {
        message = 4 + length
        size = padded(message)
      } else {
        return Result.fail(`first byte 0x${first.toString(16).padStart(2, "0")} is neither STUN nor ChannelData`)
      }
      if (length > MAX_MESSAGE_BYTES) return Result.fail(`a message of ${length} bytes (at most ${MAX_MESSAGE_BYTES})`)
      if (buf.length - at < size) break
      messages.push(buf.subarray(at, at + message))
      at += size
    }
    this.rest = buf.subarray(at)
    return Result.succeed(messages)
  }
}

/**
 * The answer to a STUN request the bridge cannot carry (its server is unreachable): an error
 * response (500) with the request's method and transaction id, no integrity (RFC 8489 lets a
 * client take it so). libjuice then ends its TURN gathering at once ("TURN allocation failed")
 * instead of retransmitting for seconds. `undefined` for anything but a STUN request.
 */
export const refusalOf = (request: Uint8Array): Uint8Array | undefined => {
  if (request.length < STUN_HEADER || !isStun(request[0]!)) return undefined
  const type = (request[0]! << 8) | request[1]!
  if ((type & 0x0110) !== 0) return undefined // not a request
  const reason = Buffer.from("TURN server unreachable")
  const attribute = 4 + 4 + reason.length
  const out = Buffer.alloc(STUN_HEADER + padded(attribute))
  out.writeUInt16BE(type | 0x0110, 0) // error response class
  out.writeUInt16BE(padded(attribute), 2)
  out.set(request.subarray(4, STUN_HEADER), 4) // magic cookie and transaction id
  out.writeUInt16BE(0x0009, STUN_HEADER) // ERROR-CODE
  out.writeUInt16BE(4 + reason.length, STUN_HEADER + 2)
  out[STUN_HEADER + 6] = 5 // class 5, number 00: 500 Server Error
  out[STUN_HEADER + 7] = 0
  reason.copy(out, STUN_HEADER + 8)
  return out
}

// ---- the bridge -------------------------------------------------------------------------------

export interface BridgeLimits {
  /** Connections to the server at once (one per local sender); past it, the idlest is closed. */
  readonly maxConnections: number
  /** Bytes of a sender's datagrams held while its connection opens; more are dropped. */
  readonly maxQueuedBytes: number
  /** Bytes the stream may hold unsent (the server reads slowly); datagrams past it are dropped, as a router would. */
  readonly maxBufferedBytes: number
  /** A TCP connect and TLS handshake must finish within this. */
  readonly connectMillis: number
  /** A connection whose sender sent nothing for this long is closed (TURN's default allocation lifetime). */
  readonly idleMillis: number
  /** After a failed connect, a sender's requests are refused (refusalOf) this long before the next try. */
  readonly holdOffMillis: number
}

export const defaultLimits: BridgeLimits = {
  maxConnections: 256,
  maxQueuedBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  connectMillis: 10_000,
  idleMillis: 600_000,
  holdOffMillis: 1_000
}

/** The bridge's UDP socket could not be bound. */
export class TurnBridgeError extends Data.TaggedError("TurnBridgeError")<{ readonly server: string; readonly detail: string }> {
  override get message(): string {
    return `TURN bridge for ${this.server}: ${this.detail}`
  }
}

export interface TurnStreamBridge {
  /** libjuice's UDP TURN server: 127.0.0.1 on this port. */
  readonly port: number
  /** Open (or opening) connections to the server. */
  readonly connections: () => number
}

const errorCode = (error: Error): string | undefined => {
  const code = (error as NodeJS.ErrnoException).code
  return typeof code === "string" ? code : undefined
}

const CERTIFICATE = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|ISSUER|SIGNATURE/

/** What the operator should read when the connection to the server fails before it is up. */
export const troubleOf = (transport: "tcp" | "tls", error: Error, connectMillis: number = defaultLimits.connectMillis): string => {
  const code = errorCode(error)
  const via = transport === "tls" ? "TLS" : "TCP"
  if (transport === "tls" && code !== undefined && CERTIFICATE.test(code)) {
    return `TLS to the TURN server failed: certificate not accepted (${code}: ${error.message.split(";")[0]}): check the host in --ice or the CA that signed the server's certificate (NODE_EXTRA_CA_CERTS)`
  }
  switch (code) {
    case "ECONNREFUSED":
      return `the TURN server refused the ${via} connection: check the port in --ice and that the server listens for ${transport === "tls" ? "TLS (turns:, default port 5349)" : "TCP"}`
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "the TURN server's address does not resolve: check the host in --ice (a password holding @ or : must be percent-encoded)"
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `no ${via} connection to the TURN server within ${connectMillis / 1000} s (${code}): check the host and port in --ice and that the firewall lets TCP out`
  }
  return transport === "tls"
    ? `TLS to the TURN server failed (${code ?? "handshake"}: ${error.message}): check that the port in --ice is the server's TLS port (turns:, default 5349)`
    : `TCP to the TURN server failed (${code ?? "error"}: ${error.message})`
}

interface Connection {
  readonly stream: net.Socket
  readonly deframer: Deframer
  connected: boolean
  queue: Array<Uint8Array>
  queued: number
  lastSent: number
  closedBecause: string | undefined
}

/**
 * A bridge to `server` (a TURN server over TCP or TLS) for the life of the scope: closing the scope
 * closes the UDP socket and every connection. TLS verifies the server's certificate against Node's
 * CAs (plus `NODE_EXTRA_CA_CERTS`), with the URL's host as SNI when it is a name.
 */
export const start = (
  server: IceServers.IceServer,
  limits: BridgeLimits = defaultLimits
): Effect.Effect<TurnStreamBridge, TurnBridgeError, Scope.Scope> =>
  Effect.gen(function*() {
    const shown = IceServers.describe(server)
    const transport = server.transport === "tls" ? "tls" : "tcp"
    const context = yield* Effect.context<never>()
    const log = (effect: Effect.Effect<void>) =>
      void Effect.runForkWith(context)(Effect.annotateLogs(effect, { component: "turn-bridge", ice_server: shown }))
    const connections = new Map<string, Connection>()
    const heldOff = new Map<string, number>()
    let dropped = 0
    let stopping = false
    /** One datagram back to libjuice (none once the bridge is stopping: its socket is closed). */
    const reply = (udp: dgram.Socket, message: Uint8Array, port: number, address: string) => {
      if (!stopping) udp.send(message, port, address)
    }

    const close = (key: string, conn: Connection, reason: string) => {
      if (conn.closedBecause !== undefined) return
      conn.closedBecause = reason
      if (connections.get(key) === conn) connections.delete(key)
      conn.stream.destroy()
    }

    const open = (key: string, address: string, port: number, udp: dgram.Socket): Connection => {
      const options = { host: server.host, port: server.port }
      const stream = transport === "tls"
        ? tls.connect(net.isIP(server.host) === 0 ? { ...options, servername: server.host } : options)
        : net.connect(options)
      const conn: Connection = { stream, deframer: new Deframer(), connected: false, queue: [], queued: 0, lastSent: Date.now(), closedBecause: undefined }
      stream.setNoDelay(true)
      stream.setTimeout(limits.connectMillis, () => {
        if (!conn.connected) stream.destroy(Object.assign(new Error(`no ${transport.toUpperCase()} connection within ${limits.connectMillis} ms`), { code: "ETIMEDOUT" }))
      })
      stream.once(transport === "tls" ? "secureConnect" : "connect", () => {
        conn.connected = true
        stream.setTimeout(0)
        for (const frame of conn.queue) stream.write(frame)
        conn.queue = []
        conn.queued = 0
        log(Effect.logDebug(`turn bridge: ${transport.toUpperCase()} connection for ${key} up (${connections.size} open)`))
      })
      stream.on("data", (chunk: Buffer) => {
        if (conn.closedBecause !== undefined) return
        const messages = conn.deframer.push(chunk)
        if (Result.isFailure(messages)) {
          close(key, conn, `protocol error: ${messages.failure}`)
          log(Effect.logWarning(`turn bridge: closed the connection for ${key}: the server sent ${messages.failure} (not TURN over a stream?)`))
          return
        }
        for (const message of messages.success) reply(udp, message, port, address)
      })
      stream.on("error", (error: Error) => {
        if (!conn.connected) {
          const trouble = troubleOf(transport, error, limits.connectMillis)
          IceServers.noteStreamTrouble(trouble, Date.now())
          heldOff.set(key, Date.now() + limits.holdOffMillis)
          refuse(conn.queue, address, port, udp)
          log(Effect.logDebug(`turn bridge: ${transport.toUpperCase()} connection for ${key} failed: ${error.message}`))
        } else {
          log(Effect.logDebug(`turn bridge: connection for ${key} ended: ${error.message}`))
        }
        close(key, conn, error.message)
      })
      stream.on("close", () => {
        if (conn.closedBecause === undefined) log(Effect.logDebug(`turn bridge: the server closed the connection for ${key}`))
        close(key, conn, "closed")
      })
      return conn
    }

    /** libjuice's requests that cannot reach the server get an error response: its gathering ends now. */
    const refuse = (datagrams: ReadonlyArray<Uint8Array>, address: string, port: number, udp: dgram.Socket) => {
      for (const datagram of datagrams) {
        const refusal = refusalOf(datagram)
        if (refusal !== undefined) reply(udp, refusal, port, address)
      }
    }

    const forward = (udp: dgram.Socket) => (datagram: Buffer, from: dgram.RemoteInfo) => {
      const frame = frameDatagram(datagram)
      if (frame === undefined) {
        dropped++
        return
      }
      const key = `${from.address}:${from.port}`
      const now = Date.now()
      let conn = connections.get(key)
      if (conn === undefined) {
        if ((heldOff.get(key) ?? 0) > now) return refuse([datagram], from.address, from.port, udp)
        heldOff.delete(key)
        if (connections.size >= limits.maxConnections) {
          let idlest: readonly [string, Connection] | undefined
          for (const entry of connections) if (idlest === undefined || entry[1].lastSent < idlest[1].lastSent) idlest = entry
          if (idlest !== undefined) close(idlest[0], idlest[1], `all ${limits.maxConnections} connections in use: the idlest closed`)
        }
        conn = open(key, from.address, from.port, udp)
        connections.set(key, conn)
      }
      conn.lastSent = now
      if (conn.connected) {
        if (conn.stream.writableLength > limits.maxBufferedBytes) dropped++
        else conn.stream.write(frame)
      } else if (conn.queued + frame.length <= limits.maxQueuedBytes) {
        conn.queue.push(frame)
        conn.queued += frame.length
      } else {
        dropped++
      }
    }

    const udp = yield* Effect.acquireRelease(
      Effect.callback<dgram.Socket, TurnBridgeError>((resume) => {
        const socket = dgram.createSocket("udp4")
        const failed = (error: Error) => {
          socket.close()
          resume(Effect.fail(new TurnBridgeError({ server: shown, detail: `cannot bind a UDP socket on ${IceServers.BRIDGE_ADDRESS}: ${error.message}` })))
        }
        socket.once("error", failed)
        socket.bind(0, IceServers.BRIDGE_ADDRESS, () => {
          socket.off("error", failed)
          socket.on("error", (error) => log(Effect.logWarning(`turn bridge: UDP socket: ${error.message}`)))
          socket.on("message", forward(socket))
          resume(Effect.succeed(socket))
        })
      }),
      (socket) =>
        Effect.sync(() => {
          stopping = true
          for (const [key, conn] of [...connections]) close(key, conn, "the agent is stopping")
          IceServers.forgetBridge(socket.address().port)
          socket.close()
        })
    )
    const port = udp.address().port
    IceServers.nameBridge(port, shown)

    // connections whose sender went quiet (its peer connection closed) are closed; the drop count is told
    yield* Effect.forkScoped(Effect.forever(Effect.sleep("60 seconds").pipe(Effect.andThen(Effect.suspend(() => {
      const now = Date.now()
      for (const [key, conn] of [...connections]) if (now - conn.lastSent > limits.idleMillis) close(key, conn, "idle")
      for (const [key, until] of [...heldOff]) if (until <= now) heldOff.delete(key)
      if (dropped === 0) return Effect.void
      const line = `turn bridge: dropped ${dropped} datagram(s) in the last minute (not TURN, or more than the connection could take)`
      dropped = 0
      return Effect.logDebug(line)
    })))))
    yield* Effect.logDebug(`turn bridge: ${shown} at ${IceServers.BRIDGE_ADDRESS}:${port}`)
    return { port, connections: () => connections.size }
  }).pipe(Effect.annotateLogs({ component: "turn-bridge" }))
