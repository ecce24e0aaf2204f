/**
 * An HTTP/1.1 client over a bare TCP socket, for saying what fetch refuses to say: any method
 * token, any header bytes, a Content-Length that lies. It writes the request as given and reads
 * the answer until the server closes, the response is complete, or a deadline passes.
 */
import { connect } from "node:net"

export interface RawResponse {
  readonly _tag: "Response"
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
}

/** The server closed the connection (or stayed silent until the deadline) without a response. */
export interface NoResponse {
  readonly _tag: "NoResponse"
  readonly reason: "closed" | "deadline"
  /** Bytes received, if any (never a whole response). */
  readonly received: string
}

export type RawOutcome = RawResponse | NoResponse

/** Status line and headers of `text`, and where the body starts; undefined until they are whole. */
const parseHead = (text: string) => {
  const end = text.indexOf("\r\n\r\n")
  if (end < 0) return undefined
  const [statusLine = "", ...lines] = text.slice(0, end).split("\r\n")
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine)
  if (match === null) return { malformed: statusLine } as const
  const headers = new Map<string, string>()
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return { status: Number(match[1]), headers, bodyStart: end + 4 } as const
}

/** The body of a chunked response once its last chunk arrived, else undefined. */
const dechunk = (raw: string): string | undefined => {
  let out = ""
  let at = 0
  while (true) {
    const lineEnd = raw.indexOf("\r\n", at)
    if (lineEnd < 0) return undefined
    const size = parseInt(raw.slice(at, lineEnd), 16)
    if (!Number.isFinite(size)) return undefined
    if (size === 0) return out
    if (raw.length < lineEnd + 2 + size + 2) return undefined
    out += raw.slice(lineEnd + 2, lineEnd + 2 + size)
    at = lineEnd + 2 + size + 2
  }
}

/** The whole response in `text`, if it is complete (an event stream is complete once its head arrived). */
const complete = (text: string, closed: boolean, head: boolean): RawResponse | "malformed" | undefined => {
  const parsed = parseHead(text)
  if (parsed === undefined) return undefined
  if ("malformed" in parsed) return "malformed"
  const { bodyStart, headers, status } = parsed
  // an interim response (100 Continue) precedes the real one
  if (status >= 100 && status < 200) return complete(text.slice(bodyStart), closed, head)
  const raw = text.slice(bodyStart)
  const response = (body: string): RawResponse => ({ _tag: "Response", status, headers, body })
  if (head || status === 204 || status === 304) return response("")
  if ((headers.get("content-type") ?? "").startsWith("text/event-stream")) return response(raw)
  const length = headers.get("content-length")
  if (length !== undefined) {
    // lengths are in bytes; the text is latin1, one character a byte
    return raw.length >= Number(length) ? response(raw.slice(0, Number(length))) : undefined
  }
  if ((headers.get("transfer-encoding") ?? "").toLowerCase() === "chunked") {
    const body = dechunk(raw)
    return body === undefined ? undefined : response(body)
  }
  return closed ? response(raw) : undefined
}

export interface RawRequest {
  /** Everything sent: request line, headers, blank line and body, exactly as given. */
  readonly bytes: Uint8Array
  /** True for HEAD: the response has no body whatever its headers say. */
  readonly head: boolean
  /** Close our side after writing (for a request that promised more body than it sent). */
  readonly endAfterWrite: boolean
}

/**
 * Sends `request` to 127.0.0.1:`port` and gives the response, or NoResponse when the server closed
 * the connection without one or said nothing within `deadlineMs`. Fails only when the response
 * is not HTTP at all (a status line that does not parse).
 */
export const send = (port: number, request: RawRequest, deadlineMs: number): Promise<RawOutcome> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port })
    let text = ""
    let settled = false
    const settle = (outcome: RawOutcome | Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (outcome instanceof Error) reject(outcome)
      else resolve(outcome)
    }
    const look = (closed: boolean) => {
      const done = complete(text, closed, request.head)
      if (done === "malformed") return settle(new Error(`not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`))
      if (done !== undefined) return settle(done)
      if (closed) settle({ _tag: "NoResponse", reason: "closed", received: text.slice(0, 200) })
    }
    const timer = setTimeout(() => settle({ _tag: "NoResponse", reason: "deadline", received: text.slice(0, 200) }), deadlineMs)
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      text += chunk
      look(false)
    })
    socket.on("end", () => look(true))
    socket.on("close", () => look(true))
    // a reset after the server answered early (e.g. 401 before reading a body) is a close
    socket.on("error", () => look(true))
    socket.write(request.bytes, () => {
      if (request.endAfterWrite) socket.end()
    })
  })
