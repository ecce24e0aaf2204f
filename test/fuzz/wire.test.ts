/**
 * Fuzzing the wire: the frame codec (`Frame.decode`, the incremental `FrameDecoder`), every engine
 * message's protobuf and its decoding into the domain, and the WebRTC link's own framing (pieces,
 * reassembly, Credit/Ping/Pong/AuthProof) with random bytes, mutated valid frames and structurally
 * valid protobuf carrying hostile values. Never a throw, always a typed error or a valid value, and
 * no allocation larger than the frame limit, whatever a frame's length field claims.
 */
import { Frame, isValidTimestamp, MetadataLimits, Proto } from "@can-sync/core"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { createHash, randomBytes } from "node:crypto"
import * as ProtoDomain from "../../packages/core/src/ProtoDomain.ts"
import * as RangeFrames from "../../packages/core/src/RangeFrames.ts"
import * as Framing from "../../packages/transport/src/ChannelFraming.ts"
import { ReceiveWindow } from "../../packages/transport/src/FlowControl.ts"
import type { Field } from "./Fuzz.ts"
import { allocationProbe, arrayBufferBytes, concat, frameBytes, message, runs, SEED, varint } from "./Fuzz.ts"

/** The frame limit the fuzzers decode under: small, so lying lengths just above and below it are cheap. */
const MAX_FRAME = 64 * 1024
/** Growth of `process.memoryUsage().arrayBuffers` over a whole fuzz run that would mean a leak. */
const MEMORY_GROWTH_BOUND = 256 * 1024 * 1024

const FRAME_ERRORS = ["FrameTooLarge", "UnknownFrameType", "FrameTruncated", "MalformedPayload"]
const HEX64 = /^[0-9a-f]{64}$/

const probe = allocationProbe()
let memoryAtStart = 0
beforeAll(() => {
  memoryAtStart = arrayBufferBytes()
})

// ---- what a decoded value must satisfy ---------------------------------------------------------
// (plain checks, failing through expect.fail: calling expect for every field of 100k cases is slow)

const check = (ok: boolean, what: () => string): void => {
  if (!ok) expect.fail(what())
}

/** Every number in a decoded message is a safe integer (int64/uint64 never decode to a rounded value). */
const expectSafeNumbers = (value: unknown, path = "message"): void => {
  if (typeof value === "number") return check(Number.isSafeInteger(value), () => `${path} decoded to ${value}, not a safe integer`)
  if (value instanceof Uint8Array || value === null || typeof value !== "object") return
  for (const [k, v] of Object.entries(value)) expectSafeNumbers(v, `${path}.${k}`)
}

/** The engine's view of a peer's hash: accepted exactly when it is 64 lowercase hex characters. */
const expectHashView = (raw: string): void => {
  const hash = ProtoDomain.asHash(raw)
  check((hash !== undefined) === HEX64.test(raw), () => `asHash(${JSON.stringify(raw.slice(0, 80))}) gave ${hash}`)
}

/** Our clock, as the engine passes it when it checks a peer's metadata. */
const NOW = Date.now()

/** The engine's view of a peer's metadata: within MetadataLimits (a version at most a day ahead of us), or a typed MetadataInvalid. */
const expectMetaView = (wire: Proto.AssetMeta): void => {
  const meta = ProtoDomain.peerMeta(wire, NOW)
  if (Result.isFailure(meta)) {
    return check(meta.failure._tag === "MetadataInvalid" && typeof meta.failure.message === "string", () => `peerMeta failed with ${String(meta.failure)}`)
  }
  const m = meta.success
  const text = [m.description, ...m.tags, m.origin]
  check(
    isValidTimestamp(m.createdAt) && isValidTimestamp(m.updatedAt) && m.updatedAt <= NOW + MetadataLimits.maxFutureSkew &&
      m.tags.length <= MetadataLimits.maxTags &&
      text.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0) <= MetadataLimits.maxTotalBytes,
    () => `peerMeta accepted metadata outside the limits: ${JSON.stringify(m).slice(0, 200)}`
  )
}

/** Takes a decoded frame into the domain as the engine does: hashes checked, metadata validated. */
const expectDomainView = (frame: Frame.Frame): void => {
  expectSafeNumbers(frame.message)
  switch (frame._tag) {
    case "DigestChunk":
    case "Offer":
      for (const d of frame.message.digests) {
        expectHashView(d.hash)
        check(d.size >= 0, () => `a uint64 size decoded to ${d.size}`)
      }
      break
    case "Want": {
      const hashes = ProtoDomain.asHashes(frame.message.hashes)
      check((hashes !== undefined) === frame.message.hashes.every((h) => HEX64.test(h)), () => "asHashes disagrees with the hash pattern")
      break
    }
    case "AssetHeader":
    case "MetaUpdate":
      expectHashView(frame.message.hash)
      if (frame.message.meta !== undefined) expectMetaView(frame.message.meta)
      break
    case "AssetChunk":
    case "AssetEnd":
    case "Error":
      expectHashView(frame.message.hash)
      break
    case "RangeRound": {
      // one round into the range reconciler's messages: a typed RangeViolation or entries
      const added = RangeFrames.makeAssembler().add(frame.message)
      if (Result.isFailure(added)) check(added.failure._tag === "RangeViolation", () => `RangeFrames refused with ${String(added.failure)}`)
      break
    }
    case "Hello":
    case "Done":
      break
  }
}

