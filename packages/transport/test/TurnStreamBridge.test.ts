/**
 * The TURN stream bridge: its framing with real STUN and ChannelData bytes (split and coalesced
 * reads, padding, a bad first byte, an over-long length), then the bridge itself between real
 * UDP senders and a TCP server that answers each framed message (one connection per sender).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as dgram from "node:dgram"
import * as net from "node:net"
import * as IceServers from "../src/IceServers.ts"
import { Deframer, frameDatagram, MAX_MESSAGE_BYTES, refusalOf, start, troubleOf } from "../src/TurnStreamBridge.ts"

/** A STUN request (Binding unless `type` says): length 8, magic cookie, transaction id, one 8-byte attribute. */
const stun = (id: number, type = 0x0001) => {
  const b = Buffer.alloc(28)
  b.writeUInt16BE(type, 0)
  b.writeUInt16BE(8, 2)
  b.writeUInt32BE(0x2112a442, 4)
  b.writeUInt32BE(id, 8)
  b.writeUInt16BE(0x8022, 20) // SOFTWARE
  b.writeUInt16BE(4, 22)
  b.write("test", 24)
  return b
}
/** ChannelData on channel 0x4001 with `payload`, unpadded (as over UDP). */
const channelData = (payload: string) => {
  const body = Buffer.from(payload)
  const b = Buffer.alloc(4 + body.length)
  b.writeUInt16BE(0x4001, 0)
  b.writeUInt16BE(body.length, 2)
  body.copy(b, 4)
  return b
}
const hex = (xs: ReadonlyArray<Uint8Array>) => xs.map((x) => Buffer.from(x).toString("hex"))
const ok = (r: Result.Result<Array<Uint8Array>, string>) => {
  if (Result.isFailure(r)) throw new Error(r.failure)
  return r.success
}

describe("TURN over a stream: framing", () => {
  it("sends STUN as it is and pads ChannelData to a multiple of 4 with zeros", () => {
    const s = stun(1)
    expect(frameDatagram(s)).toBe(s)
    const framed = Buffer.from(frameDatagram(channelData("hello"))!)
    expect(framed.length).toBe(12) // 4 + 5, padded to 12
    expect(framed.toString("hex")).toBe(Buffer.concat([channelData("hello"), Buffer.alloc(3)]).toString("hex"))
    const four = channelData("abcd")
    expect(frameDatagram(four)).toBe(four) // already a multiple of 4
    // not TURN, or cut short: dropped
    expect(frameDatagram(Buffer.from([0x80, 0, 0, 0]))).toBeUndefined()
    expect(frameDatagram(stun(1).subarray(0, 24))).toBeUndefined()
    expect(frameDatagram(channelData("hello").subarray(0, 6))).toBeUndefined()
    expect(frameDatagram(Buffer.from([0x40]))).toBeUndefined()
  })

  it("cuts coalesced and split reads into messages, without the padding", () => {
    const a = stun(7)
    const b = channelData("hello")
    const c = channelData("abcd")
    const stream = Buffer.concat([a, Buffer.from(frameDatagram(b)!), c, stun(8)])
    // all at once
    expect(hex(ok(new Deframer().push(stream)))).toEqual(hex([a, b, c, stun(8)]))
    // one byte at a time: the same messages
    const d = new Deframer()
    const out: Array<Uint8Array> = []
    for (let i = 0; i < stream.length; i++) out.push(...ok(d.push(stream.subarray(i, i + 1))))
    expect(hex(out)).toEqual(hex([a, b, c, stun(8)]))
    // a split inside the padding: the message comes once the padding has
    const e = new Deframer()
    const framed = Buffer.from(frameDatagram(b)!)
    expect(ok(e.push(framed.subarray(0, 10)))).toEqual([])
    expect(hex(ok(e.push(Buffer.concat([framed.subarray(10), a]))))).toEqual(hex([b, a]))
  })

  it("refuses a stream that is not TURN: a bad first byte, an over-long or unaligned length", () => {
    const bad = new Deframer().push(Buffer.concat([stun(1), Buffer.from([0xc0, 0x01, 0x00, 0x04, 1, 2, 3, 4])]))
    expect(Result.isFailure(bad) && bad.failure).toMatch(/first byte 0xc0 is neither STUN nor ChannelData/)
    // text (an HTTP error page, say) reads as ChannelData of an absurd length
    const text = new Deframer().push(Buffer.from("HTTP/1.1 400 Bad Request\r\n"))
    expect(Result.isFailure(text) && text.failure).toMatch(/a message of 21584 bytes/)
    const long = Buffer.alloc(8)
    long.writeUInt16BE(0x4001, 0)
    long.writeUInt16BE(MAX_MESSAGE_BYTES + 4, 2)
    const tooLong = new Deframer().push(long)
    expect(Result.isFailure(tooLong) && tooLong.failure).toMatch(/at most 16384/)
    const odd = stun(1)
    odd.writeUInt16BE(7, 2)
    const unaligned = new Deframer().push(odd)
    expect(Result.isFailure(unaligned) && unaligned.failure).toMatch(/not a multiple of 4/)
  })

  it("turns connection failures into a line an operator can act on", () => {
    const error = (code: string, message: string) => Object.assign(new Error(message), { code })
    expect(troubleOf("tls", error("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "unable to verify the first certificate"))).toMatch(
      /^TLS to the TURN server failed: certificate not accepted .*check the host in --ice or the CA .*NODE_EXTRA_CA_CERTS/
    )
    expect(troubleOf("tls", error("ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match"))).toMatch(/certificate not accepted/)
    expect(troubleOf("tcp", error("ECONNREFUSED", "connect ECONNREFUSED"))).toMatch(/refused the TCP connection/)
    expect(troubleOf("tls", error("ERR_SSL_WRONG_VERSION_NUMBER", "wrong version number"))).toMatch(/TLS port/)
  })
})

/** A TCP "TURN server" on loopback: answers each message with itself (connections counted, a bad reply on demand). */
const echoServer = Effect.acquireRelease(
  Effect.callback<{ readonly server: net.Server; readonly port: number; readonly accepted: () => number }>((resume) => {
    let accepted = 0
    const server = net.createServer((socket) => {
      accepted++
      const d = new Deframer()
      socket.on("data", (chunk) => {
        const messages = d.push(chunk)
        if (Result.isFailure(messages)) return void socket.destroy()
        for (const m of messages.success) {
          if (Buffer.from(m).includes("garbage")) socket.write("garbage!")
          else socket.write(frameDatagram(m)!)
        }
      })
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as net.AddressInfo).port, accepted: () => accepted })))
  }),
  ({ server }) => Effect.sync(() => server.close())
)

