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
  // a file that failed without a failing test (it crashed, or did not import) counts as one failure
  const brokenFiles = (r.testResults ?? []).filter((f) =>
    f.status === "failed" && !(f.assertionResults ?? []).some((a) => a.status === "failed")).length
  const passed = r.numPassedTests ?? 0, failed = (r.numFailedTests ?? 0) + brokenFiles
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""))
' "$report"
if [ "$status" -ne 0 ]; then echo "typecheck or tests failed" >&2; fi
exit "$status"