/** A decode result: a valid frame (taken into the domain) or one of the four FrameErrors. */
const expectTyped = (result: Result.Result<ReadonlyArray<Frame.Frame> | Frame.Frame | void, Frame.FrameError>): void => {
  if (Result.isFailure(result)) {
    return check(FRAME_ERRORS.includes(result.failure._tag) && typeof result.failure.message === "string", () => `untyped failure ${String(result.failure)}`)
  }
  const value = result.success
  if (value === undefined) return
  for (const frame of Array.isArray(value) ? value : [value as Frame.Frame]) expectDomainView(frame)
}

/** Counts decode outcomes, to show a fuzzer reached both valid frames and each error it should. */
class Outcomes {
  private readonly counts = new Map<string, number>()
  private total = 0
  add(result: Result.Result<Frame.Frame, Frame.FrameError>): void {
    const key = Result.isFailure(result) ? result.failure._tag : "valid"
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
    this.total++
  }
  /** Each of `errors`, and valid frames, were each at least 1 % of the cases (when there were enough to tell). */
  expectBoth(errors: ReadonlyArray<string>): void {
    if (this.total < 1_000) return
    for (const key of ["valid", ...errors]) {
      check((this.counts.get(key) ?? 0) >= this.total / 100, () => `only ${this.counts.get(key) ?? 0} of ${this.total} cases gave ${key}: ${JSON.stringify([...this.counts])}`)
    }
  }
}

/** `Frame.decode` of `bytes`: typed, and allocating no more than one frame at the limit. */
const decodeChecked = (bytes: Uint8Array, maxFrame = MAX_FRAME) => {
  const { result, largest } = probe.measure(() => Frame.decode(bytes, maxFrame))
  expectTyped(result)
  check(largest <= maxFrame + Frame.HEADER_BYTES, () => `decode allocated ${largest} bytes`)
  return result
}

/** Feeds `chunks` to a fresh FrameDecoder until the first error; checks every result and the memory it holds. */
const streamChecked = (chunks: ReadonlyArray<Uint8Array>, maxFrame = MAX_FRAME) => {
  const decoder = new Frame.FrameDecoder(maxFrame)
  const frames: Array<Frame.Frame> = []
  const { result, largest } = probe.measure((): Result.Result<void, Frame.FrameError> => {
    for (const chunk of chunks) {
      const pushed = decoder.push(chunk)
      expectTyped(pushed)
      if (Result.isFailure(pushed)) return Result.fail(pushed.failure)
      frames.push(...pushed.success)
      // never more than one partial frame is held (plus the chunk that brought it)
      check(decoder.buffered <= maxFrame + chunk.length, () => `the decoder holds ${decoder.buffered} bytes`)
    }
    const end = decoder.end()
    expectTyped(end)
    return end
  })
  check(largest <= maxFrame + Frame.HEADER_BYTES, () => `the decoder allocated ${largest} bytes`)
  return { result, frames }
}

// ---- arbitraries -------------------------------------------------------------------------------

/** A well-formed hash (the SHA-256 of a drawn integer: far cheaper than drawing 64 hex characters). */
const hash = fc.integer().map((i) => createHash("sha256").update(String(i)).digest("hex"))
const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const text = fc.string({ maxLength: 40 })
/** A timestamp: mostly a plausible one (so metadata passes the engine's checks), sometimes any exact integer. */
const timestamp = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 2_000_000_000_000 }) }, { weight: 1, arbitrary: safeInt })
const meta = fc.record({
  description: text,
  tags: fc.array(text, { maxLength: 4 }),
  trashed: fc.boolean(),
  createdAt: timestamp,
  updatedAt: timestamp,
  origin: text
})
const digest = fc.record({ hash, size: safeInt, createdAt: safeInt, updatedAt: safeInt, metaOrigin: text })

/** A range reconciliation round (frame 0x0F) with valid, random content. */
const rangeRound = fc.record({
  entries: fc.array(
    fc.record({
      prefix: fc.constantFrom("", "0", "a7", "ff0", "0123456789abcdef"),
      kind: fc.constantFrom(Proto.RangeKind.SPLIT, Proto.RangeKind.LIST, Proto.RangeKind.REPLY),
      sums: fc.uint8Array({ maxLength: 64 }),
      counts: fc.array(safeInt, { maxLength: 4 }),
      items: fc.array(
        fc.record({ hash: fc.uint8Array({ minLength: 32, maxLength: 32 }), size: safeInt, updatedAt: timestamp, origin: fc.nat({ max: 3 }) }),
        { maxLength: 3 }
      ),
      lacking: fc.array(fc.nat({ max: 2 ** 32 - 1 }), { maxLength: 3 })
    }).map((e) => (e.sums.length % 2 === 0 ? { ...e, sums: new Uint8Array(16 * e.counts.length) } : e)), // half with 16 sum bytes a count
    { maxLength: 3 }
  ),
  origins: fc.array(text, { maxLength: 3 }),
  last: fc.boolean()
})

