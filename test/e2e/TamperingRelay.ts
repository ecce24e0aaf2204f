/**
 * A malicious signaling server for tests: a WebSocket proxy in front of the real one that passes
 * registration through untouched (so agents register as themselves) but, while `tampering` is on,
 * swaps the DTLS fingerprint in every relayed offer and answer for one of its own — what a man in
 * the middle would do. End-to-end signatures must make the receiving agent refuse those signals.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { createRequire } from "node:module"
import { join } from "node:path"
import type { RawData, WebSocket as WsSocket, WebSocketServer as WsServer } from "ws"
import { repoRoot } from "../kit/Process.ts"

// `ws` is a dependency of the transport package, not of the workspace root: load it from there.
const ws = createRequire(join(repoRoot, "packages", "transport", "package.json"))("ws") as typeof import("ws")

/** A fingerprint no agent has: the attacker's own certificate. */
const FORGED = Array.from({ length: 32 }, () => "AB").join(":")

export class TamperingRelay {
  readonly url: string
  /** Alter offers and answers while true; relay honestly once set to false. */
  tampering = true
  /** How many signals were altered so far. */
  tampered = 0
  private readonly server: WsServer
  private readonly sockets = new Set<WsSocket>()

  private constructor(server: WsServer, url: string) {
    this.server = server
    this.url = url
  }

  /** Listens on 127.0.0.1 (a free port) and proxies every connection to `upstream`. */
  static start(upstream: string): Promise<TamperingRelay> {
    return new Promise((done, fail) => {
      const server = new ws.WebSocketServer({ host: "127.0.0.1", port: 0 })
      server.once("error", fail)
      server.once("listening", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const relay = new TamperingRelay(server, `ws://127.0.0.1:${port}`)
        server.on("connection", (client) => relay.proxy(client, upstream))
        done(relay)
      })
    })
  }

  /** `start`, for the length of the scope. */
  static scoped(upstream: string): Effect.Effect<TamperingRelay, never, Scope.Scope> {
    return Effect.acquireRelease(Effect.promise(() => TamperingRelay.start(upstream)), (relay) => Effect.promise(() => relay.close()))
  }

  private proxy(client: WsSocket, upstream: string): void {
    const server = new ws.WebSocket(upstream)
    this.sockets.add(client).add(server)
    const pending: Array<string> = []
    const closeBoth = () => {
      for (const socket of [client, server]) {
        this.sockets.delete(socket)
        socket.terminate()
      }
    }
    client.on("error", closeBoth).on("close", closeBoth)
    server.on("error", closeBoth).on("close", closeBoth)
    server.on("open", () => {
      for (const text of pending.splice(0)) server.send(text)
    })
    server.on("message", (data: RawData) => client.send(text(data)))
    client.on("message", (data: RawData) => {
      const out = this.alter(text(data))
      if (server.readyState === ws.WebSocket.OPEN) server.send(out)
      else pending.push(out)
    })
  }

  /** A relayed offer or answer with the fingerprint swapped; anything else unchanged. */
  private alter(message: string): string {
    if (!this.tampering) return message
    let parsed: { type?: unknown; data?: { kind?: unknown; body?: unknown } }
    try {
      parsed = JSON.parse(message)
    } catch {
      return message
    }
    const data = parsed.data
    if (parsed.type !== "relay" || data === undefined || (data.kind !== "offer" && data.kind !== "answer") || typeof data.body !== "string") {
      return message
    }
    const forged = /a=fingerprint:sha-256 \S+/.test(data.body)
      ? data.body.replace(/a=fingerprint:sha-256 \S+/g, `a=fingerprint:sha-256 ${FORGED}`)
      : `${data.body}a=fingerprint:sha-256 ${FORGED}\r\n`
    this.tampered++
    return JSON.stringify({ ...parsed, data: { ...data, body: forged } })
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.terminate()
    return new Promise((done) => this.server.close(() => done()))
  }
}

const text = (data: RawData): string =>
  Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8")
