#!/usr/bin/env python3
"""How long `runc create` takes after the machine has been idle a while.

Usage: runc_create_idle.py [--rounds N] [--perf] [--daemon DIR]

Why: `runc create` moves its child into the container's cgroups by writing
`cgroup.procs`, and the kernel takes the cgroup threadgroup lock for
writing, which waits for an RCU grace period (Linux 6.0 and later, cgroup
v1 and v2, unless the kernel favours dynamic cgroup changes). How long that
wait is depends on what the CPUs did just before, so the same runc command
takes longer after a pause, and two callers of runc whose work before the
call differs (a shell loop, a freshly started shim) see different runc
times. docs/PERFORMANCE.md quotes the tables this prints.

Each round runs one `runc create` (the shim's flags: `--log F --log-format
json`, `--pid-file`) after each of several pauses, then `runc delete -f`.
With `--perf` the rounds run under `perf sched record -g`, and each create
is split into the time its threads waited in the grace period
(`synchronize_rcu` called from `rcu_sync_enter`) and the rest.

With `--daemon DIR` (DIR holding `shim` and `shimctl`, as `make daemon`
builds them) each round instead runs one `runc create` from this script
and one Create through a freshly started `shim` daemon (driven with
`shimctl`: Create, Start, Wait, Delete; its debug events name the pid of
its `runc create`), both under perf, and splits both creates the same way;
the time of a create is then its process's life as perf saw it, for both.

Needs root, runc and a static busybox (busybox-static); `--perf` and
`--daemon` also need perf for the running kernel (Debian: linux-perf).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PAUSES_MS = [0, 2, 5, 10, 20, 50]


def bundle(root):
    """A busybox bundle running `true`, written into `root`."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    rootfs = os.path.join(root, "rootfs")
    for sub in ["bin", "proc", "dev", "sys", "tmp"]:
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin", "true"))
    subprocess.run(["runc", "spec", "--bundle", root], check=True)
    path = os.path.join(root, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    with open(path, "w") as f:
        json.dump(config, f)


def create(root, work, cid):
    """One `runc create`, timed from spawn to exit; returns (ms, pid)."""
    log, pid_file = os.path.join(work, "create.log"), os.path.join(work, "create.pid")
    args = ["runc", "--log", log, "--log-format", "json", "create", "--bundle", root, "--pid-file", pid_file, cid]
    start = time.perf_counter()
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = child.wait()
    took = (time.perf_counter() - start) * 1000
    if status != 0:
        said = open(log).read() if os.path.exists(log) else "no log"
        subprocess.run(["runc", "delete", "-f", cid], stderr=subprocess.DEVNULL)
        sys.exit(f"runc create failed ({status}): {said}")
    subprocess.run(["runc", "delete", "-f", cid], check=True)
    os.unlink(log)
    os.unlink(pid_file)
    return took, child.pid


def daemon_rounds(n, work, bin_dir):
    """Raw creates and creates through fresh daemons, interleaved: pids."""
    root = os.path.join(work, "bundle")
    bundle(root)
    sockets = os.path.join(work, "sockets")
    os.makedirs(sockets, mode=0o700)
    shim, ctl = os.path.join(bin_dir, "shim"), os.path.join(bin_dir, "shimctl")
    raw, daemon_pids = [], []
    for i in range(n):
        raw.append(create(root, work, f"raw-{os.getpid()}")[1])
        sock, cid = os.path.join(sockets, f"d{i}.sock"), f"daemon-{os.getpid()}-{i}"
        # Its debug events name the pid of each runc it ran.
        args = [shim, "--socket", sock, "--log-level", "debug", "--log-format", "json"]
        # Its stderr goes to a file: a pipe nobody reads during the calls
        # could fill and stop it.
        err_path = os.path.join(work, f"daemon-{i}.err")
        with open(err_path, "wb") as err:
            daemon = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        # Its `ready` line says the socket accepts connections.
        is_ready = lambda: any(l.startswith(b"ready ") for l in open(err_path, "rb"))  # noqa: E731
        deadline = time.monotonic() + 10
        while not is_ready() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0002)
        if not is_ready():
            daemon.kill()
            sys.exit("the shim did not get ready: " + open(err_path, errors="replace").read())
        call = lambda *a: subprocess.run([ctl, "--socket", sock, *a], check=True, capture_output=True, text=True)  # noqa: E731
        pid = call("create", "--id", cid, "--bundle", root).stdout.strip()
        call("start")
        call("wait", "--pid", pid)
        call("delete", "--pid", pid)
        if daemon.wait(timeout=10) != 0:
            sys.exit("the shim failed")
        for line in open(err_path, "rb"):
            event = json.loads(line) if line.startswith(b"{") else {}
            fields = event.get("fields", {})
            if fields.get("message") == "runtime exited" and fields.get("command") == "create":
                daemon_pids.append(fields["pid"])
    return {"raw": raw, "daemon": daemon_pids}


