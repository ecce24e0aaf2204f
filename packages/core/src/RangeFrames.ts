/**
 * RangeFrames: one RangeReconcile message as `RangeRound` frames and back. A message is cut into
 * frames within the peer's frame limit (a long List or Reply continues in the next frame's entry of
 * the same range and kind), origins are interned per frame, hashes travel as 32 bytes. The wire
 * shapes are the protobuf messages of docs/protocol.md ("Range reconciliation").
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { type Fingerprint, type RangeItem, SUM_BYTES } from "./RangeSource.ts"
import type { Message, Session } from "./RangeReconcile.ts"
import { defaultOptions, drive, RangeViolation } from "./RangeReconcile.ts"
import * as Proto from "./proto/sync.ts"

export type RangeRoundWire = Proto.RangeRound
type RangeEntryWire = Proto.RangeEntry
type RangeItemWire = Proto.RangeItem
const RangeKind = Proto.RangeKind

const FRAME_HEADER = 5
const utf8 = new TextEncoder()

const varintBytes = (n: number): number => {
  let bytes = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    bytes++
  }
  return bytes
}
const delimited = (body: number): number => 1 + varintBytes(body) + body
const packed = (values: ReadonlyArray<number>): number =>
  values.length === 0 ? 0 : delimited(values.reduce((n, v) => n + varintBytes(v), 0))
const int64Bytes = (n: number): number => (n === 0 ? 0 : 1 + (n < 0 ? 10 : varintBytes(n)))

const itemBytes = (item: RangeItemWire): number =>
  delimited(
    (item.hash.length > 0 ? delimited(item.hash.length) : 0) + (item.size > 0 ? 1 + varintBytes(item.size) : 0) +
      int64Bytes(item.updatedAt) + (item.origin > 0 ? 1 + varintBytes(item.origin) : 0)
  )

const entryBytes = (entry: RangeEntryWire): number =>
  delimited(
    (entry.prefix.length > 0 ? delimited(entry.prefix.length) : 0) + (entry.kind !== 0 ? 1 + varintBytes(entry.kind) : 0) +
      (entry.sums.length > 0 ? delimited(entry.sums.length) : 0) + packed(entry.counts) +
      entry.items.reduce((n, item) => n + itemBytes(item), 0) + packed(entry.lacking)
  )

/** The protobuf size of one RangeRound payload (without the 5-byte frame header). */
export const roundBytes = (round: RangeRoundWire): number =>
  round.entries.reduce((n, e) => n + entryBytes(e), 0) + round.origins.reduce((n, o) => n + delimited(utf8.encode(o).length), 0) +
  (round.last ? 2 : 0)

const hexByte = (b: number) => (b < 16 ? "0" : "") + b.toString(16)
const hashBytes = (hash: string): Uint8Array => {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = parseInt(hash.slice(2 * i, 2 * i + 2), 16)
  return out
}

/**
 * Cut a message into RangeRound payloads, each at most `maxFrameBytes` with its header (the peer's
 * limit; at least 4 KiB is assumed). The last one has `last = true`; an empty message is one empty frame.
 */
export const toRounds = (message: Message, maxFrameBytes: number): Array<RangeRoundWire> => {
  const budget = Math.max(4096, maxFrameBytes) - FRAME_HEADER - 16 // room for `last` and length headers
  const rounds: Array<RangeRoundWire> = []
  let entries: Array<RangeEntryWire> = []
  let origins = new Map<string, number>()
  let used = 0
  const flush = () => {
    rounds.push({ entries, origins: [...origins.keys()], last: false })
    entries = []
    origins = new Map()
    used = 0
  }
  const originIndex = (origin: string): { index: number; cost: number } => {
    const known = origins.get(origin)
    if (known !== undefined) return { index: known, cost: 0 }
    return { index: origins.size, cost: delimited(utf8.encode(origin).length) }
  }
  for (const entry of message.entries) {
    if (entry._tag === "Split") {
      const wire: RangeEntryWire = {
        prefix: entry.prefix,
        kind: RangeKind.SPLIT,
        sums: concatSums(entry.children),
        counts: entry.children.map((c) => c.count),
        items: [],
        lacking: []
      }
      const cost = entryBytes(wire)
      if (used + cost > budget && entries.length > 0) flush()
      entries.push(wire)
      used += cost
      continue
    }
    // A List or Reply: its items fill frames one after the other, each piece an entry of the same range and kind.
    const kind = entry._tag === "List" ? RangeKind.LIST : RangeKind.REPLY
    let lacking: Array<number> = entry._tag === "Reply" ? [...entry.lacking] : []
    let items: Array<RangeItemWire> = []
    const header = () => delimited(entry.prefix.length) + 2 + packed(lacking) + 6
    if (used + header() > budget && entries.length > 0) flush()
    let pieceBytes = header()
    const close = () => {
      entries.push({ prefix: entry.prefix, kind, sums: new Uint8Array(0), counts: [], items, lacking })
      used += pieceBytes
      items = []
      lacking = []
    }
    for (const item of entry.items) {
      const { index, cost: originCost } = originIndex(item.origin)
      const wire: RangeItemWire = { hash: hashBytes(item.hash), size: item.size, updatedAt: item.updatedAt, origin: index }
      const cost = itemBytes(wire) + originCost
      if (used + pieceBytes + cost > budget && (items.length > 0 || entries.length > 0)) {
        close()
        flush()
        pieceBytes = header()
        const again = originIndex(item.origin) // a fresh frame interns the origin again
        origins.set(item.origin, again.index)
        items.push({ ...wire, origin: again.index })
        pieceBytes += itemBytes({ ...wire, origin: again.index }) + again.cost
        continue
      }
      origins.set(item.origin, index)
      items.push(wire)
      pieceBytes += cost
    }
    close()
  }
  rounds.push({ entries, origins: [...origins.keys()], last: true })
  return rounds
}