/** Every engine frame kind with valid, random content. */
const validFrame: fc.Arbitrary<Frame.Frame> = fc.oneof(
  fc.record({ protocolVersion: fc.nat(), peerId: text, agent: text, maxFrameBytes: fc.nat(), features: fc.array(text, { maxLength: 3 }) })
    .map((m) => Frame.make("Hello", m)),
  fc.record({ digests: fc.array(digest, { maxLength: 5 }), last: fc.boolean() }).map((m) => Frame.make("DigestChunk", m)),
  fc.record({ hash, size: safeInt, meta: fc.option(meta, { nil: undefined }) }).map((m) => Frame.make("AssetHeader", m)),
  fc.record({ hash, data: fc.uint8Array({ maxLength: 2048 }) }).map((m) => Frame.make("AssetChunk", m)),
  fc.record({ hash }).map((m) => Frame.make("AssetEnd", m)),
  fc.record({ hash, meta: fc.option(meta, { nil: undefined }) }).map((m) => Frame.make("MetaUpdate", m)),
  fc.record({ assetsSent: safeInt, bytesSent: safeInt }).map((m) => Frame.make("Done", m)),
  fc.record({ code: fc.constantFrom(...Object.values(Proto.ErrorCode)), message: text, hash: fc.oneof(hash, fc.constant("")), fatal: fc.boolean() })
    .map((m) => Frame.make("Error", m)),
  fc.record({ digests: fc.array(digest, { maxLength: 5 }) }).map((m) => Frame.make("Offer", m)),
  fc.record({ hashes: fc.array(hash, { maxLength: 5 }), last: fc.boolean() }).map((m) => Frame.make("Want", m)),
  rangeRound.map((m) => Frame.make("RangeRound", m))
)

/** Lengths a header may claim: around the true length, around the limit, and up to 2^32 − 1. */
const lyingLength = (actual: number) =>
  fc.oneof(
    fc.constantFrom(0, 1, Math.max(0, actual - 1), actual + 1, MAX_FRAME - 6, MAX_FRAME - 5, MAX_FRAME - 4, 2 ** 31, 2 ** 32 - 1),
    fc.integer({ min: 0, max: 2 ** 32 - 1 })
  )

type Mutation =
  | { readonly _tag: "flip"; readonly at: ReadonlyArray<number>; readonly bit: number }
  | { readonly _tag: "truncate"; readonly to: number }
  | { readonly _tag: "append"; readonly bytes: Uint8Array }
  | { readonly _tag: "length"; readonly claimed: number }
  | { readonly _tag: "type"; readonly type: number }
  | { readonly _tag: "splice"; readonly at: number; readonly bytes: Uint8Array }

const mutation = (size: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    fc.record({ _tag: fc.constant("flip" as const), at: fc.array(fc.nat({ max: size - 1 }), { minLength: 1, maxLength: 8 }), bit: fc.nat({ max: 7 }) }),
    fc.record({ _tag: fc.constant("truncate" as const), to: fc.nat({ max: size }) }),
    fc.record({ _tag: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ _tag: fc.constant("length" as const), claimed: lyingLength(size - Frame.HEADER_BYTES) }),
    fc.record({ _tag: fc.constant("type" as const), type: fc.nat({ max: 255 }) }),
    fc.record({ _tag: fc.constant("splice" as const), at: fc.nat({ max: size }), bytes: fc.uint8Array({ maxLength: 16 }) })
  )

const mutate = (bytes: Uint8Array, m: Mutation): Uint8Array => {
  const out = Uint8Array.from(bytes)
  switch (m._tag) {
    case "flip":
      for (const at of m.at) if (at < out.length) out[at] = out[at]! ^ (1 << ((m.bit + at) % 8))
      return out
    case "truncate":
      return out.subarray(0, m.to)
    case "append":
      return concat([out, m.bytes])
    case "length":
      if (out.length >= Frame.HEADER_BYTES) new DataView(out.buffer).setUint32(1, m.claimed >>> 0, false)
      return out
    case "type":
      if (out.length > 0) out[0] = m.type
      return out
    case "splice":
      return concat([out.subarray(0, Math.min(m.at, out.length)), m.bytes, out.subarray(Math.min(m.at, out.length))])
  }
}

/** Valid frames to mutate, drawn once from the file's seed (drawing a fresh one per case costs more than the case). */
const FRAME_POOL = fc.sample(validFrame.map(Frame.encode), { numRuns: 2_000, seed: SEED })

