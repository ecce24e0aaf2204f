/**
 * `--ice` URLs as the agent reads them: what libjuice can use is accepted (credentials
 * percent-decoded, TURN handed over in the object form), what it would silently drop is refused
 * with the reason, and no password ever appears in what is shown.
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
      { kind: "stun", host: "stun.example.org", port: 3478 },
      { kind: "turn", host: "198.51.100.7", port: 3479, username: "al:ice", password: "p@ss/w" },
      { kind: "turn", host: "2001:db8::1", port: 3478, username: "bob", password: "x" }
    ])
    expect(Result.isSuccess(r) && r.success.shown).toEqual(["stun:stun.example.org:3478", "turn:al:ice:***@198.51.100.7:3479", "turn:bob:***@[2001:db8::1]:3478"])
  })

  it("hands TURN to the library in the object form (a : or @ in the credentials cannot be misparsed)", () => {
    expect(IceServers.toNative(["stun:10.0.0.1:3478", "turn:1796303556%3Aalice:c2VjcmV0%2B%2F%3D@10.0.0.1"])).toEqual([
      "stun:10.0.0.1:3478",
      { hostname: "10.0.0.1", port: 3478, username: "1796303556:alice", password: "c2VjcmV0+/=", relayType: "TurnUdp" }
    ])
  })

  it("refuses what libjuice would drop silently, saying why, with the password redacted", () => {
    expect(refusal(["turns:u:secret@turn.example.org:5349"])).toMatch(/turns:u:\*\*\*@turn\.example\.org:5349: turns: \(TLS\) is not supported/)
    expect(refusal(["turn:u:secret@turn.example.org?transport=tcp"])).toMatch(/transport=tcp is not supported/)
    expect(refusal(["turn:a:1@h1", "turn:b:2@h2", "turn:c:3@h3"])).toMatch(/at most 2 TURN servers/)
    expect(refusal(["turn:turn.example.org"])).toMatch(/needs USER:PASSWORD@/)
    expect(refusal(["stun:u:p@stun.example.org"])).toMatch(/takes no credentials/)
    expect(refusal(["http://example.org"])).toBeDefined()
    expect(refusal(["turn:u:secret@h:99999"])).toMatch(/port 99999/)
    for (const url of ["turns:u:secret@h", "turn:u:secret@h?transport=tcp", "turn:u:secret@h:99999", "turn:u:secret@h1 x"]) {
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
    expect(IceServers.noteLibraryLine("juice: Changing state to connecting", 3000)).toBeUndefined()
    // reported once per change, and once more when it is solved
    expect(IceServers.reportTurnState("TURN refused the credentials", "turn:u:***@h:3478")).toMatch(/^ICE: turn:u:\*\*\*@h:3478: TURN refused/)
    expect(IceServers.reportTurnState("TURN refused the credentials", "turn:u:***@h:3478")).toBeUndefined()
    expect(IceServers.reportTurnState(undefined, "turn:u:***@h:3478")).toMatch(/relay allocated again/)
    expect(IceServers.reportTurnState(undefined, "turn:u:***@h:3478")).toBeUndefined()
  })
})
