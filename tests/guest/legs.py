#!/usr/bin/env python3
"""The guest legs of `make test`: test binaries built on the host, run in a
guest kernel (tests/guest/run.py) on a real cgroup v2 hierarchy, and again
with systemd as PID 1 and runc's systemd cgroup driver.

    tests/guest/legs.py [cgroup2] [systemd]

Each leg is one boot running its test binaries in turn with
SHIM_REQUIRE_RUNC=1 and SHIM_REQUIRE_CGROUP2=1 (a missing runc, or a v1
hierarchy, fails instead of skipping); the binaries print their own
`test result:` lines. Exits non-zero if any binary failed in any leg.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Per leg: (test binary, arguments). The emulated CPU is about 25 times
# slower than the host's: the soak and the host-only fault tests stay on the
# host, and so do the tests of the fake runtime's timing (no cgroups there:
# the conformance scenarios over it, where `pid_reuse` failed in the guest,
# and event_order.rs, whose OOM coalescing window is wall-clock); what the
# legs are for is every cgroup path the shim takes.
LEGS = {
    "cgroup2": [
        # The runc conformance suite over every transport (in process,
        # gRPC, in memory): lifecycle, exec, events, OOM through
        # memory.events with a limit set by Update, Stats, Pause/Resume
        # through cgroup.freeze, ListPids.
        ("conformance", ["--skip", "fake::"]),
        # One test at a time: fifty concurrent execs beside the other tests
        # took more than the 30 s bound of a step (CI, twice in three runs).
        ("runc_shim", ["--test-threads", "1"]),
        # The containerd suite through the Go shim and ours (5 minutes in
        # the guest): ctr sessions, CRI pods, stats as kubelet reads them.
        ("containerd", ["--test-threads", "1"]),
        # crun as the OCI runtime (`SHIM_RUNC=crun` for the core's tests;
        # the containerd suite's crun pods are part of the run above): crun
        # refuses the host's hybrid cgroups, so this is where it runs.
        ("conformance", ["--skip", "fake::"], "SHIM_RUNC=crun"),
    ],
    "systemd": [
        # The same conformance suite with runc's systemd cgroup driver: each
        # container a `runc-<id>.scope` under system.slice.
        ("conformance", ["--skip", "fake::"]),
        ("runc_shim", ["on_cgroup_v2", "--test-threads", "1"]),
        # containerd with `SystemdCgroup = true` and a `.slice` pod parent,
        # through the Go shim and ours (the rest of the containerd suite
        # runs in the cgroup2 leg).
        ("containerd", ["systemd_cgroup", "--test-threads", "1"]),
    ],
}


def test_binaries():
    """Every test binary of the workspace by target name (built if needed)."""
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
            found.setdefault(m["target"]["name"], []).append(m["executable"])
    return found


def leg_script(leg, binaries):
    lines = ["failed=0"]
    # runc_shim.rs scales its 30 s step bound by SHIM_TEST_TIME_SCALE.
    env = "SHIM_REQUIRE_RUNC=1 SHIM_REQUIRE_CGROUP2=1 SHIM_TEST_TIME_SCALE=4"
    if leg == "systemd":
        env += " SHIM_SYSTEMD_CGROUP=1"
    for name, args, *extra in LEGS[leg]:
        paths = binaries.get(name)
        if not paths:
            sys.exit(f"legs: no test binary {name!r}")
        for path in paths:
            cmd = " ".join(shlex.quote(a) for a in [path, *args])
            more = " ".join(extra)
            label = f"{name} ({more})" if more else name
            lines.append(f'echo "legs: {leg}: {label}"; env {env} {more} {cmd} || failed=1')
    lines.append("exit $failed")
    return "\n".join(lines)


def main():
    legs = sys.argv[1:] or list(LEGS)
    unknown = [leg for leg in legs if leg not in LEGS]
    if unknown:
        sys.exit(f"legs: unknown leg {unknown}; the legs are {list(LEGS)}")
    binaries = test_binaries()
    status = 0
    for leg in legs:
        print(f"legs: the {leg} leg, in a guest kernel", flush=True)
        cmd = [sys.executable, str(ROOT / "tests" / "guest" / "run.py"), "--timeout", "2400", "--cwd", str(ROOT)]
        if leg == "systemd":
            cmd.append("--systemd")
        cmd += ["--", "sh", "-c", leg_script(leg, binaries)]
        if subprocess.run(cmd).returncode != 0:
            print(f"legs: the {leg} leg failed", flush=True)
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
