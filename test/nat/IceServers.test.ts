/**
 * `--ice` URLs as the agent reads them: what the agent can use is accepted (credentials
 * percent-decoded, TURN handed over in the object form, TURN over TCP or TLS as its local bridge),
 * what it cannot is refused with the reason, and no password ever appears in what is shown.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as IceServers from "../../packages/transport/src/IceServers.ts"

const refusal = (urls: ReadonlyArray<string>) => {
  const r = IceServers.parseAll(urls)
  return Result.isFailure(r) ? r.failure.message : undefined
}

describe("ICE servers", () => {
  it("reads stun: and turn: URLs, default port 3478, credentials percent-decoded", () => {
    const r = IceServers.parseAll(["stun:stun.example.org", "turn:al%3Aice:p%40ss%2Fw@198.51.100.7:3479?transport=udp", "turn:bob:x@[2001:db8::1]"])
    expect(Result.isSuccess(r) && r.success.servers).toEqual([
      { kind: "stun", transport: "udp", host: "stun.example.org", port: 3478 },
      { kind: "turn", transport: "udp", host: "198.51.100.7", port: 3479, username: "al:ice", password: "p@ss/w" },
      { kind: "turn", transport: "udp", host: "2001:db8::1", port: 3478, username: "bob", password: "x" }
    ])
    expect(Result.isSuccess(r) && r.success.shown).toEqual(["stun:stun.example.org:3478", "turn:al:ice:***@198.51.100.7:3479", "turn:bob:***@[2001:db8::1]:3478"])
  })

  it("reads turns: (TLS, default port 5349) and turn:...?transport=tcp, shown redacted with their transport", () => {
    const r = IceServers.parseAll(["turns:u:s%40cret@turn.example.org", "turn:v:pw@198.51.100.7?transport=TCP"])
    expect(Result.isSuccess(r) && r.success.servers).toEqual([
      { kind: "turn", transport: "tls", host: "turn.example.org", port: 5349, username: "u", password: "s@cret" },
      { kind: "turn", transport: "tcp", host: "198.51.100.7", port: 3478, username: "v", password: "pw" }
    ])
    expect(Result.isSuccess(r) && r.success.shown).toEqual(["turns:u:***@turn.example.org:5349", "turn:v:***@198.51.100.7:3478?transport=tcp"])
    // the library gets each as UDP TURN at its bridge on 127.0.0.1; without a bridge, not at all
    const urls = ["turns:u:s%40cret@turn.example.org", "turn:v:pw@198.51.100.7?transport=tcp", "turn:w:x@198.51.100.8"]
    expect(IceServers.toNative(urls, new Map([[urls[0]!, 40001], [urls[1]!, 40002]]))).toEqual([
      { hostname: "127.0.0.1", port: 40001, username: "u", password: "s@cret", relayType: "TurnUdp" },
      { hostname: "127.0.0.1", port: 40002, username: "v", password: "pw", relayType: "TurnUdp" },
      { hostname: "198.51.100.8", port: 3478, username: "w", password: "x", relayType: "TurnUdp" }
    ])
    expect(IceServers.toNative(urls)).toEqual([{ hostname: "198.51.100.8", port: 3478, username: "w", password: "x", relayType: "TurnUdp" }])
    // the library's lines name the bridge; operators read the server
    IceServers.nameBridge(40001, "turns:u:***@turn.example.org:5349")
    expect(IceServers.unbridge("Using TURN server 127.0.0.1:40001")).toBe("Using TURN server turns:u:***@turn.example.org:5349")
    IceServers.forgetBridge(40001)
    expect(IceServers.unbridge("Using TURN server 127.0.0.1:40001")).toBe("Using TURN server 127.0.0.1:40001")
  })

  it("hands TURN to the library in the object form (a : or @ in the credentials cannot be misparsed)", () => {
    expect(IceServers.toNative(["stun:10.0.0.1:3478", "turn:1796303556%3Aalice:c2VjcmV0%2B%2F%3D@10.0.0.1"])).toEqual([
      "stun:10.0.0.1:3478",
      { hostname: "10.0.0.1", port: 3478, username: "1796303556:alice", password: "c2VjcmV0+/=", relayType: "TurnUdp" }
    ])
  })

  it("refuses what the agent cannot use, saying why, with the password redacted", () => {
    expect(refusal(["stuns:turn.example.org:5349"])).toMatch(/stuns: \(STUN over TLS\) is not supported/)
    expect(refusal(["turn:u:secret@turn.example.org?transport=sctp"])).toMatch(/transport=sctp is not one of udp, tcp/)
    expect(refusal(["turns:u:secret@turn.example.org?transport=udp"])).toMatch(/turns: runs over TLS on TCP/)
    expect(refusal(["turns:turn.example.org"])).toMatch(/a turns: URL needs USER:PASSWORD@/)
    expect(refusal(["turn:a:1@h1", "turn:b:2@h2", "turn:c:3@h3"])).toMatch(/at most 2 TURN servers/)
    expect(refusal(["turns:a:1@h1", "turn:b:2@h2?transport=tcp", "turn:c:3@h3"])).toMatch(/at most 2 TURN servers/)
    expect(refusal(["turn:turn.example.org"])).toMatch(/needs USER:PASSWORD@/)
    expect(refusal(["stun:u:p@stun.example.org"])).toMatch(/takes no credentials/)
    expect(refusal(["http://example.org"])).toBeDefined()
    expect(refusal(["turn:u:secret@h:99999"])).toMatch(/port 99999/)
    for (const url of ["turns:u:secret@h?transport=udp", "turn:u:secret@h?transport=quic", "turn:u:secret@h:99999", "turn:u:secret@h1 x"]) {
      expect(refusal([url]) ?? "").not.toContain("secret")
    }
  })

  it("reads a port range MIN-MAX", () => {
    expect(IceServers.parsePortRange("40000-40100")).toEqual(Result.succeed({ begin: 40000, end: 40100 }))
    expect(Result.isFailure(IceServers.parsePortRange("40100-40000"))).toBe(true)
    expect(Result.isFailure(IceServers.parsePortRange("80-90"))).toBe(true)
    expect(Result.isFailure(IceServers.parsePortRange("40000"))).toBe(true)
  })

  it("names the path of a selected pair: relayed if either end is a relay, server-reflexive through NATs, else host", () => {
    const pair = (local: string, remote: string) => ({ local: { type: local, address: "100.64.1.2", port: 40001 }, remote: { type: remote, address: "100.64.2.2", port: 40002 } })
    expect(IceServers.pathOf(pair("relay", "prflx"))?.kind).toBe("relayed")
    expect(IceServers.pathOf(pair("host", "relay"))?.kind).toBe("relayed")
    expect(IceServers.pathOf(pair("srflx", "srflx"))?.kind).toBe("server-reflexive")
    expect(IceServers.pathOf(pair("prflx", "host"))?.kind).toBe("server-reflexive")
    expect(IceServers.pathOf(pair("host", "host"))?.kind).toBe("host")
    expect(IceServers.pathOf(null)).toBeUndefined()
    expect(IceServers.describePath(IceServers.pathOf(pair("srflx", "prflx"))!)).toBe(
      "server-reflexive (local srflx 100.64.1.2:40001 <-> remote prflx 100.64.2.2:40002)"
    )
  })

  it("translates the library's TURN failures into one line an operator can act on", () => {
    expect(IceServers.noteLibraryLine("juice: TURN authentication failed", 1000)).toMatch(/TURN refused the credentials/)
    expect(IceServers.troubleSince(500)).toMatch(/TURN refused the credentials/)
    expect(IceServers.troubleSince(2000)).toBeUndefined()
    // a bridge's own finding (TLS refused the certificate) wins over what the library says after it
    IceServers.noteStreamTrouble("TLS to the TURN server failed: certificate not accepted", 2500)
    IceServers.noteLibraryLine("juice: TURN allocation failed", 2600)
    expect(IceServers.troubleSince(2000)).toMatch(/^TLS to the TURN server failed/)
    expect(IceServers.troubleSince(2550)).toMatch(/refused or dropped the relay allocation/)
    expect(IceServers.noteLibraryLine("juice: Changing state to connecting", 3000)).toBeUndefined()
    // reported once per change, and once more when it is solved
    expect(IceServers.reportTurnState("TURN refused the credentials", "turn:u:***@h:3478")).toMatch(/^ICE: turn:u:\*\*\*@h:3478: TURN refused/)
    expect(IceServers.reportTurnState("TURN refused the credentials", "turn:u:***@h:3478")).toBeUndefined()
    expect(IceServers.reportTurnState(undefined, "turn:u:***@h:3478")).toMatch(/relay allocated again/)
    expect(IceServers.reportTurnState(undefined, "turn:u:***@h:3478")).toBeUndefined()
  })
})
