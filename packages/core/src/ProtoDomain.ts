/**
 * ProtoDomain: conversions between the domain types (Domain.ts) and the protobuf messages (proto/sync.ts),
 * with the checks a peer's input needs before the engine trusts it (well-formed hashes, present
 * metadata). One place, so the reconciler, sender, receiver and pusher agree on the mapping.
 */
import type { AssetDigest, AssetHash, AssetMeta } from "./Domain.ts"
import { isAssetHash } from "./Domain.ts"
import type * as Proto from "./proto/sync.ts"

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

export const fromWireMeta = (m: Proto.AssetMeta): AssetMeta => ({
  description: m.description,
  tags: m.tags,
  trashed: m.trashed,
  createdAt: m.createdAt,
  updatedAt: m.updatedAt,
  origin: m.origin
})

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
