/**
 * The frame codec: one type byte, a 4-byte big-endian payload length, then the protobuf payload.
 * Decoding is total: truncated input, an unknown type, a length above the limit or a payload that
 * does not decode each give a typed FrameError; the claimed length is checked before anything is
 * allocated for it. `FrameDecoder` reassembles frames from arbitrary byte chunks.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire"
import * as Proto from "./proto/sync.ts"
import type { EncodedFrame } from "./PeerLink.ts"

export const HEADER_BYTES = 5
/** Default largest frame accepted: well above a content chunk or a digest chunk. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024

interface Codec<A> {
  encode(message: A, writer?: BinaryWriter): BinaryWriter
  decode(input: BinaryReader | Uint8Array, length?: number): A
}

/**
 * Every frame kind of the sync protocol: its type byte and its protobuf message. Types 0x09–0x0C
 * (Credit, Ping, Pong, AuthProof) belong to the WebRTC link, which frames them itself: here they
 * are unknown types, so one reaching the engine fails the session as an undecodable frame.
 */
const kinds = {
  Hello: [0x01, Proto.Hello],
  DigestChunk: [0x02, Proto.DigestChunk],
  AssetHeader: [0x03, Proto.AssetHeader],
  AssetChunk: [0x04, Proto.AssetChunk],
  AssetEnd: [0x05, Proto.AssetEnd],
  MetaUpdate: [0x06, Proto.MetaUpdate],
  Done: [0x07, Proto.Done],
  Error: [0x08, Proto.Error],
  Offer: [0x0d, Proto.Offer],
  Want: [0x0e, Proto.Want],
  RangeRound: [0x0f, Proto.RangeRound]
} as const

type Kinds = typeof kinds
export type FrameTag = keyof Kinds
type MessageOf<K extends FrameTag> = Kinds[K][1] extends Codec<infer A> ? A : never

/** A decoded frame: `{ _tag: "Hello", message: Hello }`, and so on for every kind. */
export type Frame = { [K in FrameTag]: { readonly _tag: K; readonly message: MessageOf<K> } }[FrameTag]
export type FrameOf<K extends FrameTag> = Extract<Frame, { readonly _tag: K }>

const tagByType = new Map<number, FrameTag>(
  (Object.keys(kinds) as Array<FrameTag>).map((tag) => [kinds[tag][0], tag])
)

export const frameType = (tag: FrameTag): number => kinds[tag][0]

/**
 * A message as a frame's author writes it: fields added to version 1 later — Hello's `features`,
 * Want's `offsets`, AssetHeader's `offset` (empty or 0 for peers that predate them) — may be left out.
 */
export type MessageInput<K extends FrameTag> = K extends "Hello"
  ? Omit<Proto.Hello, "features"> & { readonly features?: Array<string> | undefined }
  : K extends "Want" ? Omit<Proto.Want, "offsets"> & { readonly offsets?: Array<number> | undefined }
  : K extends "AssetHeader" ? Omit<Proto.AssetHeader, "offset"> & { readonly offset?: number | undefined }
  : MessageOf<K>

/** The later fields' values for a peer that leaves them out. */
const laterFields: Partial<Record<FrameTag, Record<string, unknown>>> = {
  Hello: { features: [] },
  Want: { offsets: [] },
  AssetHeader: { offset: 0 }
}

/** Build a frame value (a plain constructor with the right type). */
export const make = <K extends FrameTag>(tag: K, message: MessageInput<K>): FrameOf<K> => {
  const defaults = laterFields[tag]
  if (defaults === undefined) return { _tag: tag, message } as unknown as FrameOf<K>
  const filled: Record<string, unknown> = { ...message }
  for (const [field, value] of Object.entries(defaults)) if (filled[field] === undefined) filled[field] = value
  return { _tag: tag, message: filled } as unknown as FrameOf<K>
}

export class FrameTooLarge extends Schema.TaggedError<FrameTooLarge>()("FrameTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `a frame of ${this.size} bytes exceeds the limit of ${this.limit}`
  }
}
export class UnknownFrameType extends Schema.TaggedError<UnknownFrameType>()("UnknownFrameType", {
  type: Schema.Number
}) {
  override get message(): string {
    return `unknown frame type 0x${this.type.toString(16).padStart(2, "0")}`
  }
}
export class FrameTruncated extends Schema.TaggedError<FrameTruncated>()("FrameTruncated", {
  expected: Schema.Number,
  received: Schema.Number
}) {
  override get message(): string {
    return `truncated frame: ${this.received} of ${this.expected} bytes`
  }
}
export class MalformedPayload extends Schema.TaggedError<MalformedPayload>()("MalformedPayload", {
  frame: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `malformed ${this.frame} payload: ${this.detail}`
  }
}
export type FrameError = FrameTooLarge | UnknownFrameType | FrameTruncated | MalformedPayload

