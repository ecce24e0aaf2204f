/**
 * Text from others (a peer's or an HTTP client's metadata, a peer's error message) made safe for a
 * terminal: control characters (newlines, escape sequences, C1 codes) and bidirectional overrides
 * are shown as escapes, so such text can neither forge extra lines nor drive the terminal.
 * Human output only; `--json` output is JSON-escaped already.
 */

const named: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }

// C0 controls, DEL, C1 controls, and the Unicode bidi embeddings, overrides and isolates.
const unsafe = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

const escape = (char: string): string => {
  const code = char.charCodeAt(0)
  return named[char] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`)
}

export const printable = (text: string): string => text.replace(unsafe, escape)
