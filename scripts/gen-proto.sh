#!/usr/bin/env bash
# Regenerates packages/core/src/proto/sync.ts from proto/sync.proto with ts-proto, through the
# npm package @bufbuild/buf (no system protoc needed). `--check` fails when the committed file is stale.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
cd "$ROOT"
out="packages/core/src/proto"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/buf.gen.yaml" <<YAML
version: v2
plugins:
  - local: $ROOT/node_modules/.bin/protoc-gen-ts_proto
    out: $tmp/out
    opt:
      - esModuleInterop=true
      - importSuffix=.ts
      - forceLong=number
      - oneof=unions-value
      - useDate=false
      - enumsAsLiterals=true
      - outputJsonMethods=false
      - outputPartialMethods=false
      - useExactTypes=false
YAML
BUF_CACHE_DIR="$tmp/cache" buf generate proto --template "$tmp/buf.gen.yaml"
if [ "${1:-}" = "--check" ]; then
  diff -u "$out/sync.ts" "$tmp/out/sync.ts" && echo "proto: generated code is up to date"
else
  mkdir -p "$out" && cp "$tmp/out/sync.ts" "$out/sync.ts" && echo "proto: wrote $out/sync.ts"
fi
