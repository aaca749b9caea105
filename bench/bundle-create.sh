#!/usr/bin/env bash
# `keel bundle create` vs the hand-made peer pipeline (sha256sum + openssl cms -sign + GNU
# cpio -H crc; plus openssl enc for the encrypted case) on one image of SIZE_MIB (default 1024).
# Reports wall time, the keel/peer ratio and keel's peak RSS; checks that keel verifies both.
# Usage: bench/bundle-create.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/keel-bundle-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build -q --release -p keel-cli
KEEL=$PWD/target/release/keel
cd "$WORK"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > rootfs.img
openssl req -x509 -nodes -days 30 -newkey rsa:3072 -subj /CN=bench -addext keyUsage=digitalSignature \
    -addext extendedKeyUsage=emailProtection -keyout key.pem -out cert.pem 2>/dev/null
KEY_HEX=$(openssl rand -hex 32); IV_HEX=$(openssl rand -hex 16)
echo "$KEY_HEX $IV_HEX" > aes.key
printf '[software]\nversion = "1"\nhardware-compatibility = ["1.0"]\n[[software.images]]\nfilename = "rootfs.img"\ndevice = "/dev/sda2"\ntype = "raw"\n' > plain.toml
sed 's/type = "raw"/type = "raw"\nencrypted = true/' plain.toml > enc.toml

now() { date +%s.%N; }
timed() { local s; s=$(now); "$@" >/dev/null; echo "$(now) - $s" | bc; }

peer_plain() {
    local sha; sha=$(sha256sum rootfs.img | cut -d' ' -f1)
    printf 'software = { version = "1"; hardware-compatibility = [ "1.0" ]; images = ( { filename = "rootfs.img"; device = "/dev/sda2"; type = "raw"; sha256 = "%s"; } ); };\n' "$sha" > sw-description
    openssl cms -sign -in sw-description -out sw-description.sig -signer cert.pem -inkey key.pem -outform DER -nosmimecap -binary
    printf 'sw-description\nsw-description.sig\nrootfs.img\n' | cpio -o -H crc --quiet > peer.swu
}
peer_enc() {
    openssl enc -aes-256-cbc -in rootfs.img -out rootfs.enc -K "$KEY_HEX" -iv "$IV_HEX"
    local sha; sha=$(sha256sum rootfs.enc | cut -d' ' -f1)
    printf 'software = { version = "1"; hardware-compatibility = [ "1.0" ]; images = ( { filename = "rootfs.enc"; device = "/dev/sda2"; type = "raw"; encrypted = true; sha256 = "%s"; } ); };\n' "$sha" > sw-description
    openssl cms -sign -in sw-description -out sw-description.sig -signer cert.pem -inkey key.pem -outform DER -nosmimecap -binary
    printf 'sw-description\nsw-description.sig\nrootfs.enc\n' | cpio -o -H crc --quiet > peer-enc.swu
    rm -f rootfs.enc
}

sync
t_keel=$(timed /usr/bin/time -v -o time-plain.txt "$KEEL" bundle create -m plain.toml -o keel.swu --cert cert.pem --key key.pem)
t_peer=$(timed peer_plain)
t_keel_enc=$(timed /usr/bin/time -v -o time-enc.txt "$KEEL" bundle create -m enc.toml -o keel-enc.swu --cert cert.pem --key key.pem --aes-key aes.key)
t_peer_enc=$(timed peer_enc)
"$KEEL" bundle verify keel.swu --cert cert.pem >/dev/null
"$KEEL" bundle verify peer.swu --cert cert.pem >/dev/null
"$KEEL" bundle verify peer-enc.swu --cert cert.pem >/dev/null
rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
t_verify=$(timed "$KEEL" bundle verify keel.swu --cert cert.pem)

echo "image: ${SIZE_MIB} MiB random, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
printf 'signed:    keel %6.1f s (peak RSS %s KiB)   peer %6.1f s   keel/peer %.2f\n' "$t_keel" "$(rss time-plain.txt)" "$t_peer" "$(echo "$t_keel / $t_peer" | bc -l)"
printf 'encrypted: keel %6.1f s (peak RSS %s KiB)   peer %6.1f s   keel/peer %.2f\n' "$t_keel_enc" "$(rss time-enc.txt)" "$t_peer_enc" "$(echo "$t_keel_enc / $t_peer_enc" | bc -l)"
printf 'verify:    keel %6.1f s (%.0f MiB/s)\n' "$t_verify" "$(echo "$SIZE_MIB / $t_verify" | bc -l)"
