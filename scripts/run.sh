#!/usr/bin/env bash
# Runs a command with the project's toolchain (Node >= 22.19, pnpm 10, dependencies installed).
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
exec "$@"
