/**
 * `can-sync id` (print this agent's peer id, creating its key on first use) and `can-sync signal`
 * (run the WebSocket signaling server that relays offers, answers and candidates by peer id).
 */
import { Identity } from "@can-sync/transport/Identity"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { Command, Flag } from "effect/cli"
import { dataFlag } from "./Config.ts"

export const id = Command.make("id", { data: dataFlag }, ({ data }) =>
  Identity.loadOrCreate(data).pipe(Effect.flatMap((identity) => Console.log(identity.peerId)))
).pipe(Command.withDescription("Print this agent's peer id (its Ed25519 key is created on first use)"))

export const signal = Command.make("signal", {
  host: Flag.String("host").pipe(Flag.withDescription("Address to listen on"), Flag.withDefault("127.0.0.1")),
  port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on"), Flag.withDefault(7777))
}, ({ host, port }) =>
  Effect.scoped(Effect.gen(function*() {
    const Signaling = yield* Effect.promise(() => import("@can-sync/transport/Signaling"))
    const server = yield* Signaling.serve({ host, port })
    yield* Console.log(`signaling at ${server.url}`)
    return yield* Effect.never
  }))
).pipe(Command.withDescription("Run a WebSocket signaling server for agents to find each other"))