/** A valid frame's bytes with 1–3 mutations. */
const mutatedFrame = fc.constantFrom(...FRAME_POOL).chain((bytes) =>
  fc.array(mutation(bytes.length), { minLength: 1, maxLength: 3 }).map((ms) => ms.reduce(mutate, bytes))
)

/** Cut points splitting `bytes` into chunks of random sizes (empty chunks included). */
const chunked = (bytes: Uint8Array) =>
  fc.array(fc.nat({ max: bytes.length }), { maxLength: 6 }).map((cuts) => {
    const points = [0, ...cuts.sort((a, b) => a - b), bytes.length]
    return points.slice(1).map((end, i) => bytes.subarray(points[i]!, end))
  })

// Hostile protobuf: structurally valid messages whose values sit at and past the edge of their range.

const INT64_EDGES = [
  0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) + 1n, -(2n ** 53n), 8_640_000_000_000_000n,
  8_640_000_000_000_001n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 31n
]
const int64Value = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...INT64_EDGES) },
  { weight: 2, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 53n }) }
)
const hostileString = fc.oneof(
  { weight: 3, arbitrary: hash },
  { weight: 2, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 1, arbitrary: hash.map((h) => h.toUpperCase()) },
  { weight: 1, arbitrary: fc.tuple(hash, fc.nat({ max: 63 })).map(([h, i]) => [h.slice(1), `${h}0`, `${h.slice(0, i)}g${h.slice(i + 1)}`, ` ${h.slice(1)}`][i % 4]!) },
  { weight: 1, arbitrary: fc.constantFrom("", "\u0000", "\u001b[2J\u001b[H", "a\nb\r\n", "../../etc/passwd", "\ud800", "\uffff") },
  { weight: 1, arbitrary: fc.constantFrom(64 * 1024, 65 * 1024).map((n) => "x".repeat(n)) }
)
/** Bytes that are not UTF-8, for string fields. */
const invalidUtf8 = fc.constantFrom(new Uint8Array([0xff]), new Uint8Array([0xc0, 0x80]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array([0xf4, 0x90, 0x80, 0x80]))

type Kind = "string" | "int64" | "bool" | "bytes" | "packed" | "meta" | "digest" | "entry" | "item"
/** The fields of each message (field number → kind), as proto/sync.proto declares them. */
const SCHEMAS: Record<string, ReadonlyArray<Kind>> = {
  AssetMeta: ["string", "string", "bool", "int64", "int64", "string"],
  AssetDigest: ["string", "int64", "int64", "int64", "string"],
  Hello: ["int64", "string", "string", "int64", "string"],
  DigestChunk: ["digest", "bool"],
  AssetHeader: ["string", "int64", "meta"],
  AssetChunk: ["string", "bytes"],
  AssetEnd: ["string"],
  MetaUpdate: ["string", "meta"],
  Done: ["int64", "int64"],
  Error: ["int64", "string", "string", "bool"],
  Offer: ["digest"],
  Want: ["string", "bool"],
  Credit: ["int64"],
  Ping: ["int64", "int64"],
  Pong: ["int64", "int64"],
  AuthProof: ["string", "bytes", "bytes"],
  RangeRound: ["entry", "string", "bool"],
  RangeEntry: ["string", "int64", "bytes", "packed", "item", "packed"],
  RangeItem: ["bytes", "int64", "int64", "int64"]
}

/** The message a nested field holds. */
const NESTED: Partial<Record<Kind, keyof typeof SCHEMAS>> = { meta: "AssetMeta", digest: "AssetDigest", entry: "RangeEntry", item: "RangeItem" }

const BIG_BYTES = new Uint8Array(64 * 1024)

/** One field with a value of its declared kind (or, sometimes, of the wrong wire type, or unknown). */
const hostileFieldAt = (field: number, kind: Kind, depth: number): fc.Arbitrary<Field> => {
  const declared: fc.Arbitrary<Field> = kind === "int64"
    ? int64Value.map((value) => ({ _tag: "Varint", field, value }))
    : kind === "bool"
    ? fc.constantFrom(0n, 1n, 2n, 2n ** 64n - 1n).map((value) => ({ _tag: "Varint", field, value }))
    : kind === "string"
    ? fc.oneof({ weight: 9, arbitrary: hostileString }, { weight: 1, arbitrary: invalidUtf8 }).map((value) => ({ _tag: "Bytes", field, value }))
    : kind === "bytes"
    ? fc.oneof({ weight: 9, arbitrary: fc.uint8Array({ maxLength: 256 }) }, { weight: 1, arbitrary: fc.constant(BIG_BYTES) })
      .map((value) => ({ _tag: "Bytes", field, value }))
    : kind === "packed"
    // a packed repeated varint field: many values in one length-delimited field (ts-proto loops to its length)
    ? fc.array(int64Value, { maxLength: 40 }).map((values) => ({ _tag: "Bytes", field, value: Uint8Array.from(values.flatMap(varint)) }))
    : depth > 1
    ? fc.constant({ _tag: "Bytes", field, value: new Uint8Array(0) })
    : hostileMessage(NESTED[kind]!, depth + 1).map((value) => ({ _tag: "Bytes", field, value }))
  return fc.oneof(
    { weight: 12, arbitrary: declared },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Varint" as const), field: fc.constant(field), value: int64Value }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Fixed" as const), field: fc.constantFrom(field, 99, 536_870_911), wide: fc.boolean(), value: int64Value }) },
    {
      weight: 1,
      arbitrary: fc.record({
        _tag: fc.constant("LyingBytes" as const),
        field: fc.constant(field),
        claimed: fc.constantFrom(1n, 64n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 63n, 2n ** 64n - 1n),
        value: fc.uint8Array({ maxLength: 8 })
      })
    },
    // the protobuf reader recurses into groups: around its depth limit (100), and far past it
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Group" as const), field: fc.constantFrom(field, 17), depth: fc.constantFrom(1, 2, 99, 100, 101, 1_000) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Overlong" as const), field: fc.constant(field), bytes: fc.constantFrom(10, 11, 20) }) }
  )
}

