#!/bin/sh
# Linux in the same emulator, for scale beside `cargo xtask bench --filter http_get`:
# Debian's arm64 kernel and busybox `httpd` serving the same 1 KiB and 64 KiB files, booted
# under the same `qemu-system-aarch64 -M virt -cpu cortex-a72 -m 256M -smp 4` with the same
# `-icount shift=0,align=off,sleep=off -seed 1`, and QEMU's user network restricted
# (`restrict=on`) with one forwarded port on 127.0.0.1. docs/performance.md has the figures.
#
# Not part of `cargo xtask test`: it downloads about 60 MB from deb.debian.org (the
# packages below, pinned) into $WORK (default /tmp/exo-linux-bench) and deletes it after.
# Needs: apt-get with the arm64 architecture added (`dpkg --add-architecture arm64 &&
# apt-get update`), dpkg-deb, python3 (to write the initramfs), gzip, curl, QEMU.
#
# What is measured, and how: under -icount shift=0 the guest's virtual clock advances one
# nanosecond per guest instruction (on any of the four CPUs), and with sleep=off it jumps
# over idle time. The guest reads its monotonic clock (/proc/timer_list, in nanoseconds)
# before and after N requests made inside the guest by busybox `wget` to the guest's own
# httpd over loopback, and prints nanoseconds per request = instructions per request plus
# any idle jumps. Those happen only while every CPU is idle; /proc/stat's idle ticks (1/100
# s, summed over the CPUs, printed as idle_ticks) bound them: with SMP=1 they are exactly
# the single CPU's idle time; with 4 CPUs, three idle ones add about 3 x the elapsed time.
# Like exo's figure, no frame crosses the NIC (exo's bench joins two stacks by an in-memory
# wire in one environment). Unlike exo's, each request here is a new `wget` process and a
# new TCP connection (busybox httpd forks a child per connection and closes after each
# response): the guest also measures `wget` against a closed port (a process start, a
# connection refused) so that part can be taken off.
set -eu

KVER=6.1.0-57-arm64
KPKG="linux-image-$KVER=6.1.192-3"
BPKG="busybox-static=1:1.35.0-4+deb12u1+b1"
N=${N:-50}
SMP=${SMP:-4}
PORT=${PORT:-8089}
WORK=${WORK:-/tmp/exo-linux-bench}
KEEP=${KEEP:-0}

rm -rf "$WORK"
mkdir -p "$WORK/root"
cleanup() {
    [ -n "${QPID:-}" ] && kill "$QPID" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

echo "linux-bench: downloading $KPKG and $BPKG (arm64)"
apt-get download -q "${KPKG%%=*}:arm64=${KPKG#*=}" "${BPKG%%=*}:arm64=${BPKG#*=}" >/dev/null
for d in *.deb; do dpkg-deb -x "$d" pkg; done
cp "pkg/boot/vmlinuz-$KVER" vmlinuz

# The root file system: busybox, the four modules the virtio-mmio NIC needs, the two files.
R=root
mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp $R/www/log $R/mod
cp pkg/bin/busybox $R/bin/busybox
M="pkg/lib/modules/$KVER/kernel"
cp "$M/net/core/failover.ko" "$M/drivers/net/net_failover.ko" "$M/drivers/virtio/virtio_mmio.ko" \
    "$M/drivers/net/virtio_net.ko" $R/mod/
# The same bytes as exo's bench files: 'a' + i % 26.
python3 - "$R/www/log" <<'EOF'
import sys
for name, size in (("bench-1k.txt", 1024), ("bench-64k.txt", 65536)):
    open(f"{sys.argv[1]}/{name}", "wb").write(bytes(97 + i % 26 for i in range(size)))
EOF
cat >$R/init <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || true
for m in failover net_failover virtio_mmio virtio_net; do insmod /mod/\$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
httpd -p 80 -h /www
now() { sed -n 's/^now at \([0-9]*\) nsecs/\1/p' /proc/timer_list | head -n 1; }
idle() { awk '/^cpu /{ print \$5 }' /proc/stat; }
run() { # NAME URL: N requests, after one that warms up
    wget -q -O /dev/null "\$2" 2>/dev/null || true
    t0=\$(now); i0=\$(idle); i=0
    while [ \$i -lt $N ]; do wget -q -O /dev/null "\$2" 2>/dev/null || true; i=\$((i + 1)); done
    t1=\$(now); i1=\$(idle)
    echo "linux \$1 ops=$N per_op=\$(( (t1 - t0) / $N )) idle_ticks=\$((i1 - i0))"
}
run http_get_1k http://127.0.0.1/log/bench-1k.txt
run http_get_64k http://127.0.0.1/log/bench-64k.txt
run wget_refused http://127.0.0.1:81/
echo "linux: \$(uname -r) busybox \$(busybox | head -n 1 | cut -d' ' -f2)"
echo "linux: READY"
read -r line
poweroff -f
EOF
chmod +x $R/init

# A newc cpio archive of root/, gzipped (python3: the host need not have cpio).
python3 - "$R" <<'EOF' | gzip -9 >initrd.gz
import os, stat, sys
root, out, ino = sys.argv[1], sys.stdout.buffer, 1
def entry(name, mode, data=b""):
    global ino
    name_b = name.encode() + b"\0"
    head = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
    ino += 1
    out.write(head.encode() + name_b + b"\0" * (-(110 + len(name_b)) % 4) + data + b"\0" * (-len(data) % 4))
for d, dirs, files in os.walk(root):
    rel = os.path.relpath(d, root)
    if rel != ".":
        entry(rel, stat.S_IFDIR | 0o755)
    for f in sorted(files):
        p = os.path.join(d, f)
        entry(os.path.normpath(os.path.join(rel, f)), stat.S_IFREG | (os.stat(p).st_mode & 0o777), open(p, "rb").read())
entry("TRAILER!!!", 0)
EOF

echo "linux-bench: booting under -icount (a few minutes)"
mkfifo in
qemu-system-aarch64 -M virt -cpu cortex-a72 -m 256M -smp "$SMP" -display none -serial stdio -monitor none \
    -no-reboot -icount shift=0,align=off,sleep=off -seed 1 \
    -kernel vmlinuz -initrd initrd.gz -append "console=ttyAMA0 quiet" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:80" -device virtio-net-device,netdev=n0 \
    -global virtio-mmio.force-legacy=false <in >out.log 2>&1 &
QPID=$!
exec 3>in
i=0
until grep -q "linux: READY" out.log; do
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 $QPID 2>/dev/null; then
        tail -n 30 out.log
        echo "linux-bench: the guest never got ready" >&2
        exit 1
    fi
    sleep 1
done
# The forwarded port serves the same bytes (not timed: the host's side runs in real time).
for f in bench-1k.txt bench-64k.txt; do
    curl -sS --max-time 60 -o "got-$f" "http://127.0.0.1:$PORT/log/$f"
    cmp "got-$f" "$R/www/log/$f"
done
echo "linux-bench: 127.0.0.1:$PORT served both files byte for byte"
echo done >&3
exec 3>&-
i=0
while kill -0 $QPID 2>/dev/null && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
QPID=
grep "^linux" out.log | tr -d '\r'
echo "kernel: linux-image-$KVER ${KPKG#*=}; busybox-static ${BPKG#*=}; $(qemu-system-aarch64 --version | head -n 1)"
