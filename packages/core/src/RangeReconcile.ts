/**
 * RangeReconcile: range-based set reconciliation (after Negentropy; our own scheme, see
 * docs/protocol.md "Range reconciliation"). Ranges are hex prefixes of the asset hash; sides
 * exchange fingerprints of ranges, equal ranges are done, unequal ones are split 16 ways or, when
 * small, listed. Pure protocol logic over a `RangeSource`: no I/O, no frames (the engine carries the
 * messages). Both sides end knowing what they lack, what the peer lacks, and whose version differs.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { AssetHash } from "./Domain.ts"
import { compareMetaVersion, isAssetHash } from "./Domain.ts"
import { equals as sameFingerprint, type Fingerprint, type RangeItem, type RangeSource, SUM_BYTES } from "./RangeSource.ts"

/** Children of a split range: one per next hex digit. */
export const FANOUT = 16
const DIGITS = "0123456789abcdef"

export interface Options {
  /** A range this side holds at most this many items of is listed rather than split (when the peer's is small too). */
  readonly listThreshold: number
  /** Items in one List, and the peer's count above which a range is split rather than listed to it. */
  readonly maxList: number
  /** Items accepted from the peer in one reconciliation (memory bound). */
  readonly maxItems: number
}

export const defaultOptions: Options = { listThreshold: 16, maxList: 1_000, maxItems: 10_000_000 }

/** "My fingerprints of `prefix`'s 16 children": the peer answers the children that differ on its side. */
export interface Split {
  readonly _tag: "Split"
  readonly prefix: string
  readonly children: ReadonlyArray<Fingerprint>
}
/** "All my items in `prefix`": the peer must answer with a Reply. */
export interface List {
  readonly _tag: "List"
  readonly prefix: string
  readonly items: ReadonlyArray<RangeItem>
}
/**
 * The sender's items in `prefix` that are not identical (same hash and version) in the list it
 * answers (for a range whose peer count was 0: all of them), and the indices of listed items whose
 * hash it lacks. Ends that range.
 */
export interface Reply {
  readonly _tag: "Reply"
  readonly prefix: string
  readonly items: ReadonlyArray<RangeItem>
  readonly lacking: ReadonlyArray<number>
}
export type Entry = Split | List | Reply

/** One turn of the exchange. A message with no Split or List opens nothing: after it, both sides are done. */
export interface Message {
  readonly entries: ReadonlyArray<Entry>
}

export const opensRanges = (message: Message): boolean => message.entries.some((e) => e._tag !== "Reply")

/** What one side knows at the end: exactly the symmetric difference of the two sets. */
export interface Outcome {
  /** The peer's items whose hash this side lacks. */
  readonly weLack: ReadonlyArray<RangeItem>
  /** This side's items whose hash the peer lacks. */
  readonly theyLack: ReadonlyArray<RangeItem>
  /** Hashes both hold with different metadata versions. */
  readonly versionDiffers: ReadonlyArray<{ readonly ours: RangeItem; readonly theirs: RangeItem }>
}

/** The peer's message breaks the range protocol (unasked range, malformed item, bound exceeded). */
export class RangeViolation extends Schema.TaggedError<RangeViolation>()("RangeViolation", {
  detail: Schema.String
}) {
  override get message(): string {
    return `range reconciliation: ${this.detail}`
  }
}

export interface Session<E> {
  /** The initiator's first message: the fingerprints of the root's 16 children. */
  readonly start: Effect.Effect<Message, E>
  /**
   * Take the peer's message; the reply to send, if any. `done` says this side is finished once the
   * reply (if any) is sent: the peer's message opened nothing, or the reply opens nothing.
   */
  readonly receive: (message: Message) => Effect.Effect<{ readonly reply: Message | undefined; readonly done: boolean }, E | RangeViolation>
  readonly outcome: () => Outcome
}

const HASH = /^[0-9a-f]{64}$/
const PREFIX = /^[0-9a-f]{0,63}$/

const sameVersion = (a: RangeItem, b: RangeItem): boolean => a.updatedAt === b.updatedAt && a.origin === b.origin

const childrenOf = (prefix: string): Array<string> => Array.from(DIGITS, (d) => prefix + d)