def rounds(n, work):
    """Runs the rounds; returns {pause_ms: [(ms, pid), ...]}."""
    root = os.path.join(work, "bundle")
    bundle(root)
    out = {p: [] for p in PAUSES_MS}
    cid = f"idle-{os.getpid()}"
    for _ in range(n):
        for pause in PAUSES_MS:
            if pause:
                time.sleep(pause / 1000)
            out[pause].append(create(root, work, cid))
    return out


LINE = re.compile(r"^\s*([\d.]+)\s+\[\d+\]\s+(\S+)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s*(.*)$")


def lives(timehist):
    """{pid: ms} from the first to the last time a process's threads ran."""
    spans = {}
    for line in timehist.splitlines():
        m = LINE.match(line)
        if m:
            at, pid = float(m.group(1)), m.group(4) or m.group(3)
            first, _ = spans.get(pid, (at, at))
            spans[pid] = (first, at)
    return {pid: (last - first) * 1000 for pid, (first, last) in spans.items()}


def grace_waits(timehist):
    """{pid: ms} waited in the grace period by the threads of each process.

    A line of `perf sched timehist -g` is a task leaving the CPU, with the
    stack it left from and the time it had waited before this run; the wait
    that follows a switch out in `synchronize_rcu` is that wait.
    """
    blocked, waits = {}, {}
    for line in timehist.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        tid, pid, waited, stack = m.group(3), m.group(4) or m.group(3), float(m.group(5)), m.group(6)
        if tid in blocked:
            owner = blocked.pop(tid)
            waits[owner] = waits.get(owner, 0.0) + waited
        if "synchronize_rcu" in stack and "rcu_sync_enter" in stack:
            blocked[tid] = pid
    return waits


def table(results, waits):
    """The table, in the Markdown of docs/PERFORMANCE.md."""
    head = "| idle before `runc create` | median | p10–p90 |"
    if waits is not None:
        head += " waiting for the grace period, median | the rest, median |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for pause, samples in results.items():
        times = sorted(ms for ms, _ in samples)
        at = lambda q: times[round((len(times) - 1) * q)]  # noqa: E731
        row = f"| {pause} ms | {statistics.median(times):.1f} ms | {at(0.1):.1f}–{at(0.9):.1f} ms |"
        if waits is not None:
            gp = [waits.get(str(pid), 0.0) for _, pid in samples]
            rest = [ms - waits.get(str(pid), 0.0) for ms, pid in samples]
            row += f" {statistics.median(gp):.1f} ms | {statistics.median(rest):.1f} ms |"
        lines.append(row)
    return "\n".join(lines)


def daemon_table(found, life, waits):
    """Raw against daemon creates, each split at the grace period."""
    lines = [
        "| `runc create` run by | life, median | waiting for the grace period, median | the rest, median |",
        "|---|---|---|---|",
    ]
    for who, label in [("raw", "this script"), ("daemon", "a freshly started `shim`")]:
        pids = [str(p) for p in found[who] if str(p) in life]
        if not pids:
            lines.append(f"| {label} (none seen by perf) | | | |")
            continue
        med = lambda f: statistics.median(f(p) for p in pids)  # noqa: E731
        gp = lambda p: waits.get(p, 0.0)  # noqa: E731
        lines.append(
            f"| {label} ({len(pids)}) | {med(life.get):.1f} ms | {med(gp):.1f} ms | {med(lambda p: life[p] - gp(p)):.1f} ms |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--perf", action="store_true", help="split each create with perf sched")
    parser.add_argument("--daemon", metavar="DIR", help="compare with creates through fresh daemons from DIR")
    parser.add_argument("--save", help=argparse.SUPPRESS)  # the run under perf writes its samples here
    opts = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("runc_create_idle.py: needs root (runc)")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as work:
        if opts.save:
            if opts.daemon:
                found = daemon_rounds(opts.rounds, work, opts.daemon)
            else:
                found = {str(k): v for k, v in rounds(opts.rounds, work).items()}
            with open(opts.save, "w") as f:
                json.dump(found, f)
            return
        if not opts.perf and not opts.daemon:
            print(table(rounds(opts.rounds, work), None))
            return
        if not shutil.which("perf"):
            sys.exit("runc_create_idle.py: --perf and --daemon need perf (Debian: apt-get install linux-perf)")
        data, saved = os.path.join(work, "perf.data"), os.path.join(work, "samples.json")
        me = [sys.executable, os.path.abspath(__file__), "--rounds", str(opts.rounds), "--save", saved]
        if opts.daemon:
            me += ["--daemon", os.path.abspath(opts.daemon)]
        subprocess.run(["perf", "sched", "record", "-q", "-g", "-o", data, "--"] + me, check=True)
        hist = subprocess.run(
            ["perf", "sched", "timehist", "-g", "--max-stack", "16", "-i", data],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        with open(saved) as f:
            found = json.load(f)
        if "synchronize_rcu" not in hist:
            print("(no task waited in synchronize_rcu: no grace period here, or not in the stacks perf kept)")
        if opts.daemon:
            print(daemon_table(found, lives(hist), grace_waits(hist)))
        else:
            print(table({int(k): v for k, v in found.items()}, grace_waits(hist)))


if __name__ == "__main__":
    main()
