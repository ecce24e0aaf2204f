/**
 * The agent's version, as its package.json says: what `--version` prints and what telemetry
 * reports as `service.version`.
 */
import { readFileSync } from "node:fs"

const read = (): string => {
  try {
    const parsed: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    const version = typeof parsed === "object" && parsed !== null && "version" in parsed ? parsed.version : undefined
    return typeof version === "string" ? version : "unknown"
  } catch {
    return "unknown"
  }
}

export const version: string = read()