const concatSums = (children: ReadonlyArray<Fingerprint>): Uint8Array => {
  const out = new Uint8Array(children.length * SUM_BYTES)
  children.forEach((c, i) => out.set(c.sum, i * SUM_BYTES))
  return out
}

/** Bytes of a message on the wire: its frames, headers included. */
export const messageBytes = (message: Message, maxFrameBytes: number): number =>
  toRounds(message, maxFrameBytes).reduce((n, round) => n + FRAME_HEADER + roundBytes(round), 0)

/**
 * Gathers a peer's RangeRound frames into messages: `add` returns the message when its `last` frame
 * arrives. Pieces of one List or Reply (consecutive entries of the same range and kind) are joined
 * in place. Items and entries are counted as they arrive, over the whole reconciliation, and refused
 * past `maxItems` (the bound the session applies too), so frames that never say `last` cannot grow
 * memory without limit.
 */
export const makeAssembler = (maxItems: number = defaultOptions.maxItems) => {
  type Piece =
    | { readonly _tag: "Split"; readonly prefix: string; readonly children: ReadonlyArray<Fingerprint> }
    | { readonly _tag: "List"; readonly prefix: string; readonly items: Array<RangeItem> }
    | { readonly _tag: "Reply"; readonly prefix: string; readonly items: Array<RangeItem>; readonly lacking: Array<number> }
  let entries: Array<Piece> = []
  let received = 0 // items and entries, over the whole reconciliation
  const violation = (detail: string) => Result.fail(new RangeViolation({ detail }))
  const add = (round: RangeRoundWire): Result.Result<Message | undefined, RangeViolation> => {
    received += round.entries.length
    for (const wire of round.entries) received += wire.items.length + wire.counts.length
    if (received > maxItems) return violation(`more than ${maxItems} items and entries`)
    for (const wire of round.entries) {
      const previous = entries.at(-1)
      switch (wire.kind) {
        case RangeKind.SPLIT: {
          if (wire.sums.length !== wire.counts.length * SUM_BYTES) {
            return violation(`Split of "${wire.prefix}": ${wire.sums.length} sum bytes for ${wire.counts.length} counts`)
          }
          const children = wire.counts.map((count, i) => ({
            count,
            sum: wire.sums.slice(i * SUM_BYTES, (i + 1) * SUM_BYTES)
          }))
          entries.push({ _tag: "Split", prefix: wire.prefix, children })
          break
        }
        case RangeKind.LIST:
        case RangeKind.REPLY: {
          const tag = wire.kind === RangeKind.LIST ? "List" : "Reply"
          const continued = previous !== undefined && previous._tag === tag && previous.prefix === wire.prefix
          const piece: Piece = continued
            ? previous
            : tag === "List"
            ? { _tag: "List", prefix: wire.prefix, items: [] }
            : { _tag: "Reply", prefix: wire.prefix, items: [], lacking: [] }
          if (!continued) entries.push(piece)
          for (const item of wire.items) {
            if (item.hash.length !== 32) return violation(`a hash of ${item.hash.length} bytes in range "${wire.prefix}"`)
            const origin = round.origins[item.origin]
            if (origin === undefined) return violation(`origin index ${item.origin} of ${round.origins.length}`)
            piece.items.push({ hash: Array.from(item.hash, hexByte).join(""), size: item.size, updatedAt: item.updatedAt, origin })
          }
          if (piece._tag === "Reply") for (const index of wire.lacking) piece.lacking.push(index)
          break
        }
        default:
          return violation(`unknown range entry kind ${wire.kind}`)
      }
    }
    if (!round.last) return Result.succeed(undefined)
    const message: Message = { entries }
    entries = []
    return Result.succeed(message)
  }
  return { add }
}

/**
 * Run one side of range reconciliation over frames: messages go out as RangeRound payloads within
 * the peer's frame limit (`send`), and the peer's payloads (`take`) are gathered into messages.
 * What the engine's Reconcile calls when both Hellos announce "ranges/1".
 */
export const driveFrames = <E, E2>(
  session: Session<E>,
  role: "initiator" | "responder",
  peerMaxFrameBytes: number,
  channel: { readonly send: (round: RangeRoundWire) => Effect.Effect<void, E2>; readonly take: Effect.Effect<RangeRoundWire, E2> }
) => {
  const assembler = makeAssembler()
  const receive: Effect.Effect<Message, E2 | RangeViolation> = Effect.flatMap(channel.take, (round) =>
    Effect.flatMap(Effect.fromResult(assembler.add(round)), (message) => (message === undefined ? receive : Effect.succeed(message)))
  )
  return drive(session, role, {
    send: (message) => Effect.forEach(toRounds(message, peerMaxFrameBytes), channel.send, { discard: true }),
    receive
  })
}