const udpClient = Effect.acquireRelease(
  Effect.callback<dgram.Socket>((resume) => {
    const socket = dgram.createSocket("udp4")
    socket.bind(0, "127.0.0.1", () => resume(Effect.succeed(socket)))
  }),
  (socket) => Effect.sync(() => socket.close())
)

/** Sends `datagram` to the bridge and waits (5 s at most) for the one that comes back. */
const roundTrip = (client: dgram.Socket, port: number, datagram: Uint8Array) =>
  Effect.callback<Buffer>((resume) => {
    const onMessage = (m: Buffer) => {
      client.off("message", onMessage)
      resume(Effect.succeed(m))
    }
    client.on("message", onMessage)
    client.send(datagram, port, "127.0.0.1")
    return Effect.sync(() => void client.off("message", onMessage))
  }).pipe(Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error("no answer through the bridge within 5 s")) }))

describe("TURN over a stream: the bridge", () => {
  it("answers a request it cannot carry with a 500 error response of the same method and transaction", () => {
    const allocate = stun(0xabcdef, 0x0003)
    const refusal = Buffer.from(refusalOf(allocate)!)
    expect(refusal.readUInt16BE(0)).toBe(0x0113) // Allocate error response
    expect(refusal.subarray(4, 20).toString("hex")).toBe(allocate.subarray(4, 20).toString("hex"))
    expect(refusal.readUInt16BE(2)).toBe(refusal.length - 20)
    expect(refusal.length % 4).toBe(0)
    expect(refusal.readUInt16BE(20)).toBe(0x0009) // ERROR-CODE
    expect(refusal[26]! * 100 + refusal[27]!).toBe(500)
    expect(ok(new Deframer().push(refusal))).toHaveLength(1) // a well-formed STUN message
    expect(refusalOf(refusal)).toBeUndefined() // not a request
    expect(refusalOf(channelData("x"))).toBeUndefined()
  })

  it.live("a server that refuses the connection: the request is answered at once and the trouble is noted for the operator", () =>
    Effect.gen(function*() {
      // a port nobody listens on: bind one and close it
      const port = yield* Effect.callback<number>((resume) => {
        const probe = net.createServer().listen(0, "127.0.0.1", () => {
          const p = (probe.address() as net.AddressInfo).port
          probe.close(() => resume(Effect.succeed(p)))
        })
      })
      const turn = IceServers.parse(`turn:u:secret@127.0.0.1:${port}?transport=tcp`)
      if (Result.isFailure(turn)) return yield* Effect.die(turn.failure)
      const since = Date.now()
      const bridge = yield* start(turn.success)
      const client = yield* udpClient
      const answer = yield* roundTrip(client, bridge.port, stun(9, 0x0003))
      expect(answer.readUInt16BE(0)).toBe(0x0113)
      expect(IceServers.troubleSince(since)).toMatch(/refused the TCP connection/)
      // held off: the next request is refused without a new connection
      expect((yield* roundTrip(client, bridge.port, stun(10, 0x0003))).readUInt16BE(0)).toBe(0x0113)
      expect(bridge.connections()).toBe(0)
    }).pipe(Effect.scoped))

  it.live("carries datagrams over one TCP connection per sender, and a sender whose server talks garbage reconnects", () =>
    Effect.gen(function*() {
      const server = yield* echoServer
      const turn = IceServers.parse(`turn:u:secret@127.0.0.1:${server.port}?transport=tcp`)
      if (Result.isFailure(turn)) return yield* Effect.die(turn.failure)
      const bridge = yield* start(turn.success)
      const a = yield* udpClient
      const b = yield* udpClient
      expect((yield* roundTrip(a, bridge.port, stun(1))).toString("hex")).toBe(stun(1).toString("hex"))
      // ChannelData comes back without the padding the stream needed
      expect((yield* roundTrip(a, bridge.port, channelData("hello"))).toString("hex")).toBe(channelData("hello").toString("hex"))
      expect((yield* roundTrip(b, bridge.port, channelData("from b"))).toString()).toContain("from b")
      expect(server.accepted()).toBe(2)
      expect(bridge.connections()).toBe(2)
      // the server answers a's next message with bytes that are not TURN: a's connection closes, b's stays
      a.send(channelData("garbage"), bridge.port, "127.0.0.1")
      yield* Effect.sleep("200 millis").pipe(Effect.repeat({ until: () => bridge.connections() === 1, times: 25 }))
      expect(bridge.connections()).toBe(1)
      // a's next datagram opens a new connection
      expect((yield* roundTrip(a, bridge.port, stun(2))).toString("hex")).toBe(stun(2).toString("hex"))
      expect(server.accepted()).toBe(3)
    }).pipe(Effect.scoped))
})
