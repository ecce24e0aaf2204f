/**
 * Small network probes run inside lab namespaces (there is no ping or iperf on these machines):
 * a UDP echo server and pinger for RTT and loss, a TCP sink and sender for throughput and
 * integrity. Each prints "ready" or one JSON line, so a test reads it with LabProcess.nextLine.
 *   node NetTool.ts udp-echo PORT | udp-ping HOST PORT COUNT INTERVAL_MS
 *   node NetTool.ts tcp-sink PORT | tcp-send HOST PORT BYTES
 */
import { createHash } from "node:crypto"
import * as dgram from "node:dgram"
import * as net from "node:net"

export const toolPath = import.meta.filename

/** Deterministic bytes, so both ends can agree on a digest without sending it. */
const pattern = (size: number) => {
  const out = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) out[i] = (i * 131 + (i >> 10)) & 255
  return out
}

const print = (value: unknown) => process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`)

/** Room for a second of pings, so a process the scheduler holds back loses none in its own socket. */
const udpSocket = () => dgram.createSocket({ type: "udp4", recvBufferSize: 1024 * 1024 })

const udpEcho = (port: number) => {
  const socket = udpSocket()
  socket.on("message", (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address))
  socket.bind(port, "0.0.0.0", () => print("ready"))
}

const udpPing = (host: string, port: number, count: number, intervalMs: number) => {
  const socket = udpSocket()
  let lastReplyAt = performance.now()
  const sentAt = new Map<number, number>()
  const rtts: Array<number> = []
  socket.on("message", (msg) => {
    const seq = msg.readUInt32BE(0)
    const t = sentAt.get(seq)
    if (t !== undefined) {
      lastReplyAt = performance.now()
      rtts.push(lastReplyAt - t)
      sentAt.delete(seq)
    }
  })
  let seq = 0
  const timer = setInterval(() => {
    if (seq === count) {
      clearInterval(timer)
      // late replies keep coming while the host is busy: stop once none came for a second, or after 10 s
      const doneAt = performance.now()
      const settle = setInterval(() => {
        const now = performance.now()
        if (sentAt.size > 0 && now - lastReplyAt < 1000 && now - doneAt < 10_000) return
        clearInterval(settle)
        print({ sent: count, received: rtts.length, rtts })
        socket.close()
      }, 100)
      return
    }
    const msg = Buffer.alloc(64)
    msg.writeUInt32BE(seq, 0)
    sentAt.set(seq++, performance.now())
    socket.send(msg, port, host)
  }, intervalMs)
}

const tcpSink = (port: number) => {
  const server = net.createServer((socket) => {
    const hash = createHash("sha256")
    let bytes = 0
    let t0 = 0
    socket.on("data", (d: Buffer) => {
      if (bytes === 0) t0 = performance.now()
      bytes += d.length
      hash.update(d)
    })
    socket.on("end", () => {
      print({ bytes, sha256: hash.digest("hex"), seconds: (performance.now() - t0) / 1000 })
      socket.end()
    })
    socket.on("error", (e) => print({ error: e.message, bytes }))
  })
  server.listen(port, "0.0.0.0", () => print("ready"))
}

const tcpSend = (host: string, port: number, total: number) => {
  const chunk = pattern(64 * 1024)
  const hash = createHash("sha256")
  const socket = net.connect(port, host, () => {
    const t0 = performance.now()
    let sent = 0
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent)
        const piece = n === chunk.length ? chunk : chunk.subarray(0, n)
        hash.update(piece)
        sent += n
        if (!socket.write(piece)) return void socket.once("drain", pump)
      }
      socket.end()
    }
    socket.on("close", () => print({ bytes: sent, sha256: hash.digest("hex"), seconds: (performance.now() - t0) / 1000 }))
    pump()
  })
  socket.on("error", (e) => print({ error: e.message }))
}

if (process.argv[1] === import.meta.filename) {
  const [mode, ...args] = process.argv.slice(2)
  if (mode === "udp-echo") udpEcho(Number(args[0]))
  else if (mode === "udp-ping") udpPing(args[0] ?? "", Number(args[1]), Number(args[2]), Number(args[3]))
  else if (mode === "tcp-sink") tcpSink(Number(args[0]))
  else if (mode === "tcp-send") tcpSend(args[0] ?? "", Number(args[1]), Number(args[2]))
  else {
    process.stderr.write("usage: NetTool.ts udp-echo PORT | udp-ping HOST PORT COUNT INTERVAL_MS | tcp-sink PORT | tcp-send HOST PORT BYTES\n")
    process.exitCode = 2
  }
}