const textEncoder = new TextEncoder()

/** Bytes of `n` as a protobuf varint. */
const varintLength = (n: number): number => {
  let bytes = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    bytes++
  }
  return bytes
}

const writeVarint = (out: Uint8Array, offset: number, n: number): number => {
  while (n >= 0x80) {
    out[offset++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[offset++] = n
  return offset
}

/**
 * The hot path: an AssetChunk's frame as two parts, its header and fields up to the content, then
 * the content itself, so the content is never copied into a frame of its own (the link writes both
 * parts straight into its messages). Same bytes as the generated encoder: field 1 (hash,
 * length-delimited), field 2 (data, length-delimited).
 */
const assetChunkParts = (message: { readonly hash: string; readonly data: Uint8Array }): ReadonlyArray<Uint8Array> => {
  const hash = textEncoder.encode(message.hash)
  const hashField = hash.length > 0 ? 1 + varintLength(hash.length) + hash.length : 0
  const dataField = message.data.length > 0 ? 1 + varintLength(message.data.length) + message.data.length : 0
  const length = hashField + dataField
  const head = new Uint8Array(HEADER_BYTES + length - message.data.length)
  head[0] = kinds.AssetChunk[0]
  new DataView(head.buffer).setUint32(1, length, false)
  let offset = HEADER_BYTES
  if (hash.length > 0) {
    head[offset++] = (1 << 3) | 2
    offset = writeVarint(head, offset, hash.length)
    head.set(hash, offset)
    offset += hash.length
  }
  if (message.data.length === 0) return [head]
  head[offset++] = (2 << 3) | 2
  writeVarint(head, offset, message.data.length)
  return [head, message.data]
}

/** An encoded frame (or any chunks) in one buffer, its parts joined. */
export const join = (frame: EncodedFrame): Uint8Array => {
  if (frame instanceof Uint8Array) return frame
  if (frame.length === 1) return frame[0]!
  const out = new Uint8Array(byteLength(frame))
  let offset = 0
  for (const part of frame) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** The bytes of an encoded frame, all parts counted. */
export const byteLength = (frame: EncodedFrame): number => {
  if (frame instanceof Uint8Array) return frame.length
  let bytes = 0
  for (const part of frame) bytes += part.length
  return bytes
}

/**
 * Encode one frame as the parts a link sends in order (PeerLink.send): one buffer, or for an
 * AssetChunk its header and its content uncopied.
 */
export const encodeParts = (frame: Frame): ReadonlyArray<Uint8Array> =>
  frame._tag === "AssetChunk" ? assetChunkParts(frame.message) : [encode(frame)]

/** Encode one frame: header and payload in a single buffer. */
export const encode = (frame: Frame): Uint8Array => {
  if (frame._tag === "AssetChunk") return join(assetChunkParts(frame.message))
  const [type, codec] = kinds[frame._tag] as readonly [number, Codec<unknown>]
  const payload = codec.encode(frame.message).finish()
  const out = new Uint8Array(HEADER_BYTES + payload.length)
  out[0] = type
  new DataView(out.buffer).setUint32(1, payload.length, false)
  out.set(payload, HEADER_BYTES)
  return out
}

/** The encoded size of a frame, without building the whole buffer twice. */
export const encodedSize = (frame: Frame): number => encode(frame).length

/**
 * The cheap check before a parse: reads the header and validates type and length.
 * `undefined` means more bytes are needed for the header.
 */
export const checkHeader = (
  bytes: Uint8Array,
  maxFrameBytes: number
): Result.Result<{ readonly tag: FrameTag; readonly length: number } | undefined, UnknownFrameType | FrameTooLarge> => {
  if (bytes.length < HEADER_BYTES) return Result.succeed(undefined)
  const type = bytes[0]!
  const tag = tagByType.get(type)
  if (tag === undefined) return Result.fail(new UnknownFrameType({ type }))
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1, false)
  if (HEADER_BYTES + length > maxFrameBytes) {
    return Result.fail(new FrameTooLarge({ size: HEADER_BYTES + length, limit: maxFrameBytes }))
  }
  return Result.succeed({ tag, length })
}

const decodePayload = (tag: FrameTag, payload: Uint8Array): Result.Result<Frame, MalformedPayload> => {
  const codec = kinds[tag][1] as Codec<unknown>
  try {
    return Result.succeed({ _tag: tag, message: codec.decode(payload) } as Frame)
  } catch (error) {
    return Result.fail(new MalformedPayload({ frame: tag, detail: error instanceof Error ? error.message : String(error) }))
  }
}

/** Decode exactly one frame from `bytes` (trailing bytes are an error too). */
export const decode = (
  bytes: Uint8Array,
  maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES
): Result.Result<Frame, FrameError> => {
  const header = checkHeader(bytes, maxFrameBytes)
  if (Result.isFailure(header)) return Result.fail(header.failure)
  if (header.success === undefined) {
    return Result.fail(new FrameTruncated({ expected: HEADER_BYTES, received: bytes.length }))
  }
  const { length, tag } = header.success
  if (bytes.length !== HEADER_BYTES + length) {
    return bytes.length < HEADER_BYTES + length
      ? Result.fail(new FrameTruncated({ expected: HEADER_BYTES + length, received: bytes.length }))
      : Result.fail(new MalformedPayload({ frame: tag, detail: `${bytes.length - HEADER_BYTES - length} trailing bytes` }))
  }
  return decodePayload(tag, bytes.subarray(HEADER_BYTES))
}

/**
 * Reassembles frames from chunks of a byte stream. Memory held is at most one frame (bounded by
 * `maxFrameBytes`) plus the chunk being read.
 */
export class FrameDecoder {
  private pending: Array<Uint8Array> = []
  private pendingBytes = 0
  readonly maxFrameBytes: number
  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes
  }

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.pendingBytes
  }

  /** Add a chunk; returns every frame it completes, or the first error (the decoder is then unusable). */
  push(chunk: Uint8Array): Result.Result<Array<Frame>, FrameError> {
    if (chunk.length > 0) {
      this.pending.push(chunk)
      this.pendingBytes += chunk.length
    }
    const frames: Array<Frame> = []
    while (true) {
      const head = this.peek(HEADER_BYTES)
      const header = checkHeader(head, this.maxFrameBytes)
      if (Result.isFailure(header)) return Result.fail(header.failure)
      if (header.success === undefined) break
      const total = HEADER_BYTES + header.success.length
      if (this.pendingBytes < total) break
      const bytes = this.take(total)
      const frame = decodePayload(header.success.tag, bytes.subarray(HEADER_BYTES))
      if (Result.isFailure(frame)) return Result.fail(frame.failure)
      frames.push(frame.success)
    }
    return Result.succeed(frames)
  }

  /** At the end of input: anything left over is a truncated frame. */
  end(): Result.Result<void, FrameTruncated> {
    if (this.pendingBytes === 0) return Result.void
    const head = this.peek(HEADER_BYTES)
    const expected = head.length === HEADER_BYTES
      ? HEADER_BYTES + new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(1, false)
      : HEADER_BYTES
    return Result.fail(new FrameTruncated({ expected, received: this.pendingBytes }))
  }

  private peek(n: number): Uint8Array {
    const first = this.pending[0]
    if (first !== undefined && first.length >= n) return first.subarray(0, n)
    return this.concat(Math.min(n, this.pendingBytes), false)
  }

  private take(n: number): Uint8Array {
    const first = this.pending[0]!
    if (first.length === n) {
      this.pending.shift()
      this.pendingBytes -= n
      return first
    }
    if (first.length > n) {
      this.pending[0] = first.subarray(n)
      this.pendingBytes -= n
      return first.subarray(0, n)
    }
    return this.concat(n, true)
  }

  private concat(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n)
    let offset = 0
    let i = 0
    while (offset < n) {
      const part = this.pending[i]!
      const used = Math.min(part.length, n - offset)
      out.set(part.subarray(0, used), offset)
      offset += used
      if (consume) {
        if (used === part.length) i++
        else this.pending[i] = part.subarray(used)
      } else {
        i++
      }
    }
    if (consume) {
      this.pending.splice(0, i)
      this.pendingBytes -= n
    }
    return out
  }
}

/** Decode a byte stream into frames; fails the stream with the first FrameError. */
export const decodeStream = (maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) =>
<E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Frame, E | FrameError, R> =>
  Stream.suspend(() => {
    const decoder = new FrameDecoder(maxFrameBytes)
    return bytes.pipe(
      Stream.mapEffect((chunk) => Effect.fromResult(decoder.push(chunk))),
      Stream.flatMap((frames) => Stream.fromIterable(frames)),
      Stream.concat(Stream.fromEffectDrain(Effect.suspend(() => Effect.fromResult(decoder.end()))))
    )
  })
