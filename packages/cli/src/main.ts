#!/usr/bin/env node
/**
 * `can-sync`: the command-line entry point. Wires the subcommands, renders any failure as one
 * line on stderr with a non-zero exit, and exits 0 on SIGINT/SIGTERM after a clean shutdown.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, Exit } from "effect"
import { Command } from "effect/cli"
import { describeCause } from "./Errors.ts"
import { add, cat, ls, meta, serve, verify } from "./StoreCommands.ts"

const root = Command.make("can-sync").pipe(
  Command.withDescription("Peer-to-peer sync for content-addressed asset stores"),
  Command.withSubcommands([serve, add, ls, cat, meta, verify])
)

const program = Command.run(root, { version: "0.1.0" }).pipe(
  Effect.tapCause((cause) => Console.error(`can-sync: ${describeCause(cause)}`)),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Exit.hasInterrupts(exit) ? 0 : 1)
})
