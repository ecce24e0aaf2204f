/**
 * The browser peer's identity with WebCrypto only: an Ed25519 key pair whose private half never
 * leaves the page (not extractable), and the peer id derived exactly as the node agent derives
 * it (packages/transport/src/Identity.ts): base32 of the first 20 bytes of SHA-256(raw key).
 */
import * as Base32 from "../../../packages/transport/src/Base32.ts"

export type Bytes = Uint8Array<ArrayBuffer>

export interface BrowserIdentity {
  readonly peerId: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Bytes
  /** Ed25519 signature (64 bytes) over `bytes`. */
  readonly sign: (bytes: Bytes) => Promise<Bytes>
}

const PEER_ID_BYTES = 20
const PEER_ID_PATTERN = /^[a-z2-7]{32}$/


export const toBase64 = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

/** Decoded bytes, or undefined for text that is not base64. */
export const fromBase64 = (text: string): Bytes | undefined => {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0))
  } catch {
    return undefined
  }
}

export const sha256 = async (bytes: Bytes): Promise<Bytes> => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))

export const toHex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")

export const peerIdOf = async (publicKey: Bytes): Promise<string> => Base32.encode((await sha256(publicKey)).subarray(0, PEER_ID_BYTES))

export const isPeerId = (s: string): boolean => PEER_ID_PATTERN.test(s)

/** A fresh key pair made by the browser. */
export const generate = async (): Promise<BrowserIdentity> => {
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey))
  return {
    peerId: await peerIdOf(publicKey),
    publicKey,
    sign: async (bytes) => new Uint8Array(await crypto.subtle.sign("Ed25519", keys.privateKey, bytes))
  }
}

/**
 * True only if `publicKey` is a 32-byte Ed25519 key deriving to `peerId` and `signature` is its
 * signature over `bytes` (the same rule as the agent's `verifySignature`).
 */
export const verifySignature = async (peerId: string, publicKey: Uint8Array, bytes: Bytes, signature: Uint8Array): Promise<boolean> => {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  const key = new Uint8Array(publicKey)
  if ((await peerIdOf(key)) !== peerId) return false
  try {
    const imported = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"])
    return await crypto.subtle.verify("Ed25519", imported, new Uint8Array(signature), bytes)
  } catch {
    return false
  }
}
