#!/usr/bin/env bash
# Builds the reference test disk for the CIP-style boot chain (see docs/qemu-boot-chain.md):
#
#   p1 ESP    FAT  EFI/BOOT/BOOTX64.EFI = Debian's efibootguardx64.efi
#   p2 BOOT0  FAT  BGENV.DAT (slot A, revision 2, OK), EFILABEL, linux.efi (UKI)
#   p3 BOOT1  FAT  BGENV.DAT (slot B, revision 1, OK), EFILABEL, linux.efi (UKI)
#   p4 rootA  ext4 rootfs version 1 (busybox, keel-agent, the scenario step)
#   p5 rootB  ext4 rootfs version 1
#   p6 data   ext4 /updates/*.swu (signed bundles), /scenario/queue, /keel (agent state)
#
# The kernel has virtio-net; with HTTP_BASE the second bundle comes from the host over HTTP.
#
# Bundles: update-1.swu installs rootfs version 2 (good), update-2.swu installs version 3, whose
# init hangs without confirming (the watchdog must fire and EFI Boot Guard must roll back).
#
# usage: qemu/build-disk.sh [OUT_DIR]   (default qemu/out)
# env:   KEEL_AGENT_BIN  keel-agent binary for the guest (default target/agent/keel-agent)
#        KEEL_BIN        keel CLI used for `keel bundle create` (default target/debug/keel)
#        WATCHDOG_SEC    EFI Boot Guard watchdog timeout (default 30)
#        DDI_URL, DDI_TOKEN  if set (e.g. http://10.0.2.2:8080 and a 32-character token), the
#                        guest's agent.toml gets a [ddi] section (controller id qemu-gw, that
#                        target token), update-2.swu goes to OUT_DIR/ddi/ for the host to upload
#                        to keel-server, and the guest's second step is `keel-agent run --once`
#        HTTP_BASE       if set (and DDI_URL is not) (e.g. http://10.0.2.2:8000), update-2.swu is not put on the data
#                        partition but in OUT_DIR/http/, and the guest installs it from
#                        $HTTP_BASE/update-2.swu (QEMU user networking: 10.0.2.2 is the host)
#        BOOT_FORMAT     uki (default): per-slot unified kernel image linux.efi made by
#                        bg_gen_unified_kernel (kernel + initramfs + the slot's command line),
#                        named C:BOOTn:linux.efi; plain: vmlinuz + initrd.img, L:BOOTn:vmlinuz,
#                        command line from BGENV.DAT
#        SCENARIO_QUEUE  if set, the guest's /scenario/queue holds exactly these entries (one per
#                        line, e.g. "update-1.swu" for a single install; qemu/crash-consistency.sh)
# Needs: efibootguard mtools dosfstools fdisk e2fsprogs busybox-static cpio kmod openssl, and
# network access to a Debian mirror once (the kernel package is cached under qemu/cache/).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:-$here/out}
cache=$here/cache
agent_bin=${KEEL_AGENT_BIN:-$repo/target/agent/keel-agent}
keel_bin=${KEEL_BIN:-$repo/target/debug/keel}
watchdog_sec=${WATCHDOG_SEC:-30}
boot_format=${BOOT_FORMAT:-uki}

log() { echo "build-disk: $*" >&2; }
die() { echo "build-disk: error: $*" >&2; exit 1; }

for tool in bg_setenv mkfs.vfat mcopy mmd sfdisk mke2fs busybox cpio depmod modprobe openssl gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-debian.sh)"
done
ebg_efi=/usr/lib/x86_64-linux-gnu/efibootguard/efibootguardx64.efi
ebg_stub=/usr/lib/x86_64-linux-gnu/efibootguard/kernel-stubx64.efi
[ -f "$ebg_efi" ] && [ -f "$ebg_stub" ] || die "$ebg_efi or $ebg_stub missing (package efibootguard)"
[ -x "$agent_bin" ] || die "keel-agent binary $agent_bin missing (cargo build --profile agent -p keel-agent)"
[ -x "$keel_bin" ] || die "keel binary $keel_bin missing (cargo build -p keel-cli)"

# --- Partition layout (MiB) ---------------------------------------------------------------
# name size type
layout=(
    "ESP   16 C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    "BOOT0 32 EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    "BOOT1 32 EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    "rootA 32 0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    "rootB 32 0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    "data  96 0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)
rootfs_mib=24   # ext4 image size inside the 32 MiB slot (the bundle carries this many bytes)

