/**
 * How our options become node-datachannel's peer-connection config (ICE servers, bind address,
 * MTU), and how the DTLS fingerprint is read from an SDP.
 */
import { describe, expect, it } from "@effect/vitest"
import { fingerprintOf, LOOPBACK_MTU, rtcConfig } from "../src/Native.ts"

describe("peer-connection config", () => {
  it("needs nothing on loopback or a LAN: no ICE servers, library defaults", () => {
    expect(rtcConfig({})).toEqual({ iceServers: [] })
  })

  it("passes STUN and TURN servers, port range and bind address through", () => {
    const config = rtcConfig({
      iceServers: ["stun:stun.example.org:3478", "turn:user:secret@turn.example.org:3478?transport=tcp"],
      bindAddress: "192.168.1.20",
      portRange: { begin: 50000, end: 50100 }
    })
    expect(config).toEqual({
      iceServers: ["stun:stun.example.org:3478", "turn:user:secret@turn.example.org:3478?transport=tcp"],
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
