# Sourced by every project script: puts Node >= 22.19 and pnpm 10 on PATH and installs the
# workspace's dependencies. A machine whose own Node is older (Debian's Node 20) gets Node 24 from
# the npm registry's `node` package, kept under .tooling/ beside the checkout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLING="$ROOT/.tooling"
# pnpm at the version package.json's `packageManager` pins (the container build reads it too).
PNPM_SPEC="$(sed -n 's/.*"packageManager": *"\(pnpm@[^"]*\)".*/\1/p' "$ROOT/package.json")"
PNPM_VERSION="${PNPM_SPEC#pnpm@}"

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)'
}

if ! node_ok; then
  if [ ! -x "$TOOLING/node_modules/node/bin/node" ] || [ ! -x "$TOOLING/node_modules/.bin/pnpm" ]; then
    echo "toolchain: provisioning Node 24 and pnpm 10 into .tooling/ (one time)" >&2
    mkdir -p "$TOOLING"
    # --userconfig /dev/null: the machine's ~/.npmrc points native builds at Node 20's headers.
    npm install --prefix "$TOOLING" --no-save --no-audit --no-fund --loglevel=error \
      --userconfig /dev/null node@24 "$PNPM_SPEC" >&2
  fi
  export PATH="$TOOLING/node_modules/node/bin:$TOOLING/node_modules/.bin:$PATH"
elif ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  if [ "$("$TOOLING/node_modules/.bin/pnpm" --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
    mkdir -p "$TOOLING"
    npm install --prefix "$TOOLING" --no-save --no-audit --no-fund --loglevel=error --userconfig /dev/null "$PNPM_SPEC" >&2
  fi
  export PATH="$TOOLING/node_modules/.bin:$PATH"
fi
if [ ! -f "$ROOT/node_modules/.modules.yaml" ] || [ "$ROOT/pnpm-lock.yaml" -nt "$ROOT/node_modules/.modules.yaml" ]; then
  (cd "$ROOT" && pnpm install --frozen-lockfile --reporter=silent >&2)
fi
export PATH="$ROOT/node_modules/.bin:$PATH"
