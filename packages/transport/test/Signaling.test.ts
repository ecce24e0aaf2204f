/**
 * The signaling server and client, and the signed signals they carry: relaying by peer id,
 * registration only with proof of the key, end-to-end signatures a relay cannot forge or alter,
 * and clients that register again after the server restarts. Real WebSockets on 127.0.0.1.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Queue, Result, Schedule, Scope } from "effect"
import { WebSocket } from "ws"
import { Identity } from "../src/Identity.ts"
import * as Signal from "../src/Signal.ts"
import * as Signaling from "../src/Signaling.ts"
import { eventually } from "../../../test/kit/Eventually.ts"

/** A raw WebSocket client speaking the server protocol by hand, to play a misbehaving peer. */
const rawClient = (url: string) =>
  Effect.acquireRelease(
    Effect.callback<{ ws: WebSocket; messages: Array<Record<string, unknown>>; closed: Promise<number> }>((resume) => {
      const ws = new WebSocket(url)
      const messages: Array<Record<string, unknown>> = []
      const closed = new Promise<number>((done) => ws.on("close", (code) => done(code)))
      ws.on("message", (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>))
      ws.on("open", () => resume(Effect.succeed({ ws, messages, closed })))
    }),
    ({ ws }) => Effect.sync(() => ws.terminate())
  )

/** The first message `find` picks among those received so far, waiting at most 4 s. */
const firstMessage = <A>(find: () => A | undefined, what: string) =>
  eventually(what, Effect.sync(find), "4 seconds", { interval: "20 millis" })

/** Answer the server's challenge by hand: claim `peerId`, proving it with `signer`'s key. */
const registerByHand = (
  client: { readonly ws: WebSocket; readonly messages: ReadonlyArray<Record<string, unknown>> },
  peerId: string,
  signer: ReturnType<typeof Identity.generate>
) =>
  Effect.gen(function*() {
    const challenge = yield* firstMessage(() => client.messages.find((m) => m.type === "challenge"), "the challenge")
    const signature = signer.sign(new TextEncoder().encode(JSON.stringify(["can-sync/register/v1", challenge.nonce, peerId])))
    client.ws.send(JSON.stringify({
      type: "register",
      peerId,
      publicKey: Buffer.from(signer.publicKey).toString("base64"),
      signature: Buffer.from(signature).toString("base64")
    }))
  })

