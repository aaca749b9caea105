#!/usr/bin/env bash
# Builds the Debian packages keel-agent, keel-server and keel (the CLI) into target/debian/:
#
#   keel-agent   /usr/bin/keel-agent (profile `agent`, as shipped), keel-agent.service,
#                keel-confirm.service, keel-media@.service + its udev rule (updates from USB
#                sticks and SD cards), /etc/keel/agent.toml (conffile), state in /var/lib/keel
#   keel-server  /usr/bin/keel-server, keel-server.service (system user keel-server, created by
#                systemd-sysusers), /etc/keel/server.env (conffile), state in /var/lib/keel-server
#   keel         /usr/bin/keel
#
# each with a man page (help2man, from --help), bash/zsh/fish completions, copyright and
# changelog; then runs lintian (which must report no error and no warning: the tags it may
# still report are listed below with the reason) and `systemd-analyze verify` on the units.
#
# usage: scripts/package.sh            (builds the binaries first)
# env:   KEEL_PACKAGE_NO_BUILD=1       package the binaries already in target/release, target/agent
#        KEEL_PACKAGE_PROFILE=debug    package the test build's binaries (target/debug): how CI
#                                      checks the packaging without a second, optimised build
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/target/debian
say() { echo "package: $*" >&2; }
die() { echo "package: error: $*" >&2; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps help2man lintian systemd-analyze gzip strip; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-debian.sh)"
done
version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"
arch=$(dpkg --print-architecture)
maintainer="keel developers <keel@example.org>"

profile=${KEEL_PACKAGE_PROFILE:-release}
if [ "$profile" = debug ]; then
    [ "${KEEL_PACKAGE_NO_BUILD:-0}" = 1 ] || cargo build --locked --quiet -p keel-cli -p keel-server -p keel-agent
    dir=$repo/target/debug agent_dir=$repo/target/debug
else
    if [ "${KEEL_PACKAGE_NO_BUILD:-0}" != 1 ]; then
        say "building keel and keel-server (release), keel-agent (profile agent)"
        cargo build --locked --quiet --release -p keel-cli -p keel-server
        cargo build --locked --quiet --profile agent -p keel-agent
    fi
    dir=$repo/target/release agent_dir=$repo/target/agent
fi
declare -A binary=(
    [keel]=$dir/keel
    [keel-server]=$dir/keel-server
    [keel-agent]=$agent_dir/keel-agent
)
for name in "${!binary[@]}"; do [ -x "${binary[$name]}" ] || die "${binary[$name]} missing"; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out"

# stage PACKAGE BINARY SUMMARY: the common part of every package.
stage() {
    local pkg=$1 name=$2 summary=$3 root=$work/$1
    install -D -m 0755 "${binary[$name]}" "$root/usr/bin/$name"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$name"
    mkdir -p "$root/usr/share/man/man1"
    help2man --no-info --no-discard-stderr --version-string="$version" --name="$summary" \
        "$root/usr/bin/$name" | gzip -9n > "$root/usr/share/man/man1/$name.1.gz"
    local bash_dir=$root/usr/share/bash-completion/completions
    local zsh_dir=$root/usr/share/zsh/vendor-completions fish_dir=$root/usr/share/fish/vendor_completions.d
    mkdir -p "$bash_dir" "$zsh_dir" "$fish_dir"
    if [ "$name" = keel-agent ]; then
        # keel-agent parses its small command line without clap (a lean binary): hand-written.
        install -m 0644 packaging/completions/keel-agent.bash "$bash_dir/keel-agent"
        install -m 0644 packaging/completions/keel-agent.zsh "$zsh_dir/_keel-agent"
        install -m 0644 packaging/completions/keel-agent.fish "$fish_dir/keel-agent.fish"
    else
        # KEEL_DATA_DIR satisfies keel-server's required option; nothing is opened.
        KEEL_DATA_DIR=/nonexistent "$root/usr/bin/$name" completions bash > "$bash_dir/$name"
        KEEL_DATA_DIR=/nonexistent "$root/usr/bin/$name" completions zsh > "$zsh_dir/_$name"
        KEEL_DATA_DIR=/nonexistent "$root/usr/bin/$name" completions fish > "$fish_dir/$name.fish"
    fi
    local doc=$root/usr/share/doc/$pkg
    mkdir -p "$doc"
    install -m 0644 packaging/debian/copyright "$doc/copyright"
    printf '%s (%s) unstable; urgency=medium\n\n  * Release %s (https://keel.example.org).\n\n -- %s  %s\n' \
        "$pkg" "$version" "$version" "$maintainer" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")" \
        | gzip -9n > "$doc/changelog.gz"
    mkdir -p "$root/DEBIAN"
}