# Slot definitions shared by the initial env and the agent config: the agent writes exactly
# these into BGENV.DAT when it activates a slot. A UKI carries its command line (EFI Boot
# Guard's stub ignores the one passed to it), so the env's kernelparams stay empty then.
cmdline_common="console=ttyS0 panic=0 quiet"
cmdline_a="$cmdline_common root=/dev/vda4 keel.slot=A"
cmdline_b="$cmdline_common root=/dev/vda5 keel.slot=B"
case "$boot_format" in
    uki)
        kernel_a="C:BOOT0:linux.efi"
        kernel_b="C:BOOT1:linux.efi"
        params_a=""
        params_b=""
        ;;
    plain)
        kernel_a="L:BOOT0:vmlinuz"
        kernel_b="L:BOOT1:vmlinuz"
        params_a="$cmdline_a initrd=initrd.img"
        params_b="$cmdline_b initrd=initrd.img"
        ;;
    *) die "BOOT_FORMAT must be uki or plain" ;;
esac

mkdir -p "$out" "$cache"
work=$out/work
rm -rf "$work"
mkdir -p "$work"

# --- Kernel: the package linux-image-amd64 depends on, cached --------------------------------
kernel_pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
[ -n "$kernel_pkg" ] || die "cannot tell which kernel linux-image-amd64 depends on (apt-get update?)"
kernel_ver=${kernel_pkg#linux-image-}
kroot=$cache/$kernel_pkg
if [ ! -f "$kroot/boot/vmlinuz-$kernel_ver" ]; then
    log "downloading $kernel_pkg"
    (cd "$cache" && rm -f "${kernel_pkg}"_*.deb && apt-get download "$kernel_pkg" >/dev/null 2>&1) \
        || die "apt-get download $kernel_pkg failed"
    rm -rf "$kroot.tmp"
    dpkg-deb -x "$cache/${kernel_pkg}"_*.deb "$kroot.tmp"
    depmod -b "$kroot.tmp" "$kernel_ver"
    mv "$kroot.tmp" "$kroot"
fi
vmlinuz=$kroot/boot/vmlinuz-$kernel_ver
moddir=$kroot/lib/modules/$kernel_ver

# Copies the modules named (plus their dependencies, in load order) flat into DIR and writes
# DIR/LIST with the load order.
copy_modules() {
    local dir=$1 list=$2
    shift 2
    mkdir -p "$dir"
    : > "$dir/$list"
    local path name
    for path in $(for m in "$@"; do
        modprobe -d "$kroot" -S "$kernel_ver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++'); do
        name=$(basename "$path")
        case "$name" in
            *.xz) xz -dc "$path" > "$dir/${name%.xz}"; name=${name%.xz} ;;
            *) cp "$path" "$dir/$name" ;;
        esac
        echo "$name" >> "$dir/$list"
    done
}

