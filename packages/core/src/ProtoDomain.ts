/**
 * ProtoDomain: conversions between the domain types (Domain.ts) and the protobuf messages (proto/sync.ts),
 * with the checks a peer's input needs before the engine trusts it (well-formed hashes, present
 * metadata within MetadataLimits). One place, so the reconciler, sender, receiver and pusher agree
 * on the mapping — and on what never goes out: metadata that breaks the limits or the peer's frame size.
 */
import * as Result from "effect/Result"
import type { AssetDigest, AssetHash, AssetMeta } from "./Domain.ts"
import { isAssetHash, MetadataInvalid, validateMeta } from "./Domain.ts"
import * as Proto from "./proto/sync.ts"

export const toWireDigest = (d: AssetDigest): Proto.AssetDigest => ({
  hash: d.hash,
  size: d.size,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
  metaOrigin: d.metaOrigin
})

export const toWireMeta = (m: AssetMeta): Proto.AssetMeta => ({
  description: m.description,
  tags: [...m.tags],
  trashed: m.trashed,
  createdAt: m.createdAt,
  updatedAt: m.updatedAt,
  origin: m.origin
})

/** The mapping alone, unchecked: a peer's metadata goes through `peerMeta`. */
export const fromWireMeta = (m: Proto.AssetMeta): AssetMeta => ({
  description: m.description,
  tags: m.tags,
  trashed: m.trashed,
  createdAt: m.createdAt,
  updatedAt: m.updatedAt,
  origin: m.origin
})

/** A peer's metadata, if it is within MetadataLimits (sizes, total, timestamps, not too far ahead of `now`). */
export const peerMeta = (m: Proto.AssetMeta, now: number): Result.Result<AssetMeta, MetadataInvalid> =>
  validateMeta(fromWireMeta(m), { now })

/**
 * Frame bytes around the metadata in an AssetHeader or MetaUpdate: type and length (5), the hash
 * field (2 + 64), the size field (≤ 11) and the meta field's tag and length (≤ 6), rounded up.
 */
const META_FRAME_OVERHEAD = 128

/**
 * Our metadata as it goes out in an AssetHeader or MetaUpdate: refused (never sent) when it is
 * outside MetadataLimits (at our clock `now`) — the peer would refuse it — or when its frame would exceed the peer's
 * frame limit, which would end the whole session at the peer instead of skipping one asset.
 */
export const toOutgoingMeta = (m: AssetMeta, peerMaxFrameBytes: number, now: number): Result.Result<Proto.AssetMeta, MetadataInvalid> => {
  const valid = validateMeta(m, { now })
  if (Result.isFailure(valid)) return Result.fail(valid.failure)
  const wire = toWireMeta(m)
  const bytes = Proto.AssetMeta.encode(wire).finish().length + META_FRAME_OVERHEAD
  return bytes > peerMaxFrameBytes
    ? Result.fail(new MetadataInvalid({ field: "total", detail: `a frame of about ${bytes} bytes exceeds the peer's limit of ${peerMaxFrameBytes}` }))
    : Result.succeed(wire)
}

/** The hash if it is 64 lowercase hex characters, else undefined. */
export const asHash = (s: string): AssetHash | undefined => (isAssetHash(s) ? s : undefined)

/** All hashes if every one is well formed, else undefined. */
export const asHashes = (xs: ReadonlyArray<string>): ReadonlyArray<AssetHash> | undefined =>
  xs.every(isAssetHash) ? (xs as ReadonlyArray<AssetHash>) : undefined

/** Split `xs` into arrays of at most `size` (always at least one, possibly empty, array). */
export const chunksOf = <A>(xs: ReadonlyArray<A>, size: number): Array<Array<A>> => {
  if (xs.length === 0) return [[]]
  const out: Array<Array<A>> = []
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size))
  return out
}
