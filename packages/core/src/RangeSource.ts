/**
 * RangeSource: what range reconciliation compares and reads, without computing anything: an
 * item (an asset's hash, size and metadata version), a range's fingerprint (count and sum), the
 * source a side reconciles from, and the bucket geometry. Pure, so the engine (and a browser
 * peer) imports it without the hashing in `Fingerprints.ts`, which only stores need.
 */
import type * as Effect from "effect/Effect"

/** Hex digits of the hash that name one bucket: 16^4 = 65,536 buckets. */
export const BUCKET_DIGITS = 4
export const BUCKETS = 16 ** BUCKET_DIGITS
/** Bytes of a contribution and of a fingerprint's sum. */
export const SUM_BYTES = 16

/** An item as range reconciliation sees it: the asset's hash, its size and its metadata version. */
export interface RangeItem {
  readonly hash: string
  readonly size: number
  readonly updatedAt: number
  readonly origin: string
}

/** A range's fingerprint: how many items, and their contributions' sum mod 2^128 (16 bytes, little-endian). */
export interface Fingerprint {
  readonly count: number
  readonly sum: Uint8Array
}

/**
 * What a side reconciles from: fingerprints and items of hash prefixes, asked for in batches (one
 * call per round, so a store behind HTTP answers a round in one request).
 */
export interface RangeSource<E = never> {
  readonly fingerprints: (prefixes: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Fingerprint>, E>
  /** Every item whose hash starts with each prefix, in hash order. */
  readonly items: (prefixes: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ReadonlyArray<RangeItem>>, E>
}

export const equals = (a: Fingerprint, b: Fingerprint): boolean => {
  if (a.count !== b.count || a.sum.length !== b.sum.length) return false
  for (let i = 0; i < a.sum.length; i++) if (a.sum[i] !== b.sum[i]) return false
  return true
}

export const EMPTY: Fingerprint = { count: 0, sum: new Uint8Array(SUM_BYTES) }

