#!/bin/sh
# The containerd bench (benches/examples/containerd_shims.rs) for runc and
# then crun, run inside the cgroup v2 guest of tests/guest/run.py by
# `make bench`; prints the bench's tables. $RSHIM_BIN is the shim to measure.
#
# The binaries every side runs are copied into the guest's memory first, as
# they are in a node's page cache: the guest reads the host's tree over 9p,
# and without the copies (2026-12-07, 20 rounds) exec with crun measured
# 1.13x raw crun for our shim, 1.03x with them.
set -eu
rounds=${1:-20}
for f in /usr/bin/containerd-shim-runc-v2 "$(command -v runc)" "$(command -v crun)"; do
    # Written over in place: the guest's tree is an overlay on tmpfs.
    cp "$f" /tmp/guest-bench-copy
    cat /tmp/guest-bench-copy > "$f"
done
mkdir -p /tmp/guest-bench
cp "$RSHIM_BIN" target/release/examples/containerd_shims /tmp/guest-bench/
for rt in runc crun; do
    SHIM_RUNC=$rt RSHIM_BIN=/tmp/guest-bench/containerd-shim-rshim-v1 /tmp/guest-bench/containerd_shims "$rounds" 2>/dev/null
done
