#!/usr/bin/env bash
# Rewrites examples/code-order.txt, the order in which the linker lays out
# the functions of the two shim daemons: first those a container's lifecycle
# runs, together, then the rest.
#
# Why: the kernel maps a binary's code 64 KiB around each page a process
# first touches. Laid out as the compiler left it, the code the daemon runs
# from its start to a container's Start is spread over nearly all of its
# 2.5 MiB of text, and 2.4 MiB of it was resident; grouped, 1.5 MiB is.
# docs/PERFORMANCE.md has the measurements.
#
# How: `make daemon` (the operator build) with linker maps, each daemon run
# under callgrind through a container's life (the gRPC daemon with shimctl:
# create, start, state, exec, wait, kill, delete; the containerd runtime as
# containerd drives it, with the containerd bench), the instructions run
# looked up in the maps, and the build redone with the new order. The names
# in the file are those of that build (the symbol hashes depend on the
# compiler, the profile, the flags and the dependencies' versions), so run it
# again after a toolchain or dependency upgrade, a profile change, or a
# change to code the daemons run (the build warns when the compiler differs
# from the one named on the file's first line; nothing warns for the rest:
# a change to the OOM watch left the daemon 0.2 MiB larger just after Start
# until the file was written again); names it no longer finds are ignored
# and only cost memory.
#
# Needs root, runc, busybox-static, containerd (`make deps`) and valgrind
# (its callgrind_control uses ptrace: not in a container without
# CAP_SYS_PTRACE).
#
#   bash benches/scripts/code-order.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || {
  echo "code-order.sh: installing valgrind"
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
}
host=$(rustc -vV | sed -n 's/^host: //p')
# Where `make daemon` puts the daemons: its musl build of the host's architecture.
bin="target/${host/-gnu/-musl}/release"
rm -rf target/code-order
mkdir -p target/code-order
# A new directory each run: the build script sees SHIM_LINK_MAP change and
# the daemons are linked again, their maps written, even if nothing else
# changed.
maps=$(mktemp -d "$PWD/target/code-order/XXXXXX")
mkdir -p "$maps/profiles"
SHIM_LINK_MAP="$maps" make --no-print-directory daemon
work=$(mktemp -d /dev/shm/code-order.XXXXXX)
daemon=
cleanup() {
  # On failure: the daemon under valgrind and its container, if any.
  [ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
  runc delete --force code-order >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# valgrind logs to a file: a copy of the stderr it was given, kept open in
# the forked server, would keep the bench reading `start`'s output forever.
callgrind=(valgrind --tool=callgrind --dump-instr=yes --compress-pos=no
  "--callgrind-out-file=$maps/profiles/callgrind.%p" "--log-file=$maps/profiles/valgrind.%p.log")

# The gRPC daemon.
"$bin/shimctl" bundle --dir "$work/bundle" -- sleep 100000 >/dev/null
sock="$work/shim.sock"
"${callgrind[@]}" "$bin/shim" --socket "$sock" 2>"$work/shim.log" &
daemon=$!
for _ in $(seq 600); do grep -q '^ready' "$work/shim.log" && break; sleep 0.1; done
grep -q '^ready' "$work/shim.log" || { cat "$work/shim.log"; exit 1; }
ctl=("$bin/shimctl" --socket "$sock")
init=$("${ctl[@]}" create --id code-order --bundle "$work/bundle")
"${ctl[@]}" start
"${ctl[@]}" state >/dev/null
# Apart: what the daemon runs while idle (timers, the reaper's check, the
# idle trimmer), which goes first in the order, so that the code an idle
# shim keeps touching after the trimmer gave its code back is a few
# adjacent pages and not a page in each 64 KiB of the lifecycle's code.
callgrind_control --dump=busy "$daemon" >/dev/null
sleep 6
callgrind_control --dump=idle "$daemon" >/dev/null
mv "$maps/profiles/callgrind.$daemon.2" "$maps/idle.$daemon"
for _ in 1 2; do
  pid=$("${ctl[@]}" exec -- true)
  "${ctl[@]}" wait --pid "$pid" >/dev/null
  "${ctl[@]}" delete --pid "$pid" >/dev/null
done
"${ctl[@]}" kill --pid "$init" --signal 9
"${ctl[@]}" wait --pid "$init" >/dev/null
"${ctl[@]}" delete --pid "$init" >/dev/null
wait "$daemon"
daemon=

# The containerd runtime, as containerd drives it: two rounds of the
# containerd bench run it under callgrind (its `start` forks the server, which callgrind follows).
{
  echo '#!/bin/sh'
  printf 'exec'
  printf " '%s'" "${callgrind[@]}" "$PWD/$bin/containerd-shim-rshim-v1"
  echo ' "$@"'
} >"$work/rshim"
chmod +x "$work/rshim"
RSHIM_BIN="$work/rshim" cargo run --quiet --release -p shim-benches --example containerd_shims -- 2 >/dev/null

python3 benches/scripts/code_order.py examples/code-order.txt \
  "$maps/shim.map" "$maps/containerd-shim-rshim-v1.map" --first "$maps"/idle.* --then "$maps"/profiles/callgrind.*
make --no-print-directory daemon
echo "code-order.sh: wrote examples/code-order.txt ($(wc -l <examples/code-order.txt) symbols) and rebuilt the daemons"
