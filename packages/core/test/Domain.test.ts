import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import type { AssetMeta } from "../src/Domain.ts"
import { MetadataLimits, metadataBytes, nextVersion, utf8Bytes, validateMeta, validatePatch } from "../src/Domain.ts"
import { peerMeta, toOutgoingMeta } from "../src/ProtoDomain.ts"

const meta: AssetMeta = { description: "d", tags: ["a", "b"], trashed: false, createdAt: 1, updatedAt: 2, origin: "store-1" }
const field = (r: Result.Result<unknown, { readonly field: string }>) => (Result.isFailure(r) ? r.failure.field : "ok")

describe("MetadataLimits", () => {
  it("keeps the whole of one asset's metadata far below the 1 MiB frame limit", () => {
    expect(MetadataLimits.maxTotalBytes * 4).toBeLessThanOrEqual(1024 * 1024 / 4)
    expect(MetadataLimits.maxDescriptionBytes).toBeLessThan(MetadataLimits.maxTotalBytes)
    expect(MetadataLimits.maxTimestamp).toBeLessThan(Number.MAX_SAFE_INTEGER)
    expect(new Date(MetadataLimits.maxTimestamp).getTime()).toBe(MetadataLimits.maxTimestamp) // still a date
  })

  it("validateMeta accepts metadata at every limit and names the field one past it", () => {
    const atLimits: AssetMeta = {
      ...meta,
      description: "é".repeat(MetadataLimits.maxDescriptionBytes / 2),
      tags: Array.from({ length: 4 }, () => "t".repeat(MetadataLimits.maxTagBytes)),
      createdAt: 0,
      updatedAt: MetadataLimits.maxTimestamp
    }
    expect(field(validateMeta(atLimits))).toBe("ok")
    expect(field(validateMeta({ ...meta, description: "x".repeat(MetadataLimits.maxDescriptionBytes + 1) }))).toBe("description")
    expect(field(validateMeta({ ...meta, description: "€".repeat(MetadataLimits.maxDescriptionBytes / 3 + 1) }))).toBe("description") // bytes, not characters
    expect(field(validateMeta({ ...meta, tags: ["t".repeat(MetadataLimits.maxTagBytes + 1)] }))).toBe("tags")
    expect(field(validateMeta({ ...meta, tags: Array.from({ length: MetadataLimits.maxTags + 1 }, (_, i) => `${i}`) }))).toBe("tags")
    expect(field(validateMeta({ ...meta, origin: "o".repeat(MetadataLimits.maxOriginBytes + 1) }))).toBe("origin")
    const total = { ...meta, description: "x".repeat(MetadataLimits.maxDescriptionBytes), tags: Array.from({ length: MetadataLimits.maxTags }, () => "t".repeat(MetadataLimits.maxTagBytes)) }
    expect(metadataBytes(total)).toBeGreaterThan(MetadataLimits.maxTotalBytes)
    expect(field(validateMeta(total))).toBe("total")
    for (const bad of [-1, 0.5, MetadataLimits.maxTimestamp + 1, Number.MAX_SAFE_INTEGER, 1.5e300, Number.NaN, Infinity]) {
      expect(field(validateMeta({ ...meta, updatedAt: bad }))).toBe("updatedAt")
      expect(field(validateMeta({ ...meta, createdAt: bad }))).toBe("createdAt")
    }
    expect(Result.isFailure(validateMeta({ ...meta, updatedAt: -1 })) && validateMeta({ ...meta, updatedAt: -1 }).pipe((r) => Result.isFailure(r) ? r.failure.message : "")).toContain("invalid metadata (updatedAt)")
  })

  it("validatePatch checks only what an edit sets", () => {
    expect(field(validatePatch({ trashed: true }))).toBe("ok")
    expect(field(validatePatch({ description: "x".repeat(MetadataLimits.maxDescriptionBytes + 1) }))).toBe("description")
    expect(field(validatePatch({ tags: ["t".repeat(MetadataLimits.maxTagBytes + 1)] }))).toBe("tags")
  })

  it("nextVersion steps past the current version, never past maxTimestamp, and never freezes below it", () => {
    expect(nextVersion(5, 1000)).toBe(1000)
    expect(nextVersion(2000, 1000)).toBe(2001)
    for (const current of [Number.MAX_SAFE_INTEGER, 2 ** 53, 1.5e300, Infinity, MetadataLimits.maxTimestamp]) {
      const next = nextVersion(current, 1000)
      expect(next).toBe(MetadataLimits.maxTimestamp)
      expect(Number.isSafeInteger(next)).toBe(true)
    }
    expect(nextVersion(MetadataLimits.maxTimestamp - 1, 1000)).toBe(MetadataLimits.maxTimestamp)
    expect(nextVersion(Number.NaN, 1000)).toBe(1000)
  })

  it("utf8Bytes counts what TextEncoder writes, lone surrogates included", () => {
    const encoder = new TextEncoder()
    for (const s of ["", "abc", "é", "€", "😀", "a😀b", "\ud800", "\udc00x", "\ud800\ud800", "日本語"]) {
      expect(utf8Bytes(s)).toBe(encoder.encode(s).length)
    }
  })

  it("a peer's metadata is checked on the way in, and ours on the way out against the peer's frame limit", () => {
    const wire = { ...meta, tags: [...meta.tags] }
    const now = 1_000_000
    expect(Result.isSuccess(peerMeta(wire, now))).toBe(true)
    expect(field(peerMeta({ ...wire, updatedAt: Number.MAX_SAFE_INTEGER }, now))).toBe("updatedAt")
    // A version the next edit could never overtake is refused: at most maxFutureSkew ahead of our clock.
    expect(Result.isSuccess(peerMeta({ ...wire, updatedAt: now + MetadataLimits.maxFutureSkew }, now))).toBe(true)
    expect(field(peerMeta({ ...wire, updatedAt: now + MetadataLimits.maxFutureSkew + 1 }, now))).toBe("updatedAt")
    expect(field(peerMeta({ ...wire, updatedAt: MetadataLimits.maxTimestamp }, now))).toBe("updatedAt")
    const wide = { ...meta, description: "d".repeat(20_000) }
    expect(Result.isSuccess(toOutgoingMeta(wide, 1024 * 1024, now))).toBe(true)
    expect(field(toOutgoingMeta(wide, 16 * 1024, now))).toBe("total")
  })
})