describe("Signaling server", () => {
  it.live("relays a message between registered peers, stamped with the sender's proven id", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0 })
      const alice = Identity.generate()
      const bob = Identity.generate()
      const a = yield* Signaling.connect({ url: server.url, identity: alice })
      const b = yield* Signaling.connect({ url: server.url, identity: bob })
      yield* Effect.all([a.registered, b.registered])
      yield* a.send(bob.peerId, { hello: "bob" })
      const received = yield* Queue.take(b.inbound)
      expect(received).toEqual({ _tag: "Relay", from: alice.peerId, data: { hello: "bob" } })
    }).pipe(Effect.scoped))

  it.live("answers undeliverable, with the sender's reference, for a peer that is not registered", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0 })
      const alice = Identity.generate()
      const nobody = Identity.generate()
      const a = yield* Signaling.connect({ url: server.url, identity: alice })
      yield* a.registered
      yield* a.send(nobody.peerId, { hello: "?" }, "session-7")
      expect(yield* Queue.take(a.inbound)).toEqual({ _tag: "Undeliverable", to: nobody.peerId, ref: "session-7" })
    }).pipe(Effect.scoped))

  it.live("refuses to register an id without proof of its key, so nobody can take over another peer's id", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0 })
      const alice = Identity.generate()
      const mallory = Identity.generate()
      const client = yield* rawClient(server.url)
      // mallory signs the challenge with her own key but claims alice's id
      yield* registerByHand(client, alice.peerId, mallory)
      const code = yield* Effect.promise(() => client.closed)
      expect(code).toBe(4003)
      expect(client.messages).toContainEqual({ type: "error", message: "registration proof does not verify" })
      expect(client.messages.some((m) => m.type === "registered")).toBe(false)
    }).pipe(Effect.scoped))

  it.live("refuses to relay for a connection that has not registered", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0 })
      const client = yield* rawClient(server.url)
      client.ws.send(JSON.stringify({ type: "relay", to: Identity.generate().peerId, data: {} }))
      yield* Effect.promise(() => client.closed)
      expect(client.messages).toContainEqual({ type: "error", message: "register first" })
    }).pipe(Effect.scoped))

  it.live("refuses a connection past maxConnections with close code 1013, and takes one again once a slot frees", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0, maxConnections: 2 })
      const first = yield* rawClient(server.url)
      yield* rawClient(server.url)
      const third = yield* rawClient(server.url)
      expect(yield* Effect.promise(() => third.closed)).toBe(Signaling.CLOSE_FULL)
      expect(third.messages).toContainEqual({ type: "error", message: "server full: 2 connections" })
      expect(third.messages.find((m) => m.type === "challenge")).toBeUndefined()
      first.ws.close()
      yield* Effect.promise(() => first.closed)
      const fourth = yield* rawClient(server.url)
      yield* firstMessage(() => fourth.messages.find((m) => m.type === "challenge"), "a challenge for the connection that took the freed slot")
    }).pipe(Effect.scoped))

  it.live("announces its relay rate; a client paces itself under it, so a burst of relays arrives whole and in order", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0, relaysPerSecond: 10 })
      const raw = yield* rawClient(server.url)
      const challenge = yield* firstMessage(() => raw.messages.find((m) => m.type === "challenge"), "the challenge")
      expect(challenge.relaysPerSecond).toBe(10)
      const alice = Identity.generate()
      const bob = Identity.generate()
      const a = yield* Signaling.connect({ url: server.url, identity: alice })
      const b = yield* Signaling.connect({ url: server.url, identity: bob })
      yield* a.registered
      yield* b.registered
      // 40 at once through the client: the server's bucket holds 20, so unpaced about half would be dropped
      const COUNT = 40
      yield* Effect.forEach(Array.from({ length: COUNT }, (_, i) => i), (i) => a.send(bob.peerId, { i }), { concurrency: "unbounded", discard: true })
      const received: Array<unknown> = []
      yield* eventually(
        `all ${COUNT} relays at bob`,
        Effect.gen(function*() {
          for (const r of yield* Queue.takeAll(b.inbound)) received.push(r._tag === "Relay" ? (r.data as { i: number }).i : r)
          return received.length >= COUNT ? received : undefined
        }),
        "15 seconds"
      )
      expect(received).toEqual(Array.from({ length: COUNT }, (_, i) => i))
    }).pipe(Effect.scoped))

  it.live("drops relays past the per-connection rate, tells the sender, and still relays within it", () =>
    Effect.gen(function*() {
      const server = yield* Signaling.serve({ port: 0, relaysPerSecond: 10 })
      const alice = Identity.generate()
      const bob = Identity.generate()
      const b = yield* Signaling.connect({ url: server.url, identity: bob })
      yield* b.registered
      // alice by hand, to see the server's error message
      const a = yield* rawClient(server.url)
      yield* registerByHand(a, alice.peerId, alice)
      yield* firstMessage(() => a.messages.find((m) => m.type === "registered"), "registration")
      // a burst of 100 at once: the bucket holds 20
      const started = Date.now()
      for (let i = 0; i < 100; i++) a.ws.send(JSON.stringify({ type: "relay", to: bob.peerId, data: { i } }))
      const error = yield* firstMessage(() => a.messages.find((m) => m.type === "error"), "the rate-limit error")
      expect(String(error.message)).toMatch(/^rate limited: more than 10 relays per second; \d+ dropped$/)
      yield* Effect.sleep("300 millis")
      const received = yield* Queue.takeAll(b.inbound)
      // the burst allowance, plus at most what refilled (10 a second) while the burst was arriving
      const refilled = Math.ceil(((Date.now() - started) / 1000) * 10)
      expect(received.length).toBeGreaterThanOrEqual(20)
      expect(received.length).toBeLessThanOrEqual(20 + refilled)
      expect(received.map((r) => (r._tag === "Relay" ? (r.data as { i: number }).i : -1))).toEqual(
        Array.from({ length: received.length }, (_, i) => i)
      )
      // a second later the bucket has refilled: relays flow again
      yield* Effect.sleep("1100 millis")
      a.ws.send(JSON.stringify({ type: "relay", to: bob.peerId, data: { after: true } }))
      expect(yield* Queue.take(b.inbound).pipe(Effect.timeout("5 seconds"))).toEqual({ _tag: "Relay", from: alice.peerId, data: { after: true } })
    }).pipe(Effect.scoped))

  it.live("clients register again after the server restarts on the same port", () =>
    Effect.gen(function*() {
      const first = yield* Scope.make()
      const server = yield* Signaling.serve({ port: 0 }).pipe(Scope.provide(first))
      const alice = Identity.generate()
      const bob = Identity.generate()
      const a = yield* Signaling.connect({ url: server.url, identity: alice, backoff: { base: "50 millis", cap: "200 millis" } })
      const b = yield* Signaling.connect({ url: server.url, identity: bob, backoff: { base: "50 millis", cap: "200 millis" } })
      yield* Effect.all([a.registered, b.registered])
      yield* Scope.close(first, Exit.void)
      // while it is down, sending fails at once instead of queueing
      const down = yield* Effect.flip(a.send(bob.peerId, {})).pipe(
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 100 })
      )
      expect(down._tag).toBe("SignalingUnavailable")

      yield* Signaling.serve({ port: server.port })
      const registrations = Effect.all([a.registrations, b.registrations])
      yield* registrations.pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: ([x, y]) => x === 2 && y === 2, times: 200 })
      )
      expect(yield* registrations).toEqual([2, 2])
      yield* a.send(bob.peerId, "after the restart")
      expect(yield* Queue.take(b.inbound)).toEqual({ _tag: "Relay", from: alice.peerId, data: "after the restart" })
    }).pipe(Effect.scoped))
})

