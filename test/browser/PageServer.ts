/**
 * Serves the browser peer's page from the repository itself, on 127.0.0.1: `.ts` modules (the
 * page's own and the project's browser-safe ones: core, and the transport's ChannelLink with its
 * framing, flow control and binding) with their types stripped by Node, `.js` as is, and an
 * import map for the bare specifiers they use (`effect`, `@bufbuild/protobuf/wire`,
 * `@can-sync/core`). No bundler, no new package.
 */
import { readdir, readFile, realpath } from "node:fs/promises"
import { createServer } from "node:http"
import type { Server } from "node:http"
import { stripTypeScriptTypes } from "node:module"
import type { AddressInfo } from "node:net"
import { join, relative, sep } from "node:path"

/** The module the page loads; it sets `window.canSyncPeer`. */
export const PAGE_ENTRY = "test/browser/peer/PagePeer.ts"

export interface PageServer {
  /** http://127.0.0.1:PORT/ — the page. */
  readonly url: string
  readonly close: () => Promise<void>
}

/** A package's directory (symlinks resolved) and its package.json. */
const packageAt = async (dir: string): Promise<{ readonly dir: string; readonly json: Record<string, unknown> }> => {
  const real = await realpath(dir)
  return { dir: real, json: JSON.parse(await readFile(join(real, "package.json"), "utf8")) as Record<string, unknown> }
}

/** The ESM file of a package export, read from its `exports` map. */
const exportTarget = (json: Record<string, unknown>, subpath: string): string => {
  const entry = (json.exports as Record<string, unknown>)[subpath]
  if (typeof entry === "string") return entry
  if (typeof entry === "object" && entry !== null && "import" in entry && typeof entry.import === "string") return entry.import
  throw new Error(`package ${String(json.name)} has no ESM export ${subpath}`)
}

/**
 * The import map: `effect` and every `effect/<Module>` (effect's own dist imports a few modules
 * by bare name), `@bufbuild/protobuf/wire` as resolved from packages/core, its dependent, and
 * `@can-sync/core` (the transport's browser-safe modules import it).
 */
const importMap = async (root: string): Promise<Record<string, string>> => {
  const url = (file: string) => `/${relative(root, file).split(sep).join("/")}`
  const effect = await packageAt(join(root, "node_modules", "effect"))
  const protobuf = await packageAt(join(root, "packages", "core", "node_modules", "@bufbuild", "protobuf"))
  const imports: Record<string, string> = {
    "effect": url(join(effect.dir, exportTarget(effect.json, "."))),
    "@bufbuild/protobuf/wire": url(join(protobuf.dir, exportTarget(protobuf.json, "./wire"))),
    "@can-sync/core": url(join(root, "packages", "core", exportTarget((await packageAt(join(root, "packages", "core"))).json, ".")))
  }
  for (const file of await readdir(join(effect.dir, "dist"))) {
    if (file.endsWith(".js") && file !== "index.js") imports[`effect/${file.slice(0, -3)}`] = url(join(effect.dir, "dist", file))
  }
  return imports
}

const page = (imports: Record<string, string>): string => `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>can-sync browser peer</title>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script type="module" src="/${PAGE_ENTRY}"></script>
</head>
<body>can-sync browser peer</body>
</html>
`

/** Serve `root` (the repository) on 127.0.0.1 with an ephemeral port. */
export const start = async (root: string): Promise<PageServer> => {
  const realRoot = await realpath(root)
  const html = page(await importMap(realRoot))
  const stripped = new Map<string, string>()

  const body = async (pathname: string): Promise<{ readonly type: string; readonly text: string } | undefined> => {
    if (pathname === "/" || pathname === "/index.html") return { type: "text/html; charset=utf-8", text: html }
    if (pathname === "/favicon.ico") return { type: "image/x-icon", text: "" }
    if (pathname.includes("\0")) return undefined
    // node_modules are pnpm symlinks into the store under root: resolve, then stay inside root
    const file = await realpath(join(realRoot, decodeURIComponent(pathname))).catch(() => undefined)
    if (file === undefined || !file.startsWith(realRoot + sep)) return undefined
    if (file.endsWith(".ts")) {
      let js = stripped.get(file)
      if (js === undefined) {
        js = stripTypeScriptTypes(await readFile(file, "utf8"), { mode: "strip" })
        stripped.set(file, js)
      }
      return { type: "text/javascript; charset=utf-8", text: js }
    }
    if (file.endsWith(".js")) return { type: "text/javascript; charset=utf-8", text: await readFile(file, "utf8") }
    return undefined
  }

  const server: Server = createServer((request, response) => {
    const pathname = new URL(request.url ?? "/", "http://127.0.0.1").pathname
    if (request.method !== "GET") {
      response.writeHead(405).end()
      return
    }
    body(pathname).then(
      (found) => {
        if (found === undefined) response.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${pathname}`)
        else response.writeHead(200, { "content-type": found.type, "cache-control": "no-store" }).end(found.text)
      },
      (error: unknown) => response.writeHead(500, { "content-type": "text/plain" }).end(String(error))
    )
  })
  await new Promise<void>((listening, failed) => {
    server.once("error", failed)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", failed)
      listening()
    })
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((closed) => {
        server.closeAllConnections()
        server.close(() => closed())
      })
  }
}
