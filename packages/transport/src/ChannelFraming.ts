/**
 * How frames travel as data-channel messages. Every message starts with one kind byte: a piece of
 * an engine frame (MORE: more pieces follow, LAST: the frame ends here), one whole control frame
 * of the link itself (CONTROL: Credit, Ping, Pong, AuthProof, encoded here, never seen by the
 * engine), which may arrive between the pieces of a large frame, or GOODBYE: "nothing more from
 * me", answered in kind before the channel is closed. Pure functions; no Node-only imports.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { Frame, Proto } from "@can-sync/core"
import type { EncodedFrame } from "@can-sync/core"

export const MORE = 0x00
export const LAST = 0x01
export const CONTROL = 0x02
export const GOODBYE = 0x03
export const KIND_BYTES = 1

/** The peer broke the channel framing or credit rules; the link closes (LinkProtocolViolation). */
export class FramingViolation extends Schema.TaggedError<FramingViolation>()("FramingViolation", {
  detail: Schema.String
}) {
  override get message(): string {
    return `channel framing violation: ${this.detail}`
  }
}

/**
 * Write the message carrying `frame[offset ..]` into `target` (whose length is the message limit,
 * kind byte included); gives the message's length and the offset of the next piece (the frame's
 * length when this one is the last). The sender reuses one target for every message. The frame
 * may be given as parts that follow each other (a sequence number, a header, a chunk's content):
 * they are joined here, in the message, never in a buffer of their own.
 */
export const writePiece = (
  target: Uint8Array,
  frame: EncodedFrame,
  offset: number
): { readonly length: number; readonly next: number } => {
  const parts = frame instanceof Uint8Array ? [frame] : frame
  const total = Frame.byteLength(frame)
  const end = Math.min(total, offset + target.length - KIND_BYTES)
  target[0] = end === total ? LAST : MORE
  let at = KIND_BYTES
  let start = 0 // where the current part begins in the frame
  for (const part of parts) {
    const from = Math.max(offset, start)
    const to = Math.min(end, start + part.length)
    if (to > from) {
      target.set(part.subarray(from - start, to - start), at)
      at += to - from
    }
    start += part.length
    if (start >= end) break
  }
  return { length: KIND_BYTES + end - offset, next: end }
}

/** The message carrying `frame[offset ..]`, in a buffer of its own. */
export const pieceAt = (
  frame: Uint8Array,
  offset: number,
  maxMessageBytes: number
): { readonly message: Uint8Array; readonly next: number } => {
  const target = new Uint8Array(Math.min(maxMessageBytes, KIND_BYTES + frame.length - offset))
  const { length, next } = writePiece(target, frame, offset)
  return { message: target.subarray(0, length), next }
}

/** Every message of one frame, in order (an empty frame is one empty LAST piece). */
export const split = (frame: Uint8Array, maxMessageBytes: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let offset = 0
  do {
    const piece = pieceAt(frame, offset, maxMessageBytes)
    out.push(piece.message)
    offset = piece.next
  } while (offset < frame.length)
  return out
}

/** The one-byte message that closes a link gracefully. */
export const goodbye = (): Uint8Array => new Uint8Array([GOODBYE])

// ---- control frames -------------------------------------------------------------------------

/**
 * A CONTROL message is the kind byte, a type byte, the payload length (4 bytes, big endian) and
 * the protobuf payload: the layout of an engine frame, with types of the link's own.
 */
const controlKinds = {
  Credit: [0x09, Proto.Credit],
  Ping: [0x0a, Proto.Ping],
  Pong: [0x0b, Proto.Pong],
  AuthProof: [0x0c, Proto.AuthProof]
} as const

export type ControlFrame =
  | { readonly _tag: "Credit"; readonly message: Proto.Credit }
  | { readonly _tag: "Ping"; readonly message: Proto.Ping }
  | { readonly _tag: "Pong"; readonly message: Proto.Pong }
  | { readonly _tag: "AuthProof"; readonly message: Proto.AuthProof }

/** The largest CONTROL message accepted (an AuthProof is ~150 bytes). */
export const MAX_CONTROL_BYTES = 4096
const CONTROL_HEADER_BYTES = KIND_BYTES + 5

