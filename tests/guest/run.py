#!/usr/bin/env python3
"""Runs a command in a guest kernel with cgroup v2 (or systemd as PID 1).

    tests/guest/run.py [--systemd] [--timeout SECS] [--cwd DIR] -- COMMAND [ARG...]

The host's cgroups are never touched: a Debian kernel boots under QEMU's
emulation (this machine's KVM cannot run a stock kernel), with the host's `/`
over 9p, read-only, under a tmpfs overlay, so the command sees every host path
(built binaries, runc, containerd, the tree) where it is, and its writes are
thrown away with the guest. Without --systemd the guest's init mounts cgroup2
with every controller enabled for the root's children and runs the command;
with --systemd, systemd is PID 1 and runs the command as a unit. The command's
output (stdout and stderr together) streams to ours; our exit status is its.

First use installs qemu-system-x86 with apt-get and fetches the kernel package
(`apt-get download`), then caches the uncompressed kernel and an initramfs
(static busybox, the 9p, virtio and overlay modules, tests/guest/init.sh) in
target/guest/. A boot that does not reach the command within --boot-timeout is
killed and retried (twice). The environment is passed on (names of letters,
digits and `_` only). CPU-bound work is about 25 times slower than on the host.
"""

import argparse
import lzma
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / "target" / "guest"
# What the guest's init loads, dependencies first (resolved from the modules'
# own `depends=`).
MODULES = ["virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay"]
MARK = "guest: running"


def log(msg):
    print(f"guest: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_qemu():
    if shutil.which("qemu-system-x86_64"):
        return
    log("installing qemu-system-x86")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "qemu-system-x86"], env=env, stdout=subprocess.DEVNULL)


def kernel_package():
    """The package the current `linux-image-amd64` depends on."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    run(["apt-get", "update", "-qq"])
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        sys.exit("guest: cannot find the kernel package linux-image-amd64 depends on")
    return m.group(1)


def module_depends(path):
    data = path.read_bytes()
    i = data.find(b"depends=")
    if i < 0:
        return []
    end = data.index(b"\0", i)
    deps = data[i + len(b"depends="):end].decode()
    return [d for d in deps.split(",") if d]


def newc(entries):
    """A newc cpio archive of (name, mode, data) entries."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        name_b = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name_b
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def ensure_kernel():
    """The cached (vmlinux, initramfs) paths, built on first use."""
    package = kernel_package()
    cache = CACHE / package
    vmlinux, initrd = cache / "vmlinux", cache / "initrd.cpio"
    init = (HERE / "init.sh").read_bytes()
    if vmlinux.exists() and initrd.exists() and (cache / "init.sh").exists() and (cache / "init.sh").read_bytes() == init:
        return vmlinux, initrd
    log(f"preparing {package} (once)")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=cache))
    try:
        # As root into a directory of ours: apt's sandbox user cannot write it.
        run(["apt-get", "-o", "APT::Sandbox::User=root", "download", package], cwd=work, stdout=subprocess.DEVNULL)
        deb = next(work.glob("*.deb"))
        tree = work / "x"
        run(["dpkg-deb", "-x", str(deb), str(tree)])
        vmlinuz = next((tree / "boot").glob("vmlinuz-*"))
        data = vmlinuz.read_bytes()
        # The image's payload is xz (Debian's CONFIG_KERNEL_XZ): booting it
        # uncompressed spares the emulated decompressor.
        start = data.find(b"\xfd7zXZ\x00")
        if start < 0:
            sys.exit(f"guest: no xz payload in {vmlinuz}")
        vmlinux.write_bytes(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:]))
        kos = {p.name[: -len(".ko")]: p for p in tree.glob("lib/modules/*/kernel/**/*.ko")}
        order, seen = [], set()

        def add(name):
            if name in seen:
                return
            seen.add(name)
            path = kos.get(name) or kos.get(name.replace("-", "_"))
            if path is None:
                return  # built in
            for dep in module_depends(path):
                add(dep)
            order.append(name)

        for m in MODULES:
            add(m)
        busybox = Path("/bin/busybox").read_bytes()
        entries = [
            ("bin", 0o40755, b""),
            ("bin/busybox", 0o100755, busybox),
            ("init", 0o100755, init),
            ("modules", 0o40755, b""),
            ("modules.order", 0o100644, "\n".join(order).encode() + b"\n"),
        ] + [(f"modules/{m}.ko", 0o100644, kos[m].read_bytes()) for m in order if m in kos]
        initrd.write_bytes(newc(entries))
        (cache / "init.sh").write_bytes(init)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return vmlinux, initrd


def script(command, cwd):
    """The guest's run.sh: the environment, the directory, the command."""
    lines = ["#!/bin/sh"]
    for k, v in sorted(os.environ.items()):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and k not in ("PWD", "OLDPWD", "SHLVL", "_"):
            lines.append(f"export {k}={shlex.quote(v)}")
    lines.append(f"cd {shlex.quote(cwd)} || exit 125")
    lines.append(" ".join(shlex.quote(c) for c in command))
    return "\n".join(lines) + "\n"


