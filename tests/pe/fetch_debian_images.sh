#!/bin/sh
# Download Debian's signed EFI/kexec images into tests/vectors/pe/debian/ (gitignored).
# Used by tests/pe/test_pe_debian.py; CI calls it before pytest.
#   shimx64.efi.signed  shim-signed        (two signatures, Microsoft UEFI CA 2011 and 2023)
#   grubx64.efi.signed  grub-efi-amd64-signed   (Debian Secure Boot Signer 2022)
#   vmlinuz             linux-image-<abi>-amd64 (Debian Secure Boot Signer 2022)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../vectors/pe/debian"
mkdir -p "$dest"
if [ -s "$dest/vmlinuz" ] && [ -s "$dest/grubx64.efi.signed" ] && [ -s "$dest/shimx64.efi.signed" ]; then
    echo "Debian PE images already in $dest"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernel=${DEBIAN_KERNEL_PACKAGE:-$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
    | awk '{print $1}' | sort -V | tail -n 1)}
cd "$work"
apt-get download shim-signed grub-efi-amd64-signed "$kernel" >/dev/null
for deb in *.deb; do dpkg -x "$deb" x; done
cp x/usr/lib/shim/shimx64.efi.signed "$dest/"
cp x/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed "$dest/"
cp x/boot/vmlinuz-* "$dest/vmlinuz"
ls *.deb > "$dest/PACKAGES"
echo "fetched into $dest:"; cat "$dest/PACKAGES"
