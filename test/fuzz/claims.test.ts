/**
 * docs/security.md proves each claim by naming a test: `file` › "test name". This checks that every
 * file it names exists and holds every test it names, so the document cannot cite a test that was
 * renamed or removed.
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..", "..")
const doc = readFileSync(join(root, "docs", "security.md"), "utf8")

/** Every cited test file, with the test names cited after it (up to the next file). */
const citations = (): Map<string, Array<string>> => {
  const cited = new Map<string, Array<string>>()
  let file: string | undefined
  for (const match of doc.matchAll(/`([^`\s]+\.test\.ts)`|›\s*"([^"]+)"/g)) {
    if (match[1] !== undefined) {
      file = match[1]
      if (!cited.has(file)) cited.set(file, [])
    } else if (file !== undefined && match[2] !== undefined) {
      cited.get(file)!.push(match[2])
    }
  }
  return cited
}

describe("docs/security.md", () => {
  it("cites only tests that exist, by their exact names", () => {
    const cited = citations()
    expect(cited.size).toBeGreaterThan(10)
    for (const [file, names] of cited) {
      expect(existsSync(join(root, file)), file).toBe(true)
      const source = readFileSync(join(root, file), "utf8")
      for (const name of names) expect(source.includes(name), `${file} › "${name}"`).toBe(true)
    }
  })
})