describe("Signed signals", () => {
  const alice = Identity.generate()
  const bob = Identity.generate()
  const mallory = Identity.generate()
  const sdp = "v=0\r\na=fingerprint:sha-256 AA:BB\r\n"

  it("verify for the addressee when nothing was altered", () => {
    const signal = Signal.sign(alice, bob.peerId, "offer", "1.1", sdp)
    const verified = Result.getOrThrow(Signal.verify(bob.peerId, alice.peerId, signal))
    expect(verified).toMatchObject({ kind: "offer", sid: "1.1", from: alice.peerId, body: sdp })
  })

  const refusal = (signal: unknown, relayedFrom = alice.peerId) => {
    const r = Signal.verify(bob.peerId, relayedFrom, signal)
    return Result.isFailure(r) ? r.failure.reason : "accepted"
  }

  it("are refused when a relay alters the SDP (a substituted DTLS fingerprint)", () => {
    const signal = Signal.sign(alice, bob.peerId, "offer", "1.1", sdp)
    expect(refusal({ ...signal, body: sdp.replace("AA:BB", "EE:FF") })).toBe("the signature does not verify")
  })

  it("are refused when a relay re-signs them with its own key", () => {
    const forged = Signal.sign(mallory, bob.peerId, "offer", "1.1", sdp)
    expect(refusal({ ...forged, from: alice.peerId })).toBe(`the public key is not ${alice.peerId}'s`)
  })

  it("are refused when the signature, the kind, the session or the addressee was changed", () => {
    const signal = Signal.sign(alice, bob.peerId, "offer", "1.1", sdp)
    const sig = Buffer.from(signal.signature, "base64")
    sig[5]! ^= 0x40
    expect(refusal({ ...signal, signature: sig.toString("base64") })).toBe("the signature does not verify")
    expect(refusal({ ...signal, kind: "answer" })).toBe("the signature does not verify")
    expect(refusal({ ...signal, sid: "1.2" })).toBe("the signature does not verify")
    expect(refusal(Signal.sign(alice, mallory.peerId, "offer", "1.1", sdp))).toBe(`addressed to ${mallory.peerId}, not to us`)
  })

  it("are refused when the server says they came from someone else, or when malformed", () => {
    const signal = Signal.sign(alice, bob.peerId, "offer", "1.1", sdp)
    expect(refusal(signal, mallory.peerId)).toBe(`relayed as coming from ${mallory.peerId}`)
    expect(refusal({ hello: 1 })).toBe("malformed signal")
  })
})