# control PACKAGE DESCRIPTION-LINES...: DEBIAN/control with Depends from dpkg-shlibdeps.
control() {
    local pkg=$1 root=$work/$1; shift
    local shlibs
    mkdir -p "$work/shlibs/debian"
    printf 'Source: keel\n\nPackage: %s\nArchitecture: any\n' "$pkg" > "$work/shlibs/debian/control"
    shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$root"/usr/bin/* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    {
        echo "Package: $pkg"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
        [ -n "$shlibs" ] && echo "Depends: $shlibs"
        echo "Section: admin"
        echo "Priority: optional"
        echo "Homepage: https://keel.example.org"
        for line in "$@"; do echo "$line"; done
    } > "$root/DEBIAN/control"
}

# maintainer scripts enabling (and, on upgrade, restarting) UNITS, as debhelper would.
units_scripts() {
    local root=$1; shift
    local units="$*"
    cat > "$root/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ "\$1" = configure ] || [ "\$1" = abort-upgrade ]; then
    for unit in $units; do
        deb-systemd-helper unmask "\$unit" >/dev/null || true
        if deb-systemd-helper --quiet was-enabled "\$unit"; then
            deb-systemd-helper enable "\$unit" >/dev/null || true
        else
            deb-systemd-helper update-state "\$unit" >/dev/null || true
            deb-systemd-helper enable "\$unit" >/dev/null || true
        fi
    done
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # Restart what ran before the upgrade; a fresh install starts at the next boot (the
        # configuration is the integrator's to write first).
        if [ -n "\$2" ]; then deb-systemd-invoke try-restart $units >/dev/null || true; fi
    fi
fi
EOF
    cat > "$root/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "\$1" = remove ]; then
    deb-systemd-invoke stop $units >/dev/null || true
fi
EOF
    cat > "$root/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
if [ "\$1" = remove ] && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper mask $units >/dev/null || true
fi
if [ "\$1" = purge ] && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper purge $units >/dev/null || true
    deb-systemd-helper unmask $units >/dev/null || true
fi
EOF
    chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
}

# --- keel-agent
stage keel-agent keel-agent "install signed SWUpdate bundles into the inactive A/B slot"
root=$work/keel-agent
install -D -m 0644 packaging/systemd/keel-agent.service "$root/lib/systemd/system/keel-agent.service"
install -D -m 0644 packaging/systemd/keel-confirm.service "$root/lib/systemd/system/keel-confirm.service"
install -D -m 0644 packaging/systemd/keel-media@.service "$root/lib/systemd/system/keel-media@.service"
install -D -m 0644 packaging/udev/90-keel-media.rules "$root/lib/udev/rules.d/90-keel-media.rules"
install -D -m 0644 packaging/etc/agent.toml "$root/etc/keel/agent.toml"
echo /etc/keel/agent.toml > "$root/DEBIAN/conffiles"
units_scripts "$root" keel-confirm.service keel-agent.service
control keel-agent \
    "Recommends: efibootguard | libubootenv-tool | grub-common" \
    "Description: fail-safe A/B updates for industrial Linux devices (device agent)" \
    " keel-agent installs signed SWUpdate-compatible .swu bundles (raw, encrypted," \
    " compressed, delta and chunked images) from a file, standard input, HTTP or a" \
    " hawkBit DDI server into the inactive slot while streaming, verifies every byte" \
    " before activation, drives EFI Boot Guard, U-Boot or GRUB, and confirms a slot" \
    " after a healthy boot (keel-confirm.service) or reports the rollback."