/** A message of `name` built from hostile fields, repeated and in any order (arbitraries built once per message). */
const hostileMessage = (name: keyof typeof SCHEMAS, depth = 0): fc.Arbitrary<Uint8Array> => {
  const fields = SCHEMAS[name]!.map((kind, i) => hostileFieldAt(i + 1, kind, depth))
  return fc.array(fc.oneof(...fields), { maxLength: depth === 0 ? 8 : 4 }).map(message)
}

const ENGINE_TYPES = {
  Hello: 0x01,
  DigestChunk: 0x02,
  AssetHeader: 0x03,
  AssetChunk: 0x04,
  AssetEnd: 0x05,
  MetaUpdate: 0x06,
  Done: 0x07,
  Error: 0x08,
  Offer: 0x0d,
  Want: 0x0e,
  RangeRound: 0x0f
} as const
const CONTROL_TYPES = { Credit: 0x09, Ping: 0x0a, Pong: 0x0b, AuthProof: 0x0c } as const

/** An engine frame of any kind whose payload is a hostile message of that kind. */
const hostileFrame = fc.constantFrom(...(Object.keys(ENGINE_TYPES) as Array<keyof typeof ENGINE_TYPES>)).chain((name) =>
  hostileMessage(name).map((payload) => ({ name, bytes: frameBytes(ENGINE_TYPES[name], payload) }))
)

// ---- the frame codec ---------------------------------------------------------------------------

describe("fuzz: the frame codec", () => {
  it("decodes 20,000 random byte strings to a typed error or a valid frame", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          // a known type byte makes the header check pass more often
          fc.tuple(fc.constantFrom(...Object.values(ENGINE_TYPES)), fc.uint8Array({ maxLength: 300 })).map(([t, rest]) =>
            concat([[t], rest])
          ),
          fc.tuple(fc.constantFrom(...Object.values(ENGINE_TYPES)), fc.uint8Array({ maxLength: 300 })).map(([t, payload]) =>
            frameBytes(t, payload)
          )
        ),
        (bytes) => {
          decodeChecked(bytes)
          streamChecked([bytes])
        }
      ),
      runs(20_000)
    )
  })

  it("round-trips 2,000 valid frames of every kind, whole and in random chunks", () => {
    fc.assert(
      fc.property(
        fc.array(validFrame, { minLength: 1, maxLength: 4 }).chain((frames) => {
          const bytes = concat(frames.map(Frame.encode))
          return chunked(bytes).map((chunks) => ({ frames, chunks }))
        }),
        ({ chunks, frames }) => {
          for (const frame of frames) expect(Result.getOrThrow(decodeChecked(Frame.encode(frame)))).toEqual(frame)
          const { frames: decoded, result } = streamChecked(chunks)
          expect(Result.isSuccess(result)).toBe(true)
          expect(decoded).toEqual(frames)
        }
      ),
      runs(2_000)
    )
  })

  it("gives a typed error or a valid frame for 25,000 mutated frames (bit flips, truncation, lying lengths, type bytes)", () => {
    const seen = new Outcomes()
    fc.assert(
      fc.property(
        mutatedFrame.chain((bytes) => chunked(bytes).map((chunks) => ({ bytes, chunks }))),
        ({ bytes, chunks }) => {
          seen.add(decodeChecked(bytes))
          streamChecked(chunks)
        }
      ),
      runs(25_000)
    )
    seen.expectBoth(FRAME_ERRORS)
  })

  it("refuses every length above the limit from the header alone, up to 2^32 − 1, allocating nothing for it", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(ENGINE_TYPES)),
        fc.integer({ min: MAX_FRAME - Frame.HEADER_BYTES + 1, max: 2 ** 32 - 1 }),
        fc.uint8Array({ maxLength: 32 }),
        (type, claimed, payload) => {
          const bytes = frameBytes(type, payload, claimed)
          const whole = decodeChecked(bytes)
          expect(Result.isFailure(whole) && whole.failure._tag).toBe("FrameTooLarge")
          const { result } = streamChecked([bytes.subarray(0, Frame.HEADER_BYTES), bytes.subarray(Frame.HEADER_BYTES)])
          expect(Result.isFailure(result) && result.failure._tag).toBe("FrameTooLarge")
        }
      ),
      runs(5_000)
    )
  })

  it("holds a frame that claims the whole limit without allocating it until its bytes arrive", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(ENGINE_TYPES)),
        fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 8 }),
        (type, sizes) => {
          const decoder = new Frame.FrameDecoder(MAX_FRAME)
          const header = frameBytes(type, new Uint8Array(0), MAX_FRAME - Frame.HEADER_BYTES)
          const chunks = sizes.map((size) => new Uint8Array(size))
          const { largest, result } = probe.measure(() => [header, ...chunks].map((chunk) => decoder.push(chunk)))
          for (const r of result) expect(Result.getOrThrow(r)).toEqual([])
          // only the 5 header bytes were ever joined; the claimed 64 KiB was never allocated
          expect(largest).toBeLessThanOrEqual(Frame.HEADER_BYTES)
          expect(decoder.buffered).toBe(Frame.HEADER_BYTES + sizes.reduce((a, b) => a + b, 0))
          const end = decoder.end()
          expect(Result.isFailure(end) && end.failure._tag).toBe("FrameTruncated")
        }
      ),
      runs(2_000)
    )
  })
})

