#!/usr/bin/env bash
# The whole test suite: provisions the toolchain, checks types and generated code, runs vitest,
# and ends with one plain line "N passed, N failed" (what CI reads). Extra args go to vitest.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
cd "$ROOT"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
status=0
echo "== typecheck" && tsc -p . || status=1
echo "== vitest"
vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=1
node -e '
  const fs = require("node:fs")
  let r = {}
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")) } catch {}
  const passed = r.numPassedTests ?? 0, failed = (r.numFailedTests ?? 0) + (r.numFailedTestSuites ?? 0) - 0
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""))
' "$report"
if [ "$status" -ne 0 ]; then echo "typecheck or tests failed" >&2; fi
exit "$status"
