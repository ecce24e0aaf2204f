/**
 * How our options become node-datachannel's peer-connection config (ICE servers, bind address,
 * MTU), how the DTLS fingerprint is read from an SDP, and how the library's own account of a
 * failure (here a forged fingerprint) reaches our log.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Logger, References } from "effect"
import { fingerprintOf, LOOPBACK_MTU, peerConnection, rtcConfig, useLibrary } from "../src/Native.ts"

describe("peer-connection config", () => {
  it("needs nothing on loopback or a LAN: no ICE servers, library defaults", () => {
    expect(rtcConfig({})).toEqual({ iceServers: [] })
  })

  it("passes STUN and TURN servers (TURN in the object form), port range and bind address through", () => {
    const config = rtcConfig({
      iceServers: ["stun:stun.example.org:3478", "turn:user:s%40cret@turn.example.org:3478?transport=udp"],
      bindAddress: "192.168.1.20",
      portRange: { begin: 50000, end: 50100 }
    })
    expect(config).toEqual({
      iceServers: [
        "stun:stun.example.org:3478",
        { hostname: "turn.example.org", port: 3478, username: "user", password: "s@cret", relayType: "TurnUdp" }
      ],
      bindAddress: "192.168.1.20",
      portRangeBegin: 50000,
      portRangeEnd: 50100
    })
  })

  it("never raises the MTU by itself (browsers fail on packets above ~2 KB), only when asked", () => {
    expect(rtcConfig({ bindAddress: "127.0.0.1" }).mtu).toBeUndefined()
    expect(rtcConfig({ bindAddress: "::1" }).mtu).toBeUndefined()
    expect(rtcConfig({ bindAddress: "127.0.0.1", mtu: LOOPBACK_MTU }).mtu).toBe(LOOPBACK_MTU)
    expect(rtcConfig({ bindAddress: "127.0.0.1", mtu: 1280 }).mtu).toBe(1280)
    expect(LOOPBACK_MTU).toBeLessThan(4096) // libjuice receives at most 4096 bytes per datagram
  })
})

describe("fingerprintOf", () => {
  it("reads and normalises the DTLS fingerprint of an SDP", () => {
    const sdp = "v=0\r\no=rtc 1 0 IN IP4 127.0.0.1\r\na=fingerprint:SHA-256 ab:cd:EF:01\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    expect(fingerprintOf(sdp)).toBe("sha-256 AB:CD:EF:01")
    expect(fingerprintOf("v=0\r\nm=application 9\r\n")).toBeUndefined()
  })
})

describe("the library's log", () => {
  it.live("a DTLS failure is logged as ours, as a warning with the library's reason", () => {
    const lines: Array<{ readonly level: string; readonly message: string; readonly component: unknown }> = []
    const capture = Logger.make((options) => {
      const annotations = options.fiber.getRef(References.CurrentLogAnnotations)
      lines.push({ level: options.logLevel, message: String(options.message), component: annotations.component })
    })
    return Effect.gen(function*() {
      yield* useLibrary
      const rtc = { bindAddress: "127.0.0.1" }
      const a = yield* peerConnection("a", rtc)
      const b = yield* peerConnection("b", rtc)
      const failed = yield* Deferred.make<void>()
      a.onStateChange((state) => {
        if (state === "failed") Deferred.doneUnsafe(failed, Effect.void)
      })
      a.onLocalDescription((sdp, type) => b.setRemoteDescription(sdp, type))
      a.onLocalCandidate((candidate, mid) => b.addRemoteCandidate(candidate, mid))
      // b's answer reaches a with its certificate fingerprint altered: a man in the middle
      b.onLocalDescription((sdp, type) => a.setRemoteDescription(sdp.replace(/(a=fingerprint:sha-256 )(..)/i, (_, head: string, first: string) => `${head}${first === "00" ? "01" : "00"}`), type))
      b.onLocalCandidate((candidate, mid) => a.addRemoteCandidate(candidate, mid))
      // closed before the connections (cleanup() crashes on a channel left open after its connection)
      yield* Effect.acquireRelease(Effect.sync(() => a.createDataChannel("forged")), (dc) => Effect.sync(() => dc.close()))
      yield* Deferred.await(failed).pipe(Effect.timeout("20 seconds"))
      // the log lines arrive through the library's thread-safe callback: give them a moment
      yield* Effect.sleep("200 millis")
      const library = lines.filter((line) => line.component === "libdatachannel")
      expect(library.find((line) => /Invalid fingerprint/.test(line.message))).toMatchObject({ level: "Warn" })
      expect(library.every((line) => line.message.startsWith("libdatachannel: "))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
  }, 30_000)
})
