/**
 * Lowercase RFC 4648 base32 without padding: the text form of peer ids. No Node-only imports,
 * so the browser peer derives ids with the same code.
 */

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

export const encode = (bytes: Uint8Array): string => {
  let out = ""
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}
