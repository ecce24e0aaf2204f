import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

describe("generated protobuf code", () => {
  it("matches proto/sync.proto (run `pnpm proto` after editing the .proto)", () => {
    const script = fileURLToPath(new URL("../../../scripts/gen-proto.sh", import.meta.url))
    const out = execFileSync("bash", [script, "--check"], { encoding: "utf8" })
    expect(out).toContain("up to date")
  })
})
