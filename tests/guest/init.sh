#!/bin/busybox sh
# PID 1 of the guest's initramfs (see run.py): the host's / over 9p, read-only,
# under a tmpfs overlay, so every host path is there and writable, with the
# writes thrown away; then either the command (cgroup v2 mode) or systemd as
# PID 1 with the command as a unit (systemd mode). The command's script,
# its exit status and the mode are in the `results` 9p share.
B=/bin/busybox
$B mkdir -p /proc /sys /dev /mnt/host /mnt/rw /mnt/root /mnt/results
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules.order); do
    $B insmod "/modules/$m.ko" || echo "guest: insmod $m failed"
done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /mnt/host
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /mnt/results
$B mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
$B mkdir -p /mnt/rw/upper /mnt/rw/work
$B mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /mnt/root
R=/mnt/root
# The host's own mounts are not in the 9p share: fresh ones here.
for d in proc sys dev run tmp; do $B mkdir -p "$R/$d"; done
$B mount --move /proc "$R/proc"
$B mount --move /sys "$R/sys"
$B mount --move /dev "$R/dev"
$B mkdir -p "$R/run/guest"
$B mount --move /mnt/results "$R/run/guest"
# A fresh /tmp (the tests' temporary directories, containerd's overlay
# snapshots: an overlay cannot take an overlay as its upper layer), and the
# command's directory, if it is under the host's /tmp, overlaid at its path.
$B mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
CWD=$($B cat "$R/run/guest/cwd")
case "$CWD" in
    /tmp/*)
        $B mkdir -p /mnt/rw/cwd/upper /mnt/rw/cwd/work "$R$CWD"
        $B mount -t overlay -o "lowerdir=/mnt/host$CWD,upperdir=/mnt/rw/cwd/upper,workdir=/mnt/rw/cwd/work" overlay "$R$CWD"
        ;;
esac
# systemd takes a root with /.dockerenv for a container.
$B rm -f "$R/.dockerenv"
if [ "$($B cat "$R/run/guest/mode")" = systemd ]; then
    # The boot's target (systemd.unit=guest.target): the basic system and
    # the command, no logins or consoles to wait for.
    $B cp "$R/run/guest/guest-command.service" "$R/run/guest/guest.target" "$R/etc/systemd/system/"
    # systemd mounts /run and /tmp itself (tmpfs), over ours: keep the share
    # where it stays.
    $B mkdir -p "$R/guest"
    $B mount --move "$R/run/guest" "$R/guest"
    exec $B switch_root "$R" /lib/systemd/systemd --log-level=warning --show-status=false
fi
# The overlay becomes the root (not a chroot: runc's exec joins the
# container's mount namespace, whose root must be a real one).
$B cat > "$R/run/guest-stage2" <<'EOF2'
B=/bin/busybox
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
$B ln -sf pts/ptmx /dev/ptmx
$B mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Every controller for the children of the root, as a v2 host has them.
for c in $($B cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
done
echo "guest: running"
/bin/sh /run/guest/run.sh
echo "$?" > /run/guest/status
$B sync
$B poweroff -f
EOF2
exec $B switch_root "$R" /bin/busybox sh /run/guest-stage2
