#!/usr/bin/env bash
# Builds the `shim` daemon under several release-profile settings and prints,
# for each, the binary size and the daemon's memory while idle with one
# running container. Needs root, runc and busybox-static (`make deps`).
#
#   bash benches/scripts/profiles.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

configs=(
  "fat 1 3 abort"
  "fat 1 3 unwind"
  "thin 1 3 abort"
  "off 16 3 unwind"
  "fat 1 s abort"
  "fat 1 z abort"
)

printf '| lto | codegen-units | opt-level | panic | shim size (KiB) | RSS (KiB) | PSS (KiB) | threads |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for cfg in "${configs[@]}"; do
  read -r lto cgu opt panic <<<"$cfg"
  name="lto-$lto-cgu-$cgu-opt-$opt-$panic"
  target="target/profiles/$name"
  CARGO_TARGET_DIR="$target" CARGO_PROFILE_RELEASE_LTO="$lto" CARGO_PROFILE_RELEASE_CODEGEN_UNITS="$cgu" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" CARGO_PROFILE_RELEASE_PANIC="$panic" \
    cargo build --quiet --release -p shim-examples --bin shim --bin shimctl
  bin="$target/release"
  size=$(( $(stat -c %s "$bin/shim") / 1024 ))
  sock="$work/$name/run/shim.sock"
  "$bin/shimctl" bundle --dir "$work/$name/bundle" -- sleep 100000 >/dev/null
  "$bin/shim" --socket "$sock" --log-level warn --daemonize 2>/dev/null
  pid=$(fuser "$sock" 2>/dev/null | tr -d ' ' || true)
  [ -n "$pid" ] || pid=$(pgrep -f -- "--socket $sock" | head -1)
  init=$("$bin/shimctl" --socket "$sock" create --id "prof-$name" --bundle "$work/$name/bundle")
  "$bin/shimctl" --socket "$sock" start
  # Let the daemon settle after the calls before reading its memory.
  sleep 1
  rss=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  "$bin/shimctl" --socket "$sock" delete --pid "$init" >/dev/null
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$lto" "$cgu" "$opt" "$panic" "$size" "$rss" "$pss" "$threads"
done
