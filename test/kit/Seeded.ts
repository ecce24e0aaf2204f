/**
 * Deterministic test content and seeded randomness. `contentBytes`/`writeContent` make the same
 * bytes for the same label (the AES-128-CTR keystream of a key derived from it: fast, streamed);
 * `seeded()` draws a seed (or takes TEST_SEED), and prints it when the test fails, to replay it.
 */
import { Effect } from "effect"
import { createCipheriv, createHash } from "node:crypto"
import { open } from "node:fs/promises"
import { onTestFailed } from "vitest"

/** A function that returns the next `n` bytes of the keystream named by `label`. */
const keystream = (label: string): ((n: number) => Buffer) => {
  const key = createHash("sha256").update(`can-sync test ${label}`).digest().subarray(0, 16)
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16))
  return (n) => cipher.update(Buffer.alloc(n))
}

/** `size` bytes that depend only on `label`. */
export const contentBytes = (label: string, size: number): Buffer => keystream(label)(size)

/** Writes `contentBytes(label, size)` to `path` chunk by chunk (never whole in memory); its SHA-256. */
export const writeContent = (path: string, label: string, size: number): Effect.Effect<string> =>
  Effect.promise(async () => {
    const next = keystream(label)
    const hash = createHash("sha256")
    const chunk = 1024 * 1024
    const file = await open(path, "w")
    try {
      for (let left = size; left > 0; left -= chunk) {
        const bytes = next(Math.min(chunk, left))
        hash.update(bytes)
        await file.write(bytes)
      }
    } finally {
      await file.close()
    }
    return hash.digest("hex")
  })

export interface Seeded {
  readonly seed: number
  /** The next `size` bytes. */
  readonly bytes: (size: number) => Buffer
  /** An integer in [0, below). */
  readonly int: (below: number) => number
}

/**
 * Randomness from a seed: TEST_SEED when set, else a fresh one. Call it inside a test: if the test
 * fails, the seed is printed with the line that replays it.
 */
export const seeded = (name = "random"): Seeded => {
  const fromEnv = Number(process.env.TEST_SEED)
  const seed = Number.isSafeInteger(fromEnv) && process.env.TEST_SEED !== "" ? fromEnv : Math.floor(Math.random() * 2 ** 32)
  onTestFailed(() => {
    console.error(`${name}: seed ${seed} (replay with TEST_SEED=${seed})`)
  })
  const next = keystream(`seed ${seed}`)
  return {
    seed,
    bytes: next,
    int: (below) => next(4).readUInt32LE(0) % below
  }
}
