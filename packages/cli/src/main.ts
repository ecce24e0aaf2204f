#!/usr/bin/env node
/**
 * `can-sync`: the command-line entry point. Wires the subcommands, renders any failure as one
 * line on stderr with a non-zero exit, and exits 0 on SIGINT/SIGTERM after a clean shutdown.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { CliError, CliOutput, Command } from "effect/cli"
import { describeCause } from "./Errors.ts"
import * as Logging from "./Logging.ts"
import { add, cat, ls, meta, serve, verify } from "./StoreCommands.ts"
import { sync } from "./SyncCommand.ts"
import { id, signal } from "./TransportCommands.ts"

const root = Command.make("can-sync").pipe(
  Command.withDescription("Peer-to-peer sync for content-addressed asset stores"),
  Command.withSubcommands([sync, serve, add, ls, cat, meta, verify, id, signal])
)

/** Parse errors and help were already rendered by the CLI itself. */
const alreadyRendered = (cause: Cause.Cause<unknown>) =>
  cause.reasons.some((reason) => Cause.isFailReason(reason) && CliError.isCliError(reason.error))

/**
 * A command line that does not parse is an error like any other: one `can-sync: ...` line on
 * stderr, pointing at the command's help, rather than the whole help on stdout.
 */
const presenter = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(`can-sync: ${
        event.errors.map((error) => error.message.replace(/\s*\n\s*/g, " ").trim()).join("; ")
      } (see \`${event.commandPath.join(" ")} --help\`)`)
      : CliOutput.defaultPresenter.present(event)
})

const program = Command.run(root, { version: "0.1.0" }).pipe(
  Effect.tapCause((cause) =>
    alreadyRendered(cause) || Cause.hasInterruptsOnly(cause) ? Effect.void : Console.error(`can-sync: ${describeCause(cause)}`)
  ),
  Effect.provide(Logging.layer({ json: "auto" })),
  Effect.provide(presenter),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Exit.hasInterrupts(exit) ? 0 : 1)
})