/** Items of one entry: well-formed hashes under the prefix, strictly increasing, within the bound. */
const checkItems = (prefix: string, items: ReadonlyArray<RangeItem>, limit: number): string | undefined => {
  if (items.length > limit) return `${items.length} items for range "${prefix}", more than ${limit}`
  let previous = ""
  for (const item of items) {
    if (!HASH.test(item.hash)) return `malformed hash ${JSON.stringify(item.hash)}`
    if (!item.hash.startsWith(prefix)) return `hash ${item.hash} outside range "${prefix}"`
    if (item.hash <= previous) return `items of range "${prefix}" not in strictly increasing hash order`
    if (!Number.isSafeInteger(item.size) || item.size < 0) return `size ${item.size} of ${item.hash}`
    previous = item.hash
  }
  return undefined
}

export const make = <E>(source: RangeSource<E>, options: Options = defaultOptions): Session<E> => {
  const weLack: Array<RangeItem> = []
  const theyLack: Array<RangeItem> = []
  const versionDiffers: Array<{ ours: RangeItem; theirs: RangeItem }> = []
  let received = 0
  // What this side's last message opened: split children (with this side's count) and lists awaiting a Reply.
  // Before any message, the responder is open to the initiator's first one, on the whole space (count unknown: -1).
  let openChildren = new Map<string, number>([["", -1]])
  let awaiting = new Map<string, ReadonlyArray<RangeItem>>()
  let finished = false

  /** Turn this side's decisions into entries, recording what they open. */
  const build = Effect.fnUntraced(function*(
    mismatched: ReadonlyArray<{ readonly prefix: string; readonly peerCount: number; readonly own: Fingerprint }>,
    answers: Array<Entry>
  ) {
    const toList: Array<{ prefix: string; reply: boolean }> = []
    const toSplit: Array<string> = []
    for (const { prefix, peerCount, own } of mismatched) {
      if (peerCount === 0 && own.count <= options.maxList) toList.push({ prefix, reply: true })
      else if ((own.count <= options.listThreshold && peerCount <= options.maxList) || prefix.length >= 63) toList.push({ prefix, reply: false })
      else toSplit.push(prefix)
    }
    const grandchildren = toSplit.flatMap(childrenOf)
    const [lists, fingerprints] = yield* Effect.all([
      toList.length > 0 ? source.items(toList.map((l) => l.prefix)) : Effect.succeed([]),
      grandchildren.length > 0 ? source.fingerprints(grandchildren) : Effect.succeed([])
    ])
    const nextOpen = new Map<string, number>()
    const nextAwaiting = new Map<string, ReadonlyArray<RangeItem>>()
    const entries: Array<Entry> = [...answers]
    toList.forEach(({ prefix, reply }, i) => {
      const items = lists[i] ?? []
      if (reply) {
        // The peer holds nothing here: it lacks all of ours, and the range ends now.
        for (const item of items) theyLack.push(item)
        entries.push({ _tag: "Reply", prefix, items, lacking: [] })
      } else {
        nextAwaiting.set(prefix, items)
        entries.push({ _tag: "List", prefix, items })
      }
    })
    toSplit.forEach((prefix, i) => {
      const children = fingerprints.slice(i * FANOUT, (i + 1) * FANOUT)
      children.forEach((fp, d) => nextOpen.set(prefix + DIGITS[d], fp.count))
      entries.push({ _tag: "Split", prefix, children })
    })
    openChildren = nextOpen
    awaiting = nextAwaiting
    return { entries } satisfies Message
  })

  const start = Effect.suspend(() => {
    finished = false
    return Effect.map(source.fingerprints(childrenOf("")), (children): Message => {
      openChildren = new Map(children.map((fp, d) => [DIGITS[d]!, fp.count]))
      awaiting = new Map()
      return { entries: [{ _tag: "Split", prefix: "", children }] }
    })
  })

  const receive = Effect.fnUntraced(function*(message: Message) {
    const violation = (detail: string) => Effect.fail(new RangeViolation({ detail }))
    if (finished) return yield* violation("a message after the reconciliation ended")
    // 1. Check every entry answers a range this side opened, at most once; every List is answered.
    const seen = new Set<string>()
    for (const entry of message.entries) {
      if (!PREFIX.test(entry.prefix)) return yield* violation(`malformed range prefix ${JSON.stringify(entry.prefix)}`)
      if (seen.has(entry.prefix)) return yield* violation(`range "${entry.prefix}" answered twice`)
      seen.add(entry.prefix)
      const myCount = openChildren.get(entry.prefix)
      switch (entry._tag) {
        case "Split": {
          if (myCount === undefined) return yield* violation(`Split of range "${entry.prefix}", which was not open`)
          if (entry.children.length !== FANOUT) return yield* violation(`Split of "${entry.prefix}" with ${entry.children.length} children`)
          for (const fp of entry.children) {
            if (fp.sum.length !== SUM_BYTES || !Number.isSafeInteger(fp.count) || fp.count < 0) {
              return yield* violation(`malformed fingerprint in Split of "${entry.prefix}"`)
            }
          }
          break
        }
        case "List": {
          if (myCount === undefined) return yield* violation(`List of range "${entry.prefix}", which was not open`)
          // a range one digit short of a whole hash is listed whatever its size: it holds at most 16
          const bad = checkItems(entry.prefix, entry.items, Math.max(options.maxList, FANOUT))
          if (bad !== undefined) return yield* violation(bad)
          break
        }
        case "Reply": {
          const listed = awaiting.get(entry.prefix)
          if (listed === undefined && myCount !== 0) return yield* violation(`Reply for range "${entry.prefix}", which asked none`)
          const bad = checkItems(entry.prefix, entry.items, options.maxItems)
          if (bad !== undefined) return yield* violation(bad)
          let previous = -1
          for (const index of entry.lacking) {
            if (!Number.isSafeInteger(index) || index <= previous || index >= (listed?.length ?? 0)) {
              return yield* violation(`Reply for "${entry.prefix}" names list index ${index}`)
            }
            previous = index
          }
          break
        }
      }
      if (entry._tag !== "Split") {
        received += entry.items.length
        if (received > options.maxItems) return yield* violation(`more than ${options.maxItems} items`)
      }
    }
    for (const prefix of awaiting.keys()) {
      if (!seen.has(prefix)) return yield* violation(`List of range "${prefix}" got no Reply`)
    }
    // 2. What this side needs from its source: its fingerprints of split children, its items of listed ranges.
    const splits = message.entries.filter((e): e is Split => e._tag === "Split")
    const lists = message.entries.filter((e): e is List => e._tag === "List")
    const unsolicited = message.entries.filter((e): e is Reply => e._tag === "Reply" && !awaiting.has(e.prefix))
    const childPrefixes = splits.flatMap((s) => childrenOf(s.prefix))
    const ownPrefixes = [...lists, ...unsolicited].map((e) => e.prefix)
    const [own, ownItems] = yield* Effect.all([
      childPrefixes.length > 0 ? source.fingerprints(childPrefixes) : Effect.succeed([]),
      ownPrefixes.length > 0 ? source.items(ownPrefixes) : Effect.succeed([])
    ])
    const ownItemsOf = new Map(ownPrefixes.map((p, i) => [p, ownItems[i] ?? []]))
    // 3. Replies end their ranges: record the differences they show.
    for (const entry of message.entries) {
      if (entry._tag !== "Reply") continue
      const mine = awaiting.get(entry.prefix) ?? ownItemsOf.get(entry.prefix) ?? []
      const mineByHash = new Map(mine.map((item) => [item.hash, item]))
      for (const theirs of entry.items) {
        const ours = mineByHash.get(theirs.hash)
        if (ours === undefined) weLack.push(theirs)
        else if (!sameVersion(ours, theirs)) versionDiffers.push({ ours, theirs })
      }
      for (const index of entry.lacking) theyLack.push(mine[index]!)
    }
    // 4. Lists are answered with a Reply: what differs here, and which listed hashes this side lacks.
    const answers: Array<Entry> = []
    for (const entry of lists) {
      const mine = ownItemsOf.get(entry.prefix) ?? []
      const mineByHash = new Map(mine.map((item) => [item.hash, item]))
      const listed = new Map<string, RangeItem>()
      const lacking: Array<number> = []
      entry.items.forEach((theirs, index) => {
        listed.set(theirs.hash, theirs)
        const ours = mineByHash.get(theirs.hash)
        if (ours === undefined) {
          weLack.push(theirs)
          lacking.push(index)
        } else if (!sameVersion(ours, theirs)) versionDiffers.push({ ours, theirs })
      })
      const differing: Array<RangeItem> = []
      for (const ours of mine) {
        const theirs = listed.get(ours.hash)
        if (theirs === undefined) theyLack.push(ours)
        if (theirs === undefined || !sameVersion(ours, theirs)) differing.push(ours)
      }
      answers.push({ _tag: "Reply", prefix: entry.prefix, items: differing, lacking })
    }
    // 5. Split children that differ are split further or listed.
    const mismatched: Array<{ prefix: string; peerCount: number; own: Fingerprint }> = []
    splits.forEach((split, s) => {
      split.children.forEach((theirs, d) => {
        const mine = own[s * FANOUT + d]!
        if (!sameFingerprint(theirs, mine)) mismatched.push({ prefix: split.prefix + DIGITS[d], peerCount: theirs.count, own: mine })
      })
    })
    if (!opensRanges(message)) {
      // The peer ended the exchange: its message carried only Replies, nothing to answer.
      finished = true
      openChildren = new Map()
      awaiting = new Map()
      return { reply: undefined, done: true }
    }
    const reply = yield* build(mismatched, answers)
    finished = !opensRanges(reply)
    return { reply, done: finished }
  })

  return {
    start,
    receive,
    outcome: () => ({ weLack: [...weLack], theyLack: [...theyLack], versionDiffers: [...versionDiffers] })
  }
}

