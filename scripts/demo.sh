#!/usr/bin/env bash
# Quick-start demo: a signaling server and two sync agents ("alice" and "bob") on this machine,
# each with its own embedded store under .data/demo/. They reconcile what each other lacks, then
# a file added to alice with `can-sync add` (another process) reaches bob live, and a metadata
# edit on bob reaches alice. `--keep` leaves the agents running until Ctrl-C. CAN_SYNC_DEMO_DIR
# puts its stores and logs elsewhere (the test of this script does).
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
cd "$ROOT"
keep=false
[ "${1:-}" = "--keep" ] && keep=true

demo="${CAN_SYNC_DEMO_DIR:-$ROOT/.data/demo}"
rm -rf "$demo" && mkdir -p "$demo/files"
main="$ROOT/packages/cli/src/main.ts"
cli() { node "$main" "$@"; }
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
hashes() { cli ls --data "$1" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).map(a=>a.hash).sort().join(" ")))'; }
wait_equal() { # wait until both stores list the same hashes (at most 60 s)
  for _ in $(seq 1 120); do
    [ "$(hashes "$demo/alice")" = "$(hashes "$demo/bob")" ] && return 0
    sleep 0.5
  done
  echo "demo: stores did not converge; logs in $demo/*.log" >&2; return 1
}

step "identities"
alice="$(cli id --data "$demo/alice" 2>/dev/null)"; bob="$(cli id --data "$demo/bob" 2>/dev/null)"
echo "alice = $alice"; echo "bob   = $bob"

step "some assets on each side"
for i in 1 2 3; do echo "alice's note $i, $(date)" > "$demo/files/alice-$i.txt"; echo "bob's note $i" > "$demo/files/bob-$i.txt"; done
head -c $((8 * 1024 * 1024)) /dev/urandom > "$demo/files/alice-photo.bin"
cli add --data "$demo/alice" --description "alice's files" --tag demo "$demo/files"/alice-*
cli add --data "$demo/bob" --description "bob's files" --tag demo "$demo/files"/bob-*

step "signaling server and two agents (logs: $demo/*.log)"
node "$main" signal --port "$port" >"$demo/signal.log" 2>&1 & pids+=($!)
sleep 0.5
node "$main" sync --data "$demo/alice" --signal "ws://127.0.0.1:$port" --peer "$bob" --bind-address 127.0.0.1 --json >"$demo/alice.log" 2>&1 & pids+=($!)
node "$main" sync --data "$demo/bob" --signal "ws://127.0.0.1:$port" --peer "$alice" --bind-address 127.0.0.1 --json >"$demo/bob.log" 2>&1 & pids+=($!)
started=$(date +%s%N)
wait_equal
echo "reconciled in $(( ($(date +%s%N) - started) / 1000000 )) ms"
echo "-- alice:"; cli ls --data "$demo/alice"
echo "-- bob:"; cli ls --data "$demo/bob"

step "live: add a file to alice from another process"
echo "added while syncing, $(date)" > "$demo/files/live.txt"
started=$(date +%s%N)
hash="$(cli add --data "$demo/alice" --description "live!" "$demo/files/live.txt" | cut -d' ' -f1)"
wait_equal
echo "$hash reached bob in $(( ($(date +%s%N) - started) / 1000000 )) ms: $(cli cat --data "$demo/bob" "$hash")"

step "live: bob edits its metadata"
cli meta --data "$demo/bob" "$hash" --description "edited on bob" --tag reviewed >/dev/null
for _ in $(seq 1 40); do
  cli meta --data "$demo/alice" "$hash" | grep -q "edited on bob" && break
  sleep 0.25
done
echo "alice sees: $(cli meta --data "$demo/alice" "$hash")"

if $keep; then
  step "agents keep running; add files with: bin/can-sync add --data $demo/alice FILE (Ctrl-C to stop)"
  wait
fi
step "done: stopping agents"