# --- keel-server
stage keel-server keel-server "hawkBit-compatible update server with rollouts and TUF"
root=$work/keel-server
install -D -m 0644 packaging/systemd/keel-server.service "$root/lib/systemd/system/keel-server.service"
install -D -m 0644 packaging/sysusers/keel-server.conf "$root/usr/lib/sysusers.d/keel-server.conf"
install -D -m 0640 packaging/etc/server.env "$root/etc/keel/server.env"
echo /etc/keel/server.env > "$root/DEBIAN/conffiles"
units_scripts "$root" keel-server.service
# The system user must exist before the unit starts (postinst runs the snippet above after this).
# server.env may hold secrets (database password, S3 keys): readable by root and the service only.
sed -i 's|^set -e$|set -e\nif [ "$1" = configure ]; then systemd-sysusers keel-server.conf; chgrp keel-server /etc/keel/server.env; fi|' "$root/DEBIAN/postinst"
control keel-server \
    "Depends: systemd" \
    "Description: fail-safe A/B updates for industrial Linux devices (fleet server)" \
    " keel-server serves the hawkBit DDI device API (SWUpdate's suricatta and" \
    " keel-agent work against it), a management API and dashboard with tenants," \
    " roles and rollouts, and a TUF repository per tenant. SQLite and local files" \
    " by default; PostgreSQL and S3-compatible storage for several replicas."
# dpkg-shlibdeps' Depends and our own: merge into one field.
sed -i '/^Depends: systemd$/d; s/^Depends: \(.*\)$/Depends: \1, systemd/' "$root/DEBIAN/control"

# --- keel (CLI)
stage keel keel "build, sign and inspect update bundles, deltas, TUF and dm-verity"
control keel \
    "Description: fail-safe A/B updates for industrial Linux devices (command line)" \
    " keel builds, verifies and inspects SWUpdate-compatible .swu bundles (signed," \
    " encrypted, byte-reproducible), static and chunked deltas, TUF repositories and" \
    " dm-verity hash trees, and drives keel-server's management API."

for pkg in keel-agent keel-server keel; do
    (cd "$work/$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
        > "$work/$pkg/DEBIAN/md5sums"
    dpkg-deb --root-owner-group -Zxz --build "$work/$pkg" "$out/${pkg}_${version}_${arch}.deb" >/dev/null
done

# lintian: no error, no warning. The one tag suppressed, and why:
#   non-standard-file-perm on /etc/keel/server.env (0640, group keel-server): it may hold the
#     database password and S3 keys.
say "lintian"
lintian --fail-on error,warning --suppress-tags non-standard-file-perm \
    "$out"/*.deb

# systemd-analyze verify the units as installed: a root with the packages' files and the
# system's units (boot-complete.target, network-online.target, ...).
say "systemd-analyze verify"
vroot=$work/verify-root
mkdir -p "$vroot/usr/lib/systemd" "$vroot/usr/bin"
cp -a /usr/lib/systemd/system "$vroot/usr/lib/systemd/"
ln -s usr/bin "$vroot/bin"               # merged /usr, as on Debian 12
cp /usr/bin/kill "$vroot/usr/bin/kill"  # for keel-server.service's ExecReload (package procps)
cp /usr/bin/mount /usr/bin/umount "$vroot/usr/bin/"   # keel-media@.service
for pkg in keel-agent keel-server; do dpkg-deb -x "$out/${pkg}_${version}_${arch}.deb" "$vroot"; done
cp "$vroot"/lib/systemd/system/keel-*.service "$vroot/usr/lib/systemd/system/"
systemd-analyze verify --man=no --root="$vroot" keel-agent.service keel-confirm.service keel-server.service \
    keel-media@sdb1.service

ls -l "$out"
say "packages in target/debian/"
