#!/bin/sh
# Boot Debian 12's s390x kernel under qemu (TCG, no TPM: IMA runs in TPM-bypass mode) with
# harness/init as the whole initramfs, three times, and decode what it printed.
# Needs: qemu-system-misc (qemu-system-s390x), cpio, curl, python3. About 5 s a boot.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); W=${W:-/tmp/rk/s390}; OUT=${OUT:-$HERE/..}
mkdir -p "$W/root/bin" && cd "$W"
M=http://deb.debian.org/debian/pool/main
[ -f k.deb ] || curl -so k.deb $M/l/linux/linux-image-6.1.0-50-s390x_6.1.176-1_s390x.deb
[ -f bb.deb ] || curl -so bb.deb $M/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_s390x.deb
dpkg -x k.deb k; dpkg -x bb.deb bb
cp bb/bin/busybox root/bin/busybox; cp "$HERE/init" root/init; chmod 755 root/init
mkdir -p root/proc root/sys root/dev root/tmp root/etc root/opt
(cd root && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -9 > initrd.img
boot() {
  qemu-system-s390x -M s390-ccw-virtio -m 1024 -smp 1 -nographic -no-reboot \
    -kernel k/boot/vmlinuz-6.1.0-50-s390x -initrd initrd.img \
    -append "console=ttysclp0 root=/dev/ram0 ima_policy=tcb $2" > "$1.log" 2>&1
  rm -rf "$OUT/$1"; python3 "$HERE/decode.py" "$1.log" "$OUT/$1"
}
boot be "ima_hash=sha256 ima_template_fmt=d-ng|n-ng|sig|iuid|igid|imode"
boot le "ima_hash=sha256 ima_template_fmt=d-ng|n-ng|sig|iuid|igid|imode ima_canonical_fmt"
boot be-ima "ima_hash=sha1 ima_template=ima"
