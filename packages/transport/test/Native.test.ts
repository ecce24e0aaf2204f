/**
 * How our options become node-datachannel's peer-connection config (ICE servers, bind address,
 * MTU), how the DTLS fingerprint is read from an SDP, how the library's own account of a failure
 * (here a forged fingerprint) reaches our log, and which build of the library runs: can-sync's
 * (vendor/datachannel) where it can, upstream's with a warning elsewhere.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Logger, References } from "effect"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { fingerprintOf, libraryVersion, LOOPBACK_MTU, missingLibraryFix, peerConnection, rtcConfig, useLibrary } from "../src/Native.ts"

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

const vendor = fileURLToPath(new URL("../../../vendor/datachannel/", import.meta.url))
const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")
/** The package node-datachannel loads its binding from on linux-x64-gnu (the root package.json points it at vendor/). */
const bindingPackage = () => {
  const nodeDataChannel = createRequire(import.meta.url).resolve("node-datachannel")
  return dirname(realpathSync(createRequire(nodeDataChannel).resolve("@node-datachannel/linux-x64-gnu")))
}
const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime
const [major = 0, minor = 0] = (glibc ?? "0.0").split(".").map(Number)
const vendoredHere = process.platform === "linux" && process.arch === "x64" && (major > 2 || (major === 2 && minor >= 30))

describe("which build of the library runs", () => {
  it.skipIf(!vendoredHere)("on linux-x64 with glibc 2.30 or newer: can-sync's build, the very binary SHA256SUMS records", () => {
    expect(libraryVersion).toMatch(/^0\.24\.5-cansync\.\d+$/)
    expect(missingLibraryFix()).toBeUndefined()
    const [recorded, file] = readFileSync(join(vendor, "SHA256SUMS"), "utf8").trim().split(/\s+/)
    expect(file).toBe("linux-x64-gnu/node_datachannel.node")
    expect(sha256(join(vendor, file!))).toBe(recorded)
    expect(sha256(join(bindingPackage(), "node_datachannel.node"))).toBe(recorded) // what pnpm installed
  })

  it.skipIf(!vendoredHere)("where can-sync's build cannot load, node-datachannel still gets a binding: upstream's", () => {
    // the vendored package without its binary, next to the upstream one it falls back to
    const dir = mkdtempSync(join(tmpdir(), "can-sync-binding-"))
    try {
      const installed = bindingPackage()
      mkdirSync(join(dir, "node_modules"))
      const upstream = dirname(createRequire(join(installed, "index.cjs")).resolve("upstream-binding"))
      symlinkSync(upstream, join(dir, "node_modules", "upstream-binding"))
      copyFileSync(join(installed, "index.cjs"), join(dir, "index.cjs"))
      const version = execFileSync(process.execPath, ["-e", `console.log(require(${JSON.stringify(join(dir, "index.cjs"))}).getLibraryVersion())`], {
        encoding: "utf8",
        timeout: 30_000
      }).trim()
      expect(version).toBe("0.24.5")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 40_000)

  it("upstream's library is named with the reason and the risk; can-sync's build gets no warning", () => {
    const oldGlibc = () => ({ platform: "linux", arch: "x64", glibc: "2.28" })
    expect(missingLibraryFix("0.24.5-cansync.1", oldGlibc)).toBeUndefined()
    expect(missingLibraryFix("0.24.5", oldGlibc)).toBe(
      "libdatachannel 0.24.5 from upstream runs here, not can-sync's build (it did not load; it needs glibc 2.30 or newer, this is 2.28): " +
        "a connection relayed through TURN can, rarely, hang the agent during the DTLS handshake"
    )
    expect(missingLibraryFix("0.24.5", () => ({ platform: "darwin", arch: "arm64", glibc: undefined }))).toMatch(
      /^libdatachannel 0\.24\.5 from upstream runs here, not can-sync's build \(it is built for linux-x64 with glibc only; this is darwin-arm64\): /
    )
  })
})
