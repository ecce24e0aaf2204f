/**
 * What the fuzzers share: fast-check parameters (a fixed number of runs, TEST_SEED to replay a
 * seed fast-check printed), a hand-written protobuf writer that can say anything the wire format
 * allows (any field number and wire type, 64-bit varints, overlong varints, lying lengths), and a
 * probe that records the largest buffer the code under test allocates.
 */
import type fc from "fast-check"

/**
 * One seed for a whole test file: TEST_SEED when set, else a fresh one. fast-check prints it with
 * every counterexample; `TEST_SEED=<seed>` replays the file's runs (and its pools) exactly.
 */
export const SEED: number = (() => {
  const fromEnv = Number(process.env.TEST_SEED)
  return process.env.TEST_SEED !== undefined && process.env.TEST_SEED !== "" && Number.isSafeInteger(fromEnv)
    ? fromEnv
    : Math.floor(Math.random() * 2 ** 31)
})()

/** fast-check parameters: `numRuns` runs (times FUZZ_SCALE when set, for a longer local hunt) from SEED. */
export const runs = (numRuns: number): fc.Parameters<unknown> => {
  const scale = Number(process.env.FUZZ_SCALE ?? "1")
  return {
    numRuns: Math.max(1, Math.round(numRuns * (Number.isFinite(scale) && scale > 0 ? scale : 1))),
    endOnFailure: true,
    seed: SEED
  }
}

// ---- a protobuf writer that lies on request ------------------------------------------------

export const WireType = { varint: 0, fixed64: 1, bytes: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const

/** A varint of the low 64 bits of `value` (negative values as two's complement: ten bytes). */
export const varint = (value: bigint): Array<number> => {
  let v = BigInt.asUintN(64, value)
  const out: Array<number> = []
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return out
}

const utf8 = new TextEncoder()

/** One field: its key and its value in the given wire type. */
export type Field =
  | { readonly _tag: "Varint"; readonly field: number; readonly value: bigint }
  | { readonly _tag: "Bytes"; readonly field: number; readonly value: Uint8Array | string }
  /** A length-delimited field whose length prefix says `claimed`, followed by `value`'s bytes. */
  | { readonly _tag: "LyingBytes"; readonly field: number; readonly claimed: bigint; readonly value: Uint8Array }
  | { readonly _tag: "Fixed"; readonly field: number; readonly wide: boolean; readonly value: bigint }
  | { readonly _tag: "Group"; readonly field: number; readonly depth: number }
  /** A varint of more than ten bytes (protobuf allows at most ten). */
  | { readonly _tag: "Overlong"; readonly field: number; readonly bytes: number }

const key = (field: number, wireType: number): Array<number> => varint((BigInt(field) << 3n) | BigInt(wireType))

/** The bytes of `fields`, in order (the last occurrence of a scalar field wins on decode). */
export const message = (fields: ReadonlyArray<Field>): Uint8Array => {
  const parts: Array<ArrayLike<number>> = []
  for (const f of fields) {
    switch (f._tag) {
      case "Varint":
        parts.push(key(f.field, WireType.varint), varint(f.value))
        break
      case "Bytes": {
        const bytes = typeof f.value === "string" ? utf8.encode(f.value) : f.value
        parts.push(key(f.field, WireType.bytes), varint(BigInt(bytes.length)), bytes)
        break
      }
      case "LyingBytes":
        parts.push(key(f.field, WireType.bytes), varint(f.claimed), f.value)
        break
      case "Fixed": {
        const bytes = new Uint8Array(f.wide ? 8 : 4)
        const view = new DataView(bytes.buffer)
        if (f.wide) view.setBigUint64(0, BigInt.asUintN(64, f.value), true)
        else view.setUint32(0, Number(BigInt.asUintN(32, f.value)), true)
        parts.push(key(f.field, f.wide ? WireType.fixed64 : WireType.fixed32), bytes)
        break
      }
      case "Group": {
        const start = key(f.field, WireType.startGroup)
        const end = key(f.field, WireType.endGroup)
        const nested = new Uint8Array(f.depth * (start.length + end.length))
        for (let i = 0; i < f.depth; i++) nested.set(start, i * start.length)
        for (let i = 0; i < f.depth; i++) nested.set(end, f.depth * start.length + i * end.length)
        parts.push(nested)
        break
      }
      case "Overlong":
        parts.push(key(f.field, WireType.varint), [...Array.from({ length: f.bytes - 1 }, () => 0xff), 0x01])
        break
    }
  }
  return concat(parts)
}

export const concat = (parts: ReadonlyArray<ArrayLike<number>>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** A frame of the engine's layout: type byte, 4-byte big-endian length (`claimed`, default the true one), payload. */
export const frameBytes = (type: number, payload: Uint8Array, claimed: number = payload.length): Uint8Array => {
  const out = new Uint8Array(5 + payload.length)
  out[0] = type
  new DataView(out.buffer).setUint32(1, claimed >>> 0, false)
  out.set(payload, 5)
  return out
}

// ---- allocation probe ------------------------------------------------------------------------

/**
 * Records the largest Uint8Array/ArrayBuffer created while `measure` runs, by replacing the two
 * global constructors with counting proxies for that call only (modules look the globals up at
 * each `new`). Views over an existing buffer allocate nothing and are not counted.
 */
export const allocationProbe = () => {
  let largest = 0
  const originals = { Uint8Array: globalThis.Uint8Array, ArrayBuffer: globalThis.ArrayBuffer }
  const sizeOf = (args: ReadonlyArray<unknown>): number => {
    const first = args[0]
    if (typeof first === "number") return first
    if (first instanceof originals.ArrayBuffer || first instanceof SharedArrayBuffer) return 0
    if (first !== null && typeof first === "object" && "length" in first && typeof first.length === "number") return first.length
    return 0
  }
  const counting = <C extends object>(target: C): C =>
    new Proxy(target, {
      construct(t, args, newTarget) {
        largest = Math.max(largest, sizeOf(args))
        return Reflect.construct(t as unknown as new(...a: Array<unknown>) => object, args, newTarget)
      }
    })
  const proxies = { Uint8Array: counting(originals.Uint8Array), ArrayBuffer: counting(originals.ArrayBuffer) }
  return {
    /** Runs `f`, and gives its result with the largest allocation it made. */
    measure: <A>(f: () => A): { readonly result: A; readonly largest: number } => {
      largest = 0
      globalThis.Uint8Array = proxies.Uint8Array
      globalThis.ArrayBuffer = proxies.ArrayBuffer
      try {
        return { result: f(), largest }
      } finally {
        globalThis.Uint8Array = originals.Uint8Array
        globalThis.ArrayBuffer = originals.ArrayBuffer
      }
    }
  }
}

/** `process.memoryUsage().arrayBuffers` now, in bytes. */
export const arrayBufferBytes = (): number => process.memoryUsage().arrayBuffers
