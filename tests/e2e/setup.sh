#!/bin/bash
# setup.sh - host side of the pciplug end-to-end tests (Debian, as root, no stdin).
#
# Installs qemu-system-x86, busybox-static and cpio, and fetches (apt-get download)
# and unpacks (dpkg -x, never installs) the Debian kernel image the tests boot.
# Idempotent: a second run with everything in place does no network access at all,
# and `apt-get update` runs at most once per run.
#
# Environment (all optional):
#   PCIPLUG_E2E_DIR           work dir (default: <repo>/target/e2e)
#   PCIPLUG_E2E_KERNEL_CACHE  where the kernel is unpacked (default: $PCIPLUG_E2E_DIR/kernel);
#                             point it outside target/ to keep it across `cargo clean` / CI clones
#   PCIPLUG_E2E_KERNEL_PKG    kernel package to use instead of the resolved one
#   PCIPLUG_E2E_QEMU_FROM     auto (default) | backports | release, see "QEMU" below
#
# Writes $PCIPLUG_E2E_KERNEL_CACHE/kernel.env (KERNEL_PKG, KERNEL_PKG_VERSION, KVER,
# KROOT, VMLINUZ), which build-initramfs.sh and run.py read.
#
# QEMU comes from <codename>-backports when that suite has it (`auto`), as
# `-t <codename>-backports` so that only what must come from there does. Two reasons,
# both found on bookworm:
#  * bookworm's own qemu-system-x86 is 7.2, and its nvme device reports no
#    multi-controller subsystem, so the guest kernel makes no NVMe multipath head and
#    the scenarios about Debian's default native NVMe multipath (q35-nvme-multipath,
#    q35-coldplug) cannot pass with it; 10.0 (bookworm-backports) does. Every other
#    scenario passes with 7.2 too.
#  * the machines this project runs on already have qemu-utils 10.0 from
#    bookworm-backports, which `Breaks: qemu-system-common (<< 1:8.0)`: a plain
#    `apt-get install qemu-system-x86` there refuses (or would remove qemu-utils).
# The suite is added through a private APT_CONFIG under the work dir; nothing in
# /etc/apt is changed. `release` forces the release's QEMU (when it installs cleanly).
#
# Kernel: the candidate of the `linux-image-amd64` metapackage of the configured
# release (backports has priority 100 and never wins here), e.g.
# linux-image-6.1.0-56-amd64; its `-unsigned` twin is taken when it exists (same
# kernel and modules, no Secure Boot signature, which -kernel does not need).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
E2E_DIR=${PCIPLUG_E2E_DIR:-$REPO/target/e2e}
KCACHE=${PCIPLUG_E2E_KERNEL_CACHE:-$E2E_DIR/kernel}
QEMU_FROM=${PCIPLUG_E2E_QEMU_FROM:-auto}
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tests/e2e/apt-lib.sh
. "$HERE/apt-lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (it installs packages)"
command -v apt-get >/dev/null || die "not a Debian system (no apt-get)"
T0=$(date +%s.%N)

# --- private apt config: the system's sources + <codename>-backports ---------------
# shellcheck disable=SC1091
. /etc/os-release
CODENAME=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
APTDIR=$E2E_DIR/apt
debian_mirror
apt_config "$APTDIR" host
export APT_CONFIG=$APTDIR/apt.conf

UPDATED=0
apt_update_once() {
	[ "$UPDATED" = 1 ] && return 0
	log "apt-get update (private config $APT_CONFIG)"
	# A missing backports suite must not stop the release's packages.
	apt-get update -q || log "apt-get update reported errors (continuing; a missing backports suite is fine)"
	UPDATED=1
}

