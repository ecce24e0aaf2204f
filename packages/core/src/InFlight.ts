/**
 * InFlight: which assets are being received right now, and from which session. One registry is
 * shared by every PeerActor of a PeerManager (one local store), so an asset offered by two peers
 * at once is fetched from only one of them: the second sees it busy, waits for the outcome, and
 * asks its own peer only if that transfer failed. It also holds metadata edits that arrive for an
 * asset still in transit, to be merged once the asset is stored, and the byte a resumed transfer
 * was asked from (the only offset its AssetHeader may name besides 0).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type { AssetMeta } from "./Domain.ts"
import { metaWins } from "./Domain.ts"

/** Who holds a claim: one run of one PeerActor (a restarted actor is a new owner). */
export interface Owner {
  readonly session: number
  readonly peer: string
}

export type ClaimResult =
  | { readonly _tag: "Claimed" }
  /** Another session is receiving it; `settled` gives true once stored, false if that failed. */
  | { readonly _tag: "Busy"; readonly peer: string; readonly settled: Effect.Effect<boolean> }

export interface InFlight {
  readonly claim: (hash: string, owner: Owner) => Effect.Effect<ClaimResult>
  readonly isOwner: (hash: string, owner: Owner) => Effect.Effect<boolean>
  /** End a claim; returns any metadata edit stashed meanwhile (and who sent it), to merge now. */
  readonly settle: (hash: string, owner: Owner, stored: boolean) => Effect.Effect<StashedMeta | undefined>
  /** Note the first byte the owner asked its peer for (Want.offsets). */
  readonly askFrom: (hash: string, owner: Owner, offset: number) => Effect.Effect<void>
  /** The byte the owner asked `hash` from (0: from the start, or not the owner). */
  readonly askedFrom: (hash: string, owner: Owner) => Effect.Effect<number>
  /** Keep an edit from peer `from` for an asset in transit; false when nobody is receiving it. */
  readonly stashMeta: (hash: string, meta: AssetMeta, from: string) => Effect.Effect<boolean>
  /** Fail every claim of a session that is ending. */
  readonly releaseAll: (owner: Owner) => Effect.Effect<void>
  readonly size: Effect.Effect<number>
}

/** A metadata edit that arrived for an asset in transit, and the peer it came from (its event origin). */
export interface StashedMeta {
  readonly meta: AssetMeta
  readonly from: string
}

interface Entry {
  readonly owner: Owner
  readonly settled: Deferred.Deferred<boolean>
  stashed: StashedMeta | undefined
  offset: number
}

let nextSession = 1
/** A fresh owner identity for one actor run. */
export const newOwner = (peer: string): Effect.Effect<Owner> => Effect.sync(() => ({ session: nextSession++, peer }))

export const make: Effect.Effect<InFlight> = Effect.sync(() => {
  // Mutated only inside Effect.sync blocks, each of which runs atomically on the JS thread.
  const entries = new Map<string, Entry>()
  const end = (hash: string, entry: Entry, stored: boolean) => {
    entries.delete(hash)
    Deferred.doneUnsafe(entry.settled, Effect.succeed(stored))
    return entry.stashed
  }
  return {
    claim: (hash, owner) =>
      Effect.sync((): ClaimResult => {
        const entry = entries.get(hash)
        if (entry === undefined) {
          entries.set(hash, { owner, settled: Deferred.makeUnsafe<boolean>(), stashed: undefined, offset: 0 })
          return { _tag: "Claimed" }
        }
        if (entry.owner.session === owner.session) return { _tag: "Claimed" }
        return { _tag: "Busy", peer: entry.owner.peer, settled: Deferred.await(entry.settled) }
      }),
    isOwner: (hash, owner) => Effect.sync(() => entries.get(hash)?.owner.session === owner.session),
    settle: (hash, owner, stored) =>
      Effect.sync(() => {
        const entry = entries.get(hash)
        return entry !== undefined && entry.owner.session === owner.session ? end(hash, entry, stored) : undefined
      }),
    askFrom: (hash, owner, offset) =>
      Effect.sync(() => {
        const entry = entries.get(hash)
        if (entry !== undefined && entry.owner.session === owner.session) entry.offset = offset
      }),
    askedFrom: (hash, owner) =>
      Effect.sync(() => {
        const entry = entries.get(hash)
        return entry !== undefined && entry.owner.session === owner.session ? entry.offset : 0
      }),
    stashMeta: (hash, meta, from) =>
      Effect.sync(() => {
        const entry = entries.get(hash)
        if (entry === undefined) return false
        if (entry.stashed === undefined || metaWins(meta, entry.stashed.meta)) entry.stashed = { meta, from }
        return true
      }),
    releaseAll: (owner) =>
      Effect.sync(() => {
        for (const [hash, entry] of entries) {
          if (entry.owner.session === owner.session) end(hash, entry, false)
        }
      }),
    size: Effect.sync(() => entries.size)
  }
})
