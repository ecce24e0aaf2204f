/**
 * How frames travel as data-channel messages. Every message starts with one kind byte: a piece of
 * an engine frame (MORE: more pieces follow, LAST: the frame ends here), one whole transport
 * frame (CONTROL: Credit, Ping, Pong, AuthProof), which may arrive between the pieces of a large
 * frame, or GOODBYE: "nothing more from me", answered in kind before the channel is closed, so
 * everything sent before a close is delivered. Pure functions, tested without a network.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"

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
 * kind byte included); gives the message's length and the offset of the next piece
 * (`frame.length` when this one is the last). The sender reuses one target for every message.
 */
export const writePiece = (
  target: Uint8Array,
  frame: Uint8Array,
  offset: number
): { readonly length: number; readonly next: number } => {
  const end = Math.min(frame.length, offset + target.length - KIND_BYTES)
  target[0] = end === frame.length ? LAST : MORE
  target.set(frame.subarray(offset, end), KIND_BYTES)
  return { length: KIND_BYTES + end - offset, next: end }
}

/** The message carrying `frame[offset ..]`, in a buffer of its own. */
export const pieceAt = (
  frame: Uint8Array,
  offset: number,
  maxMessageBytes: number
): { readonly message: Uint8Array; readonly next: number } => {
  const target = Buffer.allocUnsafe(Math.min(maxMessageBytes, KIND_BYTES + frame.length - offset))
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

/** A whole transport frame as one CONTROL message. */
export const control = (frame: Uint8Array): Uint8Array => {
  const message = Buffer.allocUnsafe(KIND_BYTES + frame.length)
  message[0] = CONTROL
  message.set(frame, KIND_BYTES)
  return message
}

/** The one-byte message that closes a link gracefully. */
export const goodbye = (): Uint8Array => Buffer.from([GOODBYE])

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
