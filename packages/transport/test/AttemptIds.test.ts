/**
 * Attempt ids: which offers and knocks from a peer count as new. Pure logic, no network.
 */
import { describe, expect, it } from "@effect/vitest"
import { makeIssuer, parse, randomBoot, SeenIds } from "../src/AttemptIds.ts"

describe("AttemptIds", () => {
  it("issues ids of one random boot and a counter; two starts never share a boot", () => {
    const next = makeIssuer("b007")
    expect([next(), next(), next()]).toEqual(["b007.1", "b007.2", "b007.3"])
    expect(randomBoot()).toMatch(/^[0-9a-f]{16}$/)
    expect(randomBoot()).not.toBe(randomBoot())
    expect(parse(makeIssuer()())).toMatchObject({ counter: 1 })
  })

  it("accepts only newer ids within one boot: a replayed or late offer is stale", () => {
    const seen = new SeenIds()
    expect(seen.accept("b007.5")).toBe(true)
    expect(seen.accept("b007.5")).toBe(false) // replayed
    expect(seen.accept("b007.3")).toBe(false) // late
    expect(seen.accept("b007.6")).toBe(true)
  })

  it("accepts a restarted peer's new boot whatever its clock says, and never an older boot again", () => {
    const seen = new SeenIds()
    // the old scheme ordered "<boot ms>.<counter>": a clock stepped back made the restart look old
    expect(seen.accept("1733220000000.7")).toBe(true)
    expect(seen.accept("0000000000000001.1")).toBe(true) // the restart: a boot never seen
    expect(seen.accept("1733220000000.8")).toBe(false) // the previous boot, retired
    expect(seen.accept("1733220000000.7")).toBe(false) // a replay from it
    expect(seen.accept("0000000000000001.2")).toBe(true)
  })

  it("refuses malformed ids", () => {
    const seen = new SeenIds()
    for (const sid of ["", "1", "abc", "b.0", "B007.1", "b007.-1", "b007.1.2", `${"a".repeat(33)}.1`]) {
      expect(seen.accept(sid), sid).toBe(false)
    }
  })
})