// ---- every message's protobuf, and its domain view ---------------------------------------------

describe("fuzz: every engine message with hostile protobuf values", () => {
  it("decodes 12,000 hostile messages (int64 past 2^53, 64 KiB ids, invalid hashes and UTF-8, lying lengths, deep groups) to a typed error or a valid domain value", () => {
    const seen = new Outcomes()
    fc.assert(
      fc.property(
        hostileFrame.chain(({ bytes, name }) => chunked(bytes).map((chunks) => ({ name, bytes, chunks }))),
        ({ bytes, chunks, name }) => {
          // under the default limit (1 MiB), so 64 KiB ids and deep groups reach the protobuf decoder
          const result = decodeChecked(bytes, Frame.DEFAULT_MAX_FRAME_BYTES)
          seen.add(result)
          if (Result.isFailure(result)) {
            // the header is right by construction: only the payload can be refused
            expect(result.failure._tag).toBe(bytes.length > Frame.DEFAULT_MAX_FRAME_BYTES ? "FrameTooLarge" : "MalformedPayload")
          } else {
            expect(result.success._tag).toBe(name)
          }
          const streamed = streamChecked(chunks, Frame.DEFAULT_MAX_FRAME_BYTES)
          expect(Result.isSuccess(streamed.result)).toBe(Result.isSuccess(result))
        }
      ),
      runs(12_000)
    )
    // the generator reaches both sides: values the decoder accepts, and payloads it refuses
    seen.expectBoth(["MalformedPayload"])
  })

  it("never decodes an int64 or uint64 outside the safe integers: a value past 2^53 is MalformedPayload", () => {
    const fields: Record<string, ReadonlyArray<number>> = {
      AssetHeader: [2],
      Done: [1, 2]
    }
    fc.assert(
      fc.property(
        fc.constantFrom(...(Object.keys(fields) as Array<"AssetHeader" | "Done">)),
        int64Value,
        (name, value) => {
          const field = fields[name]![0]!
          const result = decodeChecked(frameBytes(ENGINE_TYPES[name], message([{ _tag: "Varint", field, value }])))
          const asUnsigned = BigInt.asUintN(64, value)
          if (asUnsigned > BigInt(Number.MAX_SAFE_INTEGER)) {
            expect(Result.isFailure(result) && result.failure._tag).toBe("MalformedPayload")
          } else {
            expect(Result.isSuccess(result)).toBe(true)
          }
        }
      ),
      runs(2_000)
    )
  })
})

// ---- the link's own framing ----------------------------------------------------------------------

/** The receive path of a ChannelLink, without the channel: parse, account, reassemble, decode controls. */
const receivePath = (maxFrameBytes: number, windowBytes: number) => {
  const window = new ReceiveWindow(windowBytes)
  window.initialGrant()
  const reassembler = new Framing.Reassembler(maxFrameBytes)
  const frames: Array<Uint8Array> = []
  const controls: Array<Framing.ControlFrame> = []
  const receive = (message: Uint8Array): Result.Result<void, Framing.FramingViolation> => {
    const parsed = Framing.parse(message)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    const msg = parsed.success
    if (msg._tag === "Goodbye") return Result.void
    if (msg._tag === "Control") {
      const control = Framing.decodeControl(msg.frame)
      if (Result.isFailure(control)) return Result.fail(control.failure)
      expectSafeNumbers(control.success.message)
      controls.push(control.success)
      return Result.void
    }
    const accounted = window.received(msg.payload.length)
    if (Result.isFailure(accounted)) return accounted
    const joined = reassembler.push(msg.payload, msg.last)
    if (Result.isFailure(joined)) return Result.fail(joined.failure)
    if (joined.success !== undefined) {
      frames.push(joined.success)
      window.consumed(joined.success.length)
    }
    return Result.void
  }
  return { receive, frames, controls, reassembler, window }
}

