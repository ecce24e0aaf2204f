/**
 * Identity: the key file (created 0600, stable, refused when readable by others), the peer id
 * derived from the public key, and signature checks that refuse any substitution.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Identity, isPeerId, KEY_FILE, peerIdOf, verifySignature } from "../src/Identity.ts"

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "can-sync-identity-"))
const bytes = (s: string) => new TextEncoder().encode(s)

describe("Identity", () => {
  it.effect("is created on first use in the data directory, with file mode 0600", () =>
    Effect.gen(function*() {
      const dir = path.join(tempDir(), "nested", "data")
      const identity = yield* Identity.loadOrCreate(dir)
      const stat = fs.statSync(path.join(dir, KEY_FILE))
      expect(stat.mode & 0o777).toBe(0o600)
      expect(fs.readFileSync(path.join(dir, KEY_FILE), "utf8")).toContain("BEGIN PRIVATE KEY")
      expect(isPeerId(identity.peerId)).toBe(true)
      expect(fs.readdirSync(dir)).toEqual([KEY_FILE]) // no temp file left behind
    }))

  it.effect("is stable across loads: same key, same peer id", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const first = yield* Identity.loadOrCreate(dir)
      const second = yield* Identity.loadOrCreate(dir)
      expect(second.peerId).toBe(first.peerId)
      expect(Buffer.from(second.publicKey).equals(Buffer.from(first.publicKey))).toBe(true)
      const message = bytes("hello")
      expect(verifySignature(first.peerId, second.publicKey, message, second.sign(message))).toBe(true)
    }))

  it.effect("two processes racing to create the key end up with one identity", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const all = yield* Effect.all(Array.from({ length: 8 }, () => Identity.loadOrCreate(dir)), { concurrency: 8 })
      expect(new Set(all.map((i) => i.peerId)).size).toBe(1)
    }))

  it.effect("refuses a key file readable by group or others", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* Identity.loadOrCreate(dir)
      fs.chmodSync(path.join(dir, KEY_FILE), 0o644)
      const error = yield* Effect.flip(Identity.loadOrCreate(dir))
      expect(error._tag).toBe("IdentityError")
      expect(error.reason).toMatch(/readable by others.*chmod 600/)
    }))

  it.effect("refuses a key file that is not an Ed25519 private key", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      fs.writeFileSync(path.join(dir, KEY_FILE), "not a key", { mode: 0o600 })
      const error = yield* Effect.flip(Identity.loadOrCreate(dir))
      expect(error.reason).toMatch(/not a PEM private key/)
    }))

  it("derives the peer id from the public key: 32 lowercase base32 characters", () => {
    const identity = Identity.generate()
    expect(identity.peerId).toMatch(/^[a-z2-7]{32}$/)
    expect(peerIdOf(identity.publicKey)).toBe(identity.peerId)
    expect(Identity.generate().peerId).not.toBe(identity.peerId)
  })

  it("verifies a signature only for the right id, key and bytes", () => {
    const alice = Identity.generate()
    const mallory = Identity.generate()
    const message = bytes("offer sdp")
    const signature = alice.sign(message)
    expect(verifySignature(alice.peerId, alice.publicKey, message, signature)).toBe(true)
    // altered bytes
    expect(verifySignature(alice.peerId, alice.publicKey, bytes("offer sdq"), signature)).toBe(false)
    // altered signature
    const bad = new Uint8Array(signature)
    bad[0]! ^= 1
    expect(verifySignature(alice.peerId, alice.publicKey, message, bad)).toBe(false)
    // someone else's key claiming alice's id, with a valid signature of its own
    expect(verifySignature(alice.peerId, mallory.publicKey, message, mallory.sign(message))).toBe(false)
    // malformed input is a refusal, not an exception
    expect(verifySignature(alice.peerId, new Uint8Array(3), message, signature)).toBe(false)
    expect(verifySignature(alice.peerId, alice.publicKey, message, new Uint8Array(0))).toBe(false)
  })
})
