#!/bin/bash
# Builds a realistic pair of Debian root filesystem images for delta benchmarks:
#   old = Debian 12 (bookworm) from the main archive (current point release),
#   new = old + `apt-get upgrade` from bookworm-security and bookworm-updates (a security update).
# Adapted from /work/shared/bench/make-image-pair.sh (which adds packages instead).
# usage: make-image-pair.sh OUTDIR [ext4|squashfs|squashfs-raw|erofs ...]   (root; needs debootstrap, network to Debian)
# Output: OUTDIR/old.<fmt>, OUTDIR/new.<fmt>, OUTDIR/upgraded-packages.txt.
# Images are built reproducibly (fixed time, UUID, hash seed), so only the upgrade differs.
set -euo pipefail
out=${1:?usage: make-image-pair.sh OUTDIR [formats]}; shift || true
fmts=${*:-ext4 erofs squashfs}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
command -v debootstrap >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
command -v mksquashfs >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q squashfs-tools; }
command -v mkfs.erofs >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q erofs-utils; }
mkdir -p "$out"; work=$(mktemp -d)
cleanup() { umount "$work/new/proc" "$work/new/dev" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Only the "main" suite: debootstrap never pulls from -security, so old = point release.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,udev,iproute2,openssh-server,curl,ca-certificates,python3,openssl,sudo,less,kmod,libcap2-bin \
  bookworm "$work/old" "$mirror" >/dev/null
rm -rf "$work"/old/var/cache/apt/archives/*.deb "$work"/old/var/lib/apt/lists/*
cp -a "$work/old" "$work/new"
cat > "$work/new/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SRC
mount --bind /dev "$work/new/dev"; mount -t proc proc "$work/new/proc"
chroot "$work/new" sh -c 'apt-get update -q >/dev/null && apt list --upgradable 2>/dev/null | tail -n +2' > "$out/upgraded-packages.txt"
chroot "$work/new" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q >/dev/null && apt-get clean'
umount "$work/new/proc" "$work/new/dev"
rm -rf "$work"/new/var/lib/apt/lists/*
# The old tree keeps the main-only sources.list, the new one the security sources: a real difference.
echo "upgraded packages: $(wc -l < "$out/upgraded-packages.txt")"
export SOURCE_DATE_EPOCH=1700000000 E2FSPROGS_FAKE_TIME=1700000000
uuid=0c3a7f7e-5d1b-4c55-9a55-6b0e3a1d2f01
# Same ext4 size for both (a fixed partition), with ~35 % free space.
used_mb=$(du -sm "$work/new" | cut -f1)
ext4_mb=$(( (used_mb * 135 / 100 + 63) / 64 * 64 ))
for v in old new; do
  for f in $fmts; do
    case $f in
      ext4) rm -f "$out/$v.ext4"; truncate -s ${ext4_mb}M "$out/$v.ext4"
            mkfs.ext4 -q -F -d "$work/$v" -U $uuid -E hash_seed=$uuid,lazy_itable_init=0,nodiscard "$out/$v.ext4" ;;
      squashfs) mksquashfs "$work/$v" "$out/$v.squashfs" -comp zstd -noappend -quiet >/dev/null ;;
      # uncompressed squashfs: the delta-friendly variant (compression is left to the delta)
      squashfs-raw) mksquashfs "$work/$v" "$out/$v.squashfs-raw" -noI -noD -noF -noX -noappend -quiet >/dev/null ;;
      erofs) mkfs.erofs -T$SOURCE_DATE_EPOCH -U$uuid "$out/$v.erofs" "$work/$v" >/dev/null 2>&1 ;;
      *) echo "unknown format $f" >&2; exit 2 ;;
    esac
  done
done
ls -l "$out"