interface ControlCodec {
  encode(message: unknown): { finish(): Uint8Array }
  decode(input: Uint8Array): unknown
}
const codecOf = (tag: ControlFrame["_tag"]): ControlCodec => controlKinds[tag][1] as ControlCodec
const tagOfType = new Map<number, ControlFrame["_tag"]>(
  (Object.keys(controlKinds) as Array<ControlFrame["_tag"]>).map((tag) => [controlKinds[tag][0], tag])
)

/** One control frame as one CONTROL message. */
export const control = (frame: ControlFrame): Uint8Array => {
  const payload = codecOf(frame._tag).encode(frame.message).finish()
  const message = new Uint8Array(CONTROL_HEADER_BYTES + payload.length)
  message[0] = CONTROL
  message[1] = controlKinds[frame._tag][0]
  new DataView(message.buffer).setUint32(2, payload.length, false)
  message.set(payload, CONTROL_HEADER_BYTES)
  return message
}

/** The control frame in a CONTROL message's body (what `parse` gives as `frame`). */
export const decodeControl = (body: Uint8Array): Result.Result<ControlFrame, FramingViolation> => {
  const refuse = (detail: string) => Result.fail(new FramingViolation({ detail: `bad control frame: ${detail}` }))
  if (body.length > MAX_CONTROL_BYTES) return refuse(`${body.length} bytes, over ${MAX_CONTROL_BYTES}`)
  if (body.length < CONTROL_HEADER_BYTES - KIND_BYTES) return refuse("truncated")
  const tag = tagOfType.get(body[0]!)
  if (tag === undefined) return refuse(`unknown type 0x${body[0]!.toString(16)}`)
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1, false)
  if (length !== body.length - (CONTROL_HEADER_BYTES - KIND_BYTES)) return refuse(`${tag} length ${length} does not match`)
  try {
    const message = codecOf(tag).decode(body.subarray(CONTROL_HEADER_BYTES - KIND_BYTES))
    return Result.succeed({ _tag: tag, message } as ControlFrame)
  } catch (error) {
    return refuse(`${tag}: ${error instanceof Error ? error.message : String(error)}`)
  }
}

export type Message =
  | { readonly _tag: "Piece"; readonly last: boolean; readonly payload: Uint8Array }
  | { readonly _tag: "Control"; readonly frame: Uint8Array }
  | { readonly _tag: "Goodbye" }

export const parse = (message: Uint8Array): Result.Result<Message, FramingViolation> => {
  if (message.length < KIND_BYTES) return Result.fail(new FramingViolation({ detail: "empty message" }))
  const payload = message.subarray(KIND_BYTES)
  switch (message[0]) {
    case MORE:
      return Result.succeed({ _tag: "Piece", last: false, payload })
    case LAST:
      return Result.succeed({ _tag: "Piece", last: true, payload })
    case CONTROL:
      return Result.succeed({ _tag: "Control", frame: payload })
    case GOODBYE:
      return Result.succeed({ _tag: "Goodbye" })
    default:
      return Result.fail(new FramingViolation({ detail: `unknown message kind 0x${message[0]!.toString(16)}` }))
  }
}

/**
 * Joins pieces back into frames. Holds at most one partial frame, never more than
 * `maxFrameBytes`: a frame that grows past the limit is refused before it is buffered.
 */
export class Reassembler {
  readonly maxFrameBytes: number
  private pieces: Array<Uint8Array> = []
  private bytes = 0
  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes
  }

  /** Bytes of the frame being joined. */
  get buffered(): number {
    return this.bytes
  }

  /** Add one piece; gives the whole frame when `last`, else undefined. */
  push(payload: Uint8Array, last: boolean): Result.Result<Uint8Array | undefined, FramingViolation> {
    const size = this.bytes + payload.length
    if (size > this.maxFrameBytes) {
      return Result.fail(
        new FramingViolation({ detail: `frame of at least ${size} bytes exceeds the limit of ${this.maxFrameBytes}` })
      )
    }
    if (!last) {
      this.pieces.push(payload)
      this.bytes = size
      return Result.succeed(undefined)
    }
    if (this.pieces.length === 0) return Result.succeed(payload)
    const frame = new Uint8Array(size)
    let offset = 0
    for (const piece of this.pieces) {
      frame.set(piece, offset)
      offset += piece.length
    }
    frame.set(payload, offset)
    this.pieces = []
    this.bytes = 0
    return Result.succeed(frame)
  }
}