# --- packages --------------------------------------------------------------------------
have_static_busybox() {
	[ -x /bin/busybox ] && LC_ALL=C readelf -l /bin/busybox 2>/dev/null | grep -q 'Requesting program interpreter' && return 1
	[ -x /bin/busybox ]
}
PKGS=()
command -v qemu-system-x86_64 >/dev/null || PKGS+=(qemu-system-x86)
have_static_busybox || PKGS+=(busybox-static)
command -v cpio >/dev/null || PKGS+=(cpio)
# binutils for readelf/strip (build-initramfs.sh strips the binary), xz/zstd for compressed modules
command -v strip >/dev/null || PKGS+=(binutils)
command -v xz >/dev/null || PKGS+=(xz-utils)
command -v zstd >/dev/null || PKGS+=(zstd)

if [ ${#PKGS[@]} -gt 0 ]; then
	apt_update_once
	TARGET=()
	if [[ " ${PKGS[*]} " == *" qemu-system-x86 "* ]]; then
		qemu_suite qemu-system-x86
	fi
	log "installing: ${PKGS[*]} ${TARGET[*]}"
	apt-get install -y -q --no-install-recommends "${TARGET[@]}" "${PKGS[@]}"
fi
have_static_busybox || die "/bin/busybox is not statically linked (busybox-static did not replace busybox?)"
QEMU_VERSION=$(qemu-system-x86_64 --version | head -1)
log "qemu: $QEMU_VERSION ($(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || echo 'not from dpkg'))"

# --- kernel ------------------------------------------------------------------------------
mkdir -p "$KCACHE"
KENV=$KCACHE/kernel.env
kernel_ok() {
	[ -s "$KENV" ] || return 1
	# shellcheck disable=SC1090
	( . "$KENV"; [ -f "$VMLINUZ" ] && [ -s "$KROOT/lib/modules/$KVER/modules.dep" ] && \
		{ [ -z "${PCIPLUG_E2E_KERNEL_PKG:-}" ] || [ "$PCIPLUG_E2E_KERNEL_PKG" = "$KERNEL_PKG" ]; } )
}
if kernel_ok; then
	# shellcheck disable=SC1090
	log "kernel already unpacked: $(. "$KENV"; echo "$KERNEL_PKG $KERNEL_PKG_VERSION")"
else
	apt_update_once
	KPKG=${PCIPLUG_E2E_KERNEL_PKG:-}
	if [ -z "$KPKG" ]; then
		KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
		[ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 to a kernel image package"
		if apt-cache show "$KPKG-unsigned" >/dev/null 2>&1; then KPKG=$KPKG-unsigned; fi
	fi
	KPKG_VERSION=$(apt-cache policy "$KPKG" | awk '/Candidate:/{print $2}')
	if [ -z "$KPKG_VERSION" ] || [ "$KPKG_VERSION" = "(none)" ]; then die "no candidate for $KPKG"; fi
	log "kernel: $KPKG $KPKG_VERSION"
	DEBS=$KCACHE/debs
	rm -rf "$DEBS" "$KCACHE/root"
	mkdir -p "$DEBS"
	(cd "$DEBS" && apt-get download -q "$KPKG=$KPKG_VERSION")
	DEB=$(ls "$DEBS"/*.deb)
	log "unpacking $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"
	dpkg -x "$DEB" "$KCACHE/root"
	rm -rf "$DEBS"   # 70 MB; the unpacked tree is what is used
	KVER=$(ls -1 "$KCACHE/root/lib/modules" | sort -V | tail -1)
	VMLINUZ=$KCACHE/root/boot/vmlinuz-$KVER
	[ -f "$VMLINUZ" ] || die "no $VMLINUZ in $KPKG"
	# modules.dep is made by depmod when the package is installed; this one is only unpacked
	if command -v depmod >/dev/null; then depmod -b "$KCACHE/root" "$KVER"; else /bin/busybox depmod -b "$KCACHE/root" "$KVER"; fi
	cat > "$KENV.tmp" <<EOF
# written by tests/e2e/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL_PKG=$KPKG
KERNEL_PKG_VERSION=$KPKG_VERSION
KVER=$KVER
KROOT=$KCACHE/root
VMLINUZ=$VMLINUZ
EOF
	mv "$KENV.tmp" "$KENV"
fi
cat "$KENV" >&2
T1=$(date +%s.%N)
log "done in $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s"
