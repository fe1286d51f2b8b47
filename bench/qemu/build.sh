#!/bin/sh
# Installs what the QEMU reference needs (Debian bookworm: qemu-system-x86
# 7.2, a kernel, busybox-static, gcc) and builds the guest's initramfs in
# bench/qemu/build/: busybox, the static writer (writer.c) and init.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build"
need=""
command -v qemu-system-x86_64 >/dev/null || need="$need qemu-system-x86"
[ -x /bin/busybox ] && file -L /bin/busybox | grep -q "statically linked" || need="$need busybox-static"
command -v gcc >/dev/null || need="$need gcc libc6-dev"
ls /boot/vmlinuz-* >/dev/null 2>&1 || need="$need linux-image-amd64"
if [ -n "$need" ]; then
  apt-get update
  apt-get install -y --no-install-recommends $need
fi
mkdir -p "$out/root/bin" "$out/root/proc" "$out/root/sys" "$out/root/dev"
gcc -O2 -static -o "$out/root/writer" "$here/writer.c"
cp /bin/busybox "$out/root/bin/busybox"
ln -sf busybox "$out/root/bin/sh"
cp "$here/init" "$out/root/init"
chmod +x "$out/root/init"
(cd "$out/root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.cpio.gz"
cp "$(ls /boot/vmlinuz-* | sort -V | tail -n 1)" "$out/vmlinuz"
echo "built $out/initramfs.cpio.gz and $out/vmlinuz"