TARGET = """[Unit]
Description=the guest's command and what it needs
Requires=basic.target guest-command.service
After=basic.target
AllowIsolate=yes
"""

UNIT = """[Unit]
Description=the guest's command
After=basic.target

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
ExecStart=/bin/sh -c 'echo "{mark}"; /bin/sh /guest/run.sh; echo $? > /guest/status; sync; systemctl poweroff --force --force'
"""


# The guest's own words after the command: the kernel's (also right after
# output without a final newline), and systemd's.
KERNEL = re.compile(rb"\[\s*\d+\.\d+\] .*$")
NOISE = re.compile(rb"^\s*Powering off\.\s*$")


def emit(data):
    """Writes the whole lines of `data` but the guest's noise; returns the
    unfinished last line."""
    *lines, rest = data.replace(b"\r\n", b"\n").split(b"\n")
    kept = []
    for line in lines:
        cut = KERNEL.sub(b"", line)
        if (cut or not line) and not NOISE.match(cut):
            kept.append(cut)
    out = b"".join(line + b"\n" for line in kept)
    if out:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    return rest


def tail(buf):
    return buf.decode(errors="replace")[-3000:]


def boot(vmlinux, initrd, results, systemd, boot_timeout, timeout, memory, cpus):
    """One boot: streams the command's output; returns its status, or None
    for a boot that never reached the command."""
    append = "console=ttyS0 panic=-1 rdinit=/init mitigations=off no_timer_check tsc=reliable cryptomgr.notests"
    append += " loglevel=1 8250.nr_uarts=1 selinux=0"
    append += " systemd.unified_cgroup_hierarchy=1 systemd.unit=guest.target" if systemd else " cgroup_no_v1=all"
    qemu = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-m", str(memory), "-smp", str(cpus), "-nodefaults", "-no-reboot", "-display", "none",
        "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", append,
        "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
        "-fsdev", "local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=results,path={results},security_model=passthrough",
        "-device", "virtio-9p-pci,fsdev=results,mount_tag=results",
    ]
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started, buf, begun, fresh, pending = False, b"", time.monotonic(), False, b""
    try:
        while True:
            limit = (begun + boot_timeout) if not started else (begun + timeout)
            left = limit - time.monotonic()
            if left <= 0:
                if started:
                    log(f"the command ran over {timeout} s")
                    return 124
                log("the boot did not reach the command in time; its last output:\n" + tail(buf))
                return None
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            if started:
                if fresh:
                    # The rest of the mark's own line.
                    chunk, fresh = chunk.lstrip(b"\r\n"), not chunk.strip(b"\r\n")
                pending = emit(pending + chunk)
                continue
            buf += chunk
            i = buf.find(MARK.encode())
            if i >= 0:
                started, begun = True, time.monotonic()
                rest = buf[i + len(MARK):]
                fresh = not rest.strip(b"\r\n")
                pending = emit(rest.lstrip(b"\r\n"))
        proc.wait()
        emit(pending + b"\n" if pending else b"")
        status = results / "status"
        if not status.exists():
            if not started:
                log("the guest stopped before the command; its last output:\n" + tail(buf))
                return None
            log("the guest stopped without the command's status")
            return 125
        return int(status.read_text().strip() or 125)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systemd", action="store_true", help="systemd as PID 1, the command a unit of it")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds the command may run")
    ap.add_argument("--boot-timeout", type=int, default=120, help="seconds a boot may take to reach the command")
    ap.add_argument("--cwd", default=os.getcwd(), help="where the command runs (the current directory)")
    ap.add_argument("--memory", type=int, default=4096, help="MiB of guest memory")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command")
    if os.geteuid() != 0:
        sys.exit("guest: needs root (apt-get, and 9p with the host's owners)")
    ensure_qemu()
    vmlinux, initrd = ensure_kernel()
    for attempt in range(3):
        with tempfile.TemporaryDirectory(prefix="guest-") as results:
            r = Path(results)
            (r / "run.sh").write_text(script(command, args.cwd))
            (r / "mode").write_text("systemd" if args.systemd else "cgroup2")
            (r / "cwd").write_text(args.cwd)
            (r / "guest-command.service").write_text(UNIT.format(mark=MARK))
            (r / "guest.target").write_text(TARGET)
            status = boot(vmlinux, initrd, r, args.systemd, args.boot_timeout, args.timeout, args.memory, args.cpus)
            if status is not None:
                sys.exit(status)
        if attempt < 2:
            log(f"retrying the boot ({attempt + 2} of 3)")
    sys.exit("guest: three boots failed to reach the command")


if __name__ == "__main__":
    main()
