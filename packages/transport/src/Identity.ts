/**
 * An agent's identity: an Ed25519 key pair in its data directory (`identity.key`, PKCS#8 PEM,
 * created 0600 on first use; a key readable by group or others is refused, as ssh does) and the
 * peer id derived from the public key. `verifySignature` also checks a key derives to its id.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { PeerId } from "@can-sync/core"
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from "node:crypto"
import type { KeyObject } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as Base32 from "./Base32.ts"

export const KEY_FILE = "identity.key"

/** The key file cannot be read, created or used. */
export class IdentityError extends Schema.TaggedError<IdentityError>()("IdentityError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `identity ${this.path}: ${this.reason}`
  }
}

/** What the rest of the transport needs from the local identity. */
export interface PeerIdentity {
  readonly peerId: PeerId
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** Ed25519 signature (64 bytes) over `bytes`. */
  readonly sign: (bytes: Uint8Array) => Uint8Array
}

/** Bytes of SHA-256(publicKey) kept in a peer id: 160 bits, 32 base32 characters. */
const PEER_ID_BYTES = 20
const PEER_ID_PATTERN = /^[a-z2-7]{32}$/
/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows. */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex")


/** The peer id of a raw Ed25519 public key: base32 of the first 20 bytes of its SHA-256. */
export const peerIdOf = (publicKey: Uint8Array): PeerId =>
  Base32.encode(createHash("sha256").update(publicKey).digest().subarray(0, PEER_ID_BYTES)) as PeerId

/** True for strings shaped like a peer id (32 characters of lowercase base32). */
export const isPeerId = (s: string): s is PeerId => PEER_ID_PATTERN.test(s)

const publicKeyObject = (raw: Uint8Array): KeyObject =>
  createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" })

/**
 * True only if `publicKey` is a 32-byte Ed25519 key that derives to `peerId` and `signature` is its
 * valid signature over `bytes`. Malformed input gives false, never an exception.
 */
export const verifySignature = (
  peerId: string,
  publicKey: Uint8Array,
  bytes: Uint8Array,
  signature: Uint8Array
): boolean => {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  if (peerIdOf(publicKey) !== peerId) return false
  try {
    return verify(null, bytes, publicKeyObject(publicKey), signature)
  } catch {
    return false
  }
}

const fromPrivateKey = (privateKey: KeyObject): PeerIdentity => {
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" })
  const publicKey = new Uint8Array(spki.subarray(SPKI_PREFIX.length))
  return {
    peerId: peerIdOf(publicKey),
    publicKey,
    sign: (bytes) => new Uint8Array(sign(null, bytes, privateKey))
  }
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))
const errnoCode = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

const parseKey = (file: string, pem: string): Effect.Effect<PeerIdentity, IdentityError> =>
  Effect.try({
    try: () => createPrivateKey({ key: pem, format: "pem" }),
    catch: (e) => new IdentityError({ path: file, reason: `not a PEM private key: ${errorText(e)}` })
  }).pipe(
    Effect.flatMap((key) =>
      key.asymmetricKeyType === "ed25519"
        ? Effect.succeed(fromPrivateKey(key))
        : Effect.fail(new IdentityError({ path: file, reason: `expected an Ed25519 key, found ${key.asymmetricKeyType}` }))
    )
  )

/** Run one file-system step, mapping any failure to an IdentityError about `file`. */
const io = <A>(file: string, what: string, run: () => Promise<A>): Effect.Effect<A, IdentityError> =>
  Effect.tryPromise({ try: run, catch: (e) => new IdentityError({ path: file, reason: `${what}: ${errorText(e)}` }) })

/** `undefined` for ENOENT, the rejection otherwise. */
const unlessMissing = <A>(promise: Promise<A>): Promise<A | undefined> =>
  promise.then((a) => a, (e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))

const readKey = (file: string): Effect.Effect<PeerIdentity | undefined, IdentityError> =>
  Effect.scoped(Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      io(file, "cannot open the key file", () => unlessMissing(fs.open(file, "r"))),
      (h) => (h === undefined ? Effect.void : Effect.promise(() => h.close()))
    )
    if (handle === undefined) return undefined
    const mode = (yield* io(file, "cannot stat the key file", () => handle.stat())).mode & 0o777
    if (process.platform !== "win32" && (mode & 0o077) !== 0) {
      return yield* new IdentityError({
        path: file,
        reason: `the key file is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${file}`
      })
    }
    const pem = yield* io(file, "cannot read the key file", () => handle.readFile("utf8"))
    return yield* parseKey(file, pem)
  }))

/**
 * Write a new key without ever exposing a half-written or world-readable file: a private temp
 * file (0600, fsynced) is hard-linked into place, which fails if another process won the race.
 */
const createKey = (file: string): Effect.Effect<"created" | "exists", IdentityError> =>
  Effect.gen(function*() {
    yield* io(file, "cannot create the data directory", () => fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 }))
    const { privateKey } = generateKeyPairSync("ed25519")
    const pem = privateKey.export({ format: "pem", type: "pkcs8" })
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`
    yield* Effect.scoped(Effect.gen(function*() {
      const handle = yield* Effect.acquireRelease(
        io(file, "cannot create the key file", () => fs.open(tmp, "wx", 0o600)),
        (h) => Effect.promise(() => h.close())
      )
      yield* io(file, "cannot write the key file", async () => {
        await handle.chmod(0o600)
        await handle.writeFile(pem, "utf8")
        await handle.sync()
      })
    }))
    return yield* io(file, "cannot move the key file into place", () =>
      fs.link(tmp, file).then(
        () => "created" as const,
        (e: unknown) => (errnoCode(e) === "EEXIST" ? ("exists" as const) : Promise.reject(e))
      )
    ).pipe(Effect.ensuring(Effect.promise(() => fs.rm(tmp, { force: true }))))
  })

const loadOrCreate = Effect.fn("Identity.loadOrCreate")(function*(dataDir: string) {
  const file = path.join(dataDir, KEY_FILE)
  const existing = yield* readKey(file)
  if (existing !== undefined) return existing
  const created = yield* createKey(file)
  const identity = yield* readKey(file)
  if (identity === undefined) {
    return yield* new IdentityError({ path: file, reason: "the key file vanished right after it was written" })
  }
  if (created === "created") yield* Effect.logInfo(`created a new identity ${identity.peerId} in ${file}`)
  return identity
})

/** The local identity as a service: `Identity.layer(dataDir)` loads (or creates) the key. */
export class Identity extends Context.Service<Identity, PeerIdentity>()("@can-sync/transport/Identity") {
  /** Load `DIR/identity.key`, creating the directory and a fresh key on first use. */
  static readonly loadOrCreate: (dataDir: string) => Effect.Effect<PeerIdentity, IdentityError> = loadOrCreate
  /** A fresh identity that lives only in memory (tests, benchmarks). */
  static readonly generate = (): PeerIdentity => fromPrivateKey(generateKeyPairSync("ed25519").privateKey)
  static readonly layer = (dataDir: string): Layer.Layer<Identity, IdentityError> =>
    Layer.effect(Identity, loadOrCreate(dataDir))
}
