// node-datachannel's native binding on linux-x64-gnu (node-datachannel requires
// "@node-datachannel/linux-x64-gnu", which the root package.json overrides with this package).
// Prefers can-sync's build, whose libdatachannel starts the DTLS handshake off libjuice's thread
// (see ../README.md); where that build cannot load (glibc older than 2.30), the upstream binary.
// getLibraryVersion() says which one runs: "0.24.5-cansync.1" or "0.24.5".
"use strict"
try {
  module.exports = require("./node_datachannel.node")
} catch {
  module.exports = require("upstream-binding")
}
