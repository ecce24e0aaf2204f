/**
 * The signaling client over the browser's own WebSocket: answer the server's challenge with a
 * signature of (nonce, peer id), then relay `{to, ref, data}` and receive `{from, data}` and
 * `undeliverable` notices (the protocol of packages/transport/src/Signaling.ts). One consumer.
 */
import type { BrowserIdentity } from "./PageIdentity.ts"
import { toBase64 } from "./PageIdentity.ts"
import { registrationBytes } from "./PageSignal.ts"

export type Inbound =
  | { readonly _tag: "Relay"; readonly from: string; readonly data: unknown }
  | { readonly _tag: "Undeliverable"; readonly to: string; readonly ref: string | undefined }

export class SignalingClient {
  private readonly ws: WebSocket
  private consumer: ((inbound: Inbound) => void) | undefined
  private readonly early: Array<Inbound> = []
  /** `error` messages from the server, for the report. */
  readonly serverErrors: Array<string> = []

  private constructor(ws: WebSocket) {
    this.ws = ws
  }

  /** Connect and register; rejects if that does not happen within `timeoutMs`. */
  static connect(url: string, identity: BrowserIdentity, timeoutMs: number): Promise<SignalingClient> {
    return new Promise((registered, failed) => {
      const ws = new WebSocket(url)
      const client = new SignalingClient(ws)
      let done = false
      const finish = (error: string | undefined) => {
        if (done) return
        done = true
        clearTimeout(timer)
        if (error === undefined) registered(client)
        else {
          ws.close()
          failed(new Error(`signaling ${url}: ${error}`))
        }
      }
      const timer = setTimeout(() => finish(`not registered within ${timeoutMs} ms`), timeoutMs)
      ws.onclose = (event) => finish(`closed (${event.code} ${event.reason})`)
      ws.onerror = () => finish("connection error")
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return
        let message: Record<string, unknown>
        try {
          message = JSON.parse(event.data) as Record<string, unknown>
        } catch {
          return
        }
        switch (message.type) {
          case "challenge": {
            const nonce = String(message.nonce)
            identity.sign(registrationBytes(nonce, identity.peerId)).then((signature) =>
              ws.send(JSON.stringify({
                type: "register",
                peerId: identity.peerId,
                publicKey: toBase64(identity.publicKey),
                signature: toBase64(signature)
              }))
            ).catch((error: unknown) => finish(`cannot sign the challenge: ${String(error)}`))
            return
          }
          case "registered":
            return finish(message.peerId === identity.peerId ? undefined : `registered as ${String(message.peerId)}`)
          case "relay":
            return client.deliver({ _tag: "Relay", from: String(message.from), data: message.data })
          case "undeliverable":
            return client.deliver({
              _tag: "Undeliverable",
              to: String(message.to),
              ref: typeof message.ref === "string" ? message.ref : undefined
            })
          case "error":
            client.serverErrors.push(String(message.message))
            return
        }
      }
    })
  }

  private deliver(inbound: Inbound): void {
    if (this.consumer === undefined) this.early.push(inbound)
    else this.consumer(inbound)
  }

  /** Set the one consumer; what arrived before it is handed over first. */
  consume(consumer: (inbound: Inbound) => void): void {
    this.consumer = consumer
    for (const inbound of this.early.splice(0)) consumer(inbound)
  }

  /** Relay `data` to a peer; false when the socket is not open. */
  send(to: string, data: unknown, ref: string): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false
    this.ws.send(JSON.stringify({ type: "relay", to, ref, data }))
    return true
  }

  close(): void {
    this.consumer = undefined
    this.ws.close()
  }
}