const expectViolation = (r: Result.Result<unknown, Framing.FramingViolation>): void => {
  if (Result.isFailure(r)) check(r.failure._tag === "FramingViolation" && typeof r.failure.message === "string", () => `untyped failure ${String(r.failure)}`)
}

/** Random bytes to slice frames and pieces from (fast-check draws offsets and sizes, not each byte). */
const NOISE_SPAN = 1024 * 1024
const NOISE = Uint8Array.from(randomBytes(NOISE_SPAN + 300_000))

const validControl: fc.Arbitrary<Framing.ControlFrame> = fc.oneof(
  safeInt.map((bytes) => ({ _tag: "Credit" as const, message: { bytes } })),
  fc.record({ nonce: safeInt, sentAt: safeInt }).map((message) => ({ _tag: "Ping" as const, message })),
  fc.record({ nonce: safeInt, sentAt: safeInt }).map((message) => ({ _tag: "Pong" as const, message })),
  fc.record({ peerId: text, publicKey: fc.uint8Array({ maxLength: 32 }), signature: fc.uint8Array({ maxLength: 64 }) })
    .map((message) => ({ _tag: "AuthProof" as const, message }))
)

/** A CONTROL message: valid, carrying a hostile payload, with a lying length, or of any type byte. */
const controlMessage = fc.oneof(
  validControl.map(Framing.control),
  fc.constantFrom(...(Object.keys(CONTROL_TYPES) as Array<keyof typeof CONTROL_TYPES>)).chain((name) =>
    hostileMessage(name).map((payload) => concat([[Framing.CONTROL], frameBytes(CONTROL_TYPES[name], payload)]))
  ),
  fc.tuple(fc.nat({ max: 255 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 64 })).map(([type, claimed, payload]) =>
    concat([[Framing.CONTROL], frameBytes(type, payload, claimed)])
  ),
  fc.integer({ min: Framing.MAX_CONTROL_BYTES - 8, max: Framing.MAX_CONTROL_BYTES + 8 }).map((size) =>
    concat([[Framing.CONTROL], frameBytes(CONTROL_TYPES.AuthProof, new Uint8Array(size))])
  )
)

describe("fuzz: the WebRTC link's framing", () => {
  it("parses 10,000 random messages and control bodies to a typed FramingViolation or a valid message", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), controlMessage), (bytes) => {
        const { largest } = probe.measure(() => {
          const parsed = Framing.parse(bytes)
          expectViolation(parsed)
          expectViolation(Framing.decodeControl(bytes))
          expectViolation(Framing.decodeControl(bytes.subarray(1)))
          if (Result.isSuccess(parsed) && parsed.success._tag === "Control") {
            const control = Framing.decodeControl(parsed.success.frame)
            expectViolation(control)
            if (Result.isSuccess(control)) expectSafeNumbers(control.success.message)
          }
        })
        check(largest <= Framing.MAX_CONTROL_BYTES, () => `control parsing allocated ${largest} bytes`)
      }),
      runs(10_000)
    )
  })

  it("splits 2,000 frames (up to 300 KB) at any message size and joins them byte for byte, with control messages between the pieces", () => {
    // message sizes down to 2 bytes for small frames, down to 1 KiB for large ones (else 150,000 messages a frame)
    const framing = fc.oneof(
      fc.tuple(fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 3 }), fc.integer({ min: 2, max: 2_100 })),
      fc.tuple(fc.array(fc.integer({ min: 0, max: 300_000 }), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1024, max: 70_000 }))
    )
    fc.assert(
      fc.property(
        framing,
        fc.array(validControl, { maxLength: 4 }),
        fc.nat(),
        ([sizes, maxMessage], controls, seed) => {
          const frames = sizes.map((size, i) => NOISE.subarray((seed + i * 7919) % NOISE_SPAN, (seed + i * 7919) % NOISE_SPAN + size))
          const messages = frames.flatMap((f) => Framing.split(f, maxMessage))
          check(messages.every((m) => m.length <= maxMessage), () => "a piece is larger than the message limit")
          // controls at random places between the pieces, in their own order
          const places = controls.map((_, i) => (seed + i * 977) % (messages.length + 1)).sort((a, b) => a - b)
          for (let i = controls.length - 1; i >= 0; i--) messages.splice(places[i]!, 0, Framing.control(controls[i]!))
          const path = receivePath(1_000_000, 4_000_000)
          for (const m of messages) Result.getOrThrow(path.receive(m))
          expect(path.frames.length).toBe(frames.length)
          path.frames.forEach((f, i) => check(Buffer.compare(f, frames[i]!) === 0, () => `frame ${i} differs after the round trip`))
          expect(path.controls).toEqual(controls)
        }
      ),
      runs(2_000)
    )
  })

  it("never holds more than one frame at the limit, nor more than the window, for 20,000 hostile message sequences", () => {
    const maxFrame = 16 * 1024
    const windowBytes = 2 * maxFrame
    const message = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.tuple(fc.constantFrom(Framing.MORE, Framing.LAST), fc.nat({ max: NOISE_SPAN }), fc.nat({ max: 6000 }))
          .map(([kind, at, size]) => concat([[kind], NOISE.subarray(at, at + size)]))
      },
      { weight: 2, arbitrary: controlMessage },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }) },
      { weight: 1, arbitrary: fc.constant(Framing.goodbye()) }
    )
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), (messages) => {
        const path = receivePath(maxFrame, windowBytes)
        const { largest } = probe.measure(() => {
          for (const m of messages) {
            const r = path.receive(m)
            expectViolation(r)
            if (Result.isFailure(r)) break
            check(path.reassembler.buffered <= maxFrame, () => `the reassembler holds ${path.reassembler.buffered} bytes`)
            check(path.window.buffered <= windowBytes, () => `${path.window.buffered} bytes held, beyond the window`)
          }
        })
        check(largest <= maxFrame, () => `the receive path allocated ${largest} bytes`)
        for (const f of path.frames) check(f.length <= maxFrame, () => `a frame of ${f.length} bytes was joined`)
      }),
      runs(20_000)
    )
  })

  it("carries 3,000 mutated engine frames across the link to a typed error at one layer or the other", () => {
    fc.assert(
      fc.property(fc.oneof(mutatedFrame, hostileFrame.map((h) => h.bytes)), fc.integer({ min: 2, max: 4096 }), (bytes, maxMessage) => {
        const path = receivePath(MAX_FRAME, 4 * MAX_FRAME)
        let failed = false
        for (const m of Framing.split(bytes, maxMessage)) {
          const r = path.receive(m)
          expectViolation(r)
          if (Result.isFailure(r)) {
            failed = true
            break
          }
        }
        if (!failed) {
          expect(path.frames.length).toBe(1)
          decodeChecked(path.frames[0]!)
        }
      }),
      runs(3_000)
    )
  })
})