# --- Initramfs: busybox + block/fs modules + /init that mounts root= ---------------------------
log "initramfs ($kernel_ver)"
initramfs=$work/initramfs
mkdir -p "$initramfs/bin"
cp /bin/busybox "$initramfs/bin/busybox"
ln -s busybox "$initramfs/bin/sh"
cp "$here/guest/initramfs-init" "$initramfs/init"
copy_modules "$initramfs/lib/modules" load-order virtio_pci virtio_blk virtio_net crc32c_generic ext4 vfat nls_cp437 nls_ascii
(cd "$initramfs" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$work/initrd.img"

# --- Signing key for the bundles (self-signed, as the SWUpdate docs do) --------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/signer.key" -out "$work/signer.pem" -days 30 \
    -subj "/CN=keel qemu test signer" \
    -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=emailProtection" 2>/dev/null

# --- Root filesystems ----------------------------------------------------------------------------
agent_libs=$(ldd "$agent_bin" 2>/dev/null | awk '/=>/ { print $3 } /^\t\/lib/ { print $1 }' | sort -u || true)

# keel-server (hawkBit DDI) settings of the guest's agent, if the scenario uses it.
ddi_top=""
ddi_table=""
if [ -n "${DDI_URL:-}" ]; then
    ddi_top='# After a DDI install the agent runs this; the scenario step reboots once the cycle returned.
reboot_command = "touch /run/keel-reboot-requested"'
    ddi_table="
[ddi]
url = \"$DDI_URL\"
tenant = \"default\"
controller_id = \"qemu-gw\"
target_token = \"${DDI_TOKEN:?DDI_TOKEN must be set with DDI_URL}\"
poll_secs = 5"
fi

# make_rootfs VERSION good|bad IMAGE
make_rootfs() {
    local version=$1 kind=$2 image=$3
    local dir=$work/rootfs-$version
    log "rootfs version $version ($kind)"
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,usr/lib/keel-test,etc/keel,lib/modules,proc,sys,dev,run,tmp,data,boot/config0,boot/config1}
    cp /bin/busybox "$dir/bin/busybox"
    local app
    for app in $(busybox --list-full); do
        [ -e "$dir/$app" ] || [ -L "$dir/$app" ] || ln -s /bin/busybox "$dir/$app"
    done
    rm -f "$dir/sbin/init"
    if [ "$kind" = good ]; then
        cp "$here/guest/rootfs-init" "$dir/sbin/init"
    else
        cp "$here/guest/bad-init" "$dir/sbin/init"
    fi
    cp "$here/guest/step" "$dir/usr/lib/keel-test/step"
    copy_modules "$dir/lib/modules" watchdog-load-order lpc_ich iTCO_wdt
    cp "$agent_bin" "$dir/usr/bin/keel-agent"
    local lib
    for lib in $agent_libs; do
        mkdir -p "$dir/$(dirname "$lib")"
        cp -L "$lib" "$dir/$lib"
    done
    cp "$work/signer.pem" "$dir/etc/keel/trusted.pem"
    cat > "$dir/etc/keel/agent.toml" <<EOF
# keel-agent configuration of the qemu test image (see docs/agent.md).
state_dir = "/data/keel"
trusted_certs = "/etc/keel/trusted.pem"
detect = "cmdline"
$ddi_top

[bootloader]
type = "ebg"
env = ["/boot/config0/BGENV.DAT", "/boot/config1/BGENV.DAT"]
watchdog_sec = $watchdog_sec

[slots.A]
targets = { rootfs = "/dev/vda4" }
cmdline_token = "keel.slot=A"
kernelfile = "$kernel_a"
kernelparams = "$params_a"

[slots.B]
targets = { rootfs = "/dev/vda5" }
cmdline_token = "keel.slot=B"
kernelfile = "$kernel_b"
kernelparams = "$params_b"
$ddi_table
EOF
    echo "$version" > "$dir/etc/keel-test-version"
    rm -f "$image"
    mke2fs -q -t ext4 -L "rootfs-v$version" -d "$dir" "$image" "${rootfs_mib}M" >/dev/null
}

make_rootfs 1 good "$work/rootfs-1.ext4"
make_rootfs 2 good "$work/rootfs-2.ext4"
make_rootfs 3 bad "$work/rootfs-3.ext4"

# --- Bundles: signed .swu built by `keel bundle create` ----------------------------------------
# make_bundle N VERSION IMAGE
make_bundle() {
    local n=$1 version=$2 image=$3
    cat > "$work/update-$n.toml" <<EOF
[software]
version = "$version"
description = "keel qemu test rootfs version $version"

[[software.images]]
filename = "rootfs.ext4"
source = "$(basename "$image")"
device = "rootfs"
type = "raw"
EOF
    "$keel_bin" bundle create -m "$work/update-$n.toml" --cert "$work/signer.pem" \
        --key "$work/signer.key" -o "$work/update-$n.swu" >/dev/null
}
log "bundles"
make_bundle 1 2.0.0 "$work/rootfs-2.ext4"
make_bundle 2 3.0.0 "$work/rootfs-3.ext4"

# --- Data partition ------------------------------------------------------------------------------
data=$work/data
mkdir -p "$data/updates" "$data/scenario" "$data/keel"
cp "$work/update-1.swu" "$data/updates/"
if [ -n "${DDI_URL:-}" ]; then
    rm -rf "$out/ddi"
    mkdir -p "$out/ddi"
    cp "$work/update-2.swu" "$out/ddi/"
    printf 'update-1.swu\nddi\n' > "$data/scenario/queue"
elif [ -n "${HTTP_BASE:-}" ]; then
    rm -rf "$out/http"
    mkdir -p "$out/http"
    cp "$work/update-2.swu" "$out/http/"
    printf 'update-1.swu\n%s/update-2.swu\n' "$HTTP_BASE" > "$data/scenario/queue"
else
    cp "$work/update-2.swu" "$data/updates/"
    printf 'update-1.swu\nupdate-2.swu\n' > "$data/scenario/queue"