/**
 * Run two sessions against each other in memory (tests, benchmarks): the initiator starts, replies
 * alternate until one side is done. Returns both outcomes and every message in order.
 */
export const runPair = Effect.fnUntraced(function*<E>(initiator: Session<E>, responder: Session<E>) {
  const messages: Array<Message> = []
  let message = yield* initiator.start
  messages.push(message)
  let turn: "responder" | "initiator" = "responder"
  while (true) {
    const side = turn === "responder" ? responder : initiator
    const { reply, done } = yield* side.receive(message)
    if (reply === undefined) break
    messages.push(reply)
    message = reply
    turn = turn === "responder" ? "initiator" : "responder"
    if (done) {
      // The other side takes the closing message and ends too.
      const other = turn === "responder" ? responder : initiator
      const last = yield* other.receive(message)
      if (last.reply !== undefined || !last.done) return yield* new RangeViolation({ detail: "the closing message was answered" })
      break
    }
  }
  return { initiator: initiator.outcome(), responder: responder.outcome(), messages }
})

/**
 * Run one side of the exchange over a message channel (the engine's frames): the initiator starts,
 * each side answers the other's messages until it is done. Returns this side's outcome.
 */
export const drive = Effect.fnUntraced(function*<E, E2>(
  session: Session<E>,
  role: "initiator" | "responder",
  channel: { readonly send: (message: Message) => Effect.Effect<void, E2>; readonly receive: Effect.Effect<Message, E2> }
) {
  if (role === "initiator") yield* channel.send(yield* session.start)
  while (true) {
    const { reply, done } = yield* session.receive(yield* channel.receive)
    if (reply !== undefined) yield* channel.send(reply)
    if (done) return session.outcome()
  }
})

/**
 * An outcome as the engine acts on it (the same shape as the full exchange's diff): the hashes to
 * Want, with their sizes, and the shared hashes whose metadata is newer here (to send as MetaUpdate).
 */
export const toDiff = (outcome: Outcome): {
  readonly missing: ReadonlyArray<{ readonly hash: AssetHash; readonly size: number }>
  readonly newerHere: ReadonlyArray<AssetHash>
} => ({
  missing: outcome.weLack.flatMap((item) => (isAssetHash(item.hash) ? [{ hash: item.hash, size: item.size }] : [])),
  newerHere: outcome.versionDiffers.flatMap(({ ours, theirs }) =>
    isAssetHash(ours.hash) && compareMetaVersion(ours, theirs) > 0 ? [ours.hash] : []
  )
})