describe("fuzz: range reconciliation rounds", () => {
  it("gathers 3,000 sequences of rounds into messages or a typed RangeViolation, never holding more than maxItems", () => {
    const maxItems = 24
    fc.assert(
      fc.property(fc.array(rangeRound, { maxLength: 8 }), (rounds) => {
        const assembler = RangeFrames.makeAssembler(maxItems)
        let received = 0
        for (const round of rounds) {
          received += round.entries.reduce((n, e) => n + 1 + e.items.length + e.counts.length, 0)
          const added = assembler.add(round)
          if (Result.isFailure(added)) {
            check(added.failure._tag === "RangeViolation", () => `refused with ${String(added.failure)}`)
            return
          }
          check(received <= maxItems, () => `accepted ${received} items and entries, more than ${maxItems}`)
        }
      }),
      runs(3_000)
    )
  })
})

describe("fuzz: coverage", () => {
  it("the fuzzers know every frame type the codecs know (a new message kind must be added here)", () => {
    for (let type = 0; type < 256; type++) {
      const engine = Frame.decode(frameBytes(type, new Uint8Array(0)), MAX_FRAME)
      const knownToEngine = !(Result.isFailure(engine) && engine.failure._tag === "UnknownFrameType")
      expect(knownToEngine, `engine frame type 0x${type.toString(16)}`).toBe((Object.values(ENGINE_TYPES) as Array<number>).includes(type))
      const control = Framing.decodeControl(frameBytes(type, new Uint8Array(0)))
      const knownToLink = !(Result.isFailure(control) && control.failure.detail.includes("unknown type"))
      expect(knownToLink, `control frame type 0x${type.toString(16)}`).toBe((Object.values(CONTROL_TYPES) as Array<number>).includes(type))
    }
  })
})

describe("fuzz: memory after the whole run", () => {
  it("the array buffers in use did not balloon", () => {
    expect(arrayBufferBytes() - memoryAtStart).toBeLessThan(MEMORY_GROWTH_BOUND)
  })

  it("the allocation probe sees the decoder's own allocations (it measures something)", () => {
    // two chunks, neither holding a whole header: the decoder must join them
    const bytes = Frame.encode(Frame.make("AssetEnd", { hash: "a".repeat(64) }))
    const decoder = new Frame.FrameDecoder(MAX_FRAME)
    const { largest } = probe.measure(() => {
      decoder.push(bytes.subarray(0, 2))
      return decoder.push(bytes.subarray(2))
    })
    expect(largest).toBeGreaterThan(0)
    expect(Proto.AssetEnd.decode(bytes.subarray(Frame.HEADER_BYTES)).hash).toBe("a".repeat(64))
  })
})