fi
if [ -n "${SCENARIO_QUEUE:-}" ]; then
    printf '%s\n' "$SCENARIO_QUEUE" > "$data/scenario/queue"
fi

# --- FAT partitions ------------------------------------------------------------------------------
# make_fat IMAGE LABEL MiB
make_fat() {
    rm -f "$1"
    truncate -s "${3}M" "$1"
    mkfs.vfat -n "$2" "$1" >/dev/null
}
log "ESP and config partitions"
make_fat "$work/esp.img" ESP 16
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$ebg_efi" ::/EFI/BOOT/BOOTX64.EFI

# make_config IMAGE LABEL REVISION KERNELFILE PARAMS CMDLINE
make_config() {
    make_fat "$1" "$2" 32
    rm -f "$work/BGENV.DAT"
    bg_setenv -f "$work/BGENV.DAT" -r "$3" -k "$4" -a "$5" -s OK -w "$watchdog_sec" >/dev/null
    mcopy -i "$1" "$work/BGENV.DAT" ::/BGENV.DAT
    # EFILABEL (UTF-16LE) is the label the C:<label>:<file> form of kernelfile refers to.
    printf '%s' "$2" | iconv -f ascii -t UTF-16LE > "$work/EFILABEL"
    mcopy -i "$1" "$work/EFILABEL" ::/EFILABEL
    if [ "$boot_format" = uki ]; then
        rm -f "$work/linux.efi"
        bg_gen_unified_kernel --cmdline "$6" --initrd "$work/initrd.img" \
            "$ebg_stub" "$vmlinuz" "$work/linux.efi"
        mcopy -i "$1" "$work/linux.efi" ::/linux.efi
    else
        mcopy -i "$1" "$vmlinuz" ::/vmlinuz
        mcopy -i "$1" "$work/initrd.img" ::/initrd.img
    fi
}
# Slot A is the newest (revision 2): it boots first; B holds the same factory version.
make_config "$work/boot0.img" BOOT0 2 "$kernel_a" "$params_a" "$cmdline_a"
make_config "$work/boot1.img" BOOT1 1 "$kernel_b" "$params_b" "$cmdline_b"

# --- GPT disk ------------------------------------------------------------------------------------
log "GPT disk"
disk=$out/disk.img
rm -f "$disk"
start=2048
script="label: gpt"$'\n'"unit: sectors"$'\n'
declare -A part_start
for entry in "${layout[@]}"; do
    read -r name mib type <<<"$entry"
    sectors=$((mib * 2048))
    script+="start=$start, size=$sectors, type=$type, name=\"$name\""$'\n'
    part_start[$name]=$start
    start=$((start + sectors))
done
truncate -s $(((start + 2048) * 512)) "$disk"
sfdisk --quiet "$disk" <<<"$script"

mke2fs -q -t ext4 -L data -d "$data" "$work/data.ext4" 96M >/dev/null

place() { dd if="$2" of="$disk" bs=512 seek="${part_start[$1]}" conv=notrunc,sparse status=none; }
place ESP "$work/esp.img"
place BOOT0 "$work/boot0.img"
place BOOT1 "$work/boot1.img"
place rootA "$work/rootfs-1.ext4"
place rootB "$work/rootfs-1.ext4"
place data "$work/data.ext4"

# Offsets for mtools (`mcopy -i disk.img@@OFFSET`) used by run-scenario.sh to read BGENV.DAT back.
{
    echo "boot0_offset=$((part_start[BOOT0] * 512))"
    echo "boot1_offset=$((part_start[BOOT1] * 512))"
    echo "rootA_offset=$((part_start[rootA] * 512))"
    echo "rootB_offset=$((part_start[rootB] * 512))"
    echo "data_offset=$((part_start[data] * 512))"
    echo "boot_bytes=$((32 * 1024 * 1024))"
    echo "root_bytes=$((32 * 1024 * 1024))"
    echo "data_bytes=$((96 * 1024 * 1024))"
    echo "rootfs_bytes=$((rootfs_mib * 1024 * 1024))"
    echo "kernel=$kernel_pkg"
    echo "watchdog_sec=$watchdog_sec"
    echo "boot_format=$boot_format"
    echo "kernel_a=$kernel_a"
    echo "kernel_b=$kernel_b"
} > "$out/disk.env"
log "done: $disk ($(du -h --apparent-size "$disk" | cut -f1)), kernel $kernel_pkg, $boot_format"
