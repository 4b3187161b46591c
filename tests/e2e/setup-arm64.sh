#!/bin/bash
# setup-arm64.sh - host side of the arm64 end-to-end tests (Debian, as root, no stdin).
#
# Installs qemu-system-arm (it has qemu-system-aarch64), cpio, binutils and
# binutils-aarch64-linux-gnu (for aarch64-linux-gnu-strip) on the host,
# and fetches (apt-get download) and unpacks (dpkg -x, never installs) the Debian arm64
# kernel image and busybox-static:arm64 into a cache that outlives the clone.
# Idempotent: with everything in place it does no network access at all.
#
# Environment (all optional):
#   PCIPLUG_E2E_ARM64_CACHE   cache dir (default: /var/cache/pciplug/e2e-arm64)
#   PCIPLUG_E2E_KERNEL_CACHE  the x86 kernel cache of setup.sh (default <repo>/target/e2e/kernel):
#                             when its kernel.env is there, the arm64 kernel takes the same ABI
#   PCIPLUG_E2E_ARM64_KERNEL_PKG  the arm64 kernel package to use instead of the resolved one
#   PCIPLUG_E2E_QEMU_FROM     auto (default) | backports | release, as in setup.sh
#
# Writes $PCIPLUG_E2E_ARM64_CACHE/kernel/kernel.env (KERNEL_PKG, KERNEL_PKG_VERSION, KVER,
# KROOT, VMLINUZ, BUSYBOX, BUSYBOX_PKG_VERSION) in the format of setup.sh's, so that
# build-initramfs.sh and run.py read it the same way (PCIPLUG_E2E_KERNEL_CACHE pointed there).
#
# The host's dpkg architectures are never changed (no `dpkg --add-architecture`): the arm64
# packages are downloaded through a private APT config with arm64 in APT::Architectures and
# an empty dpkg status of its own, and only unpacked. QEMU comes from <codename>-backports
# for the reasons setup.sh gives (QEMU 10's NVMe multipath subsystem; qemu-utils 10 breaks
# the release's qemu-system-common 7.2), through a second private APT config with the
# host's status. Nothing in /etc/apt is changed. apt waits for a lock held by another run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
E2E_DIR=${PCIPLUG_E2E_DIR:-$REPO/target/e2e}
CACHE=${PCIPLUG_E2E_ARM64_CACHE:-/var/cache/pciplug/e2e-arm64}
X86_KCACHE=${PCIPLUG_E2E_KERNEL_CACHE:-$E2E_DIR/kernel}
QEMU_FROM=${PCIPLUG_E2E_QEMU_FROM:-auto}
KCACHE=$CACHE/kernel
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -o DPkg::Lock::Timeout=600)

log() { printf 'setup-arm64: %s\n' "$*" >&2; }
die() { printf 'setup-arm64: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tests/e2e/apt-lib.sh
. "$HERE/apt-lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (it installs packages)"
command -v apt-get >/dev/null || die "not a Debian system (no apt-get)"
T0=$(date +%s.%N)
mkdir -p "$CACHE"

# --- two private APT configs over the system's sources + <codename>-backports ------------
# shellcheck disable=SC1091
. /etc/os-release
CODENAME=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
debian_mirror

HOST_APT=$CACHE/apt-host
ARM_APT=$CACHE/apt-arm64
declare -A UPDATED
apt_update_once() {   # apt_update_once CONFIG_DIR
	[ -n "${UPDATED[$1]:-}" ] && return 0
	log "apt-get update (private config $1/apt.conf)"
	APT_CONFIG=$1/apt.conf "${APT[@]}" update || log "apt-get update reported errors (continuing)"
	UPDATED[$1]=1
}

# --- host packages -------------------------------------------------------------------------
PKGS=()
command -v qemu-system-aarch64 >/dev/null || PKGS+=(qemu-system-arm)
command -v cpio >/dev/null || PKGS+=(cpio)
command -v readelf >/dev/null || PKGS+=(binutils)
# the host's strip knows only x86; this one strips the aarch64 pciplug (9 MB -> about 2 MB)
command -v aarch64-linux-gnu-strip >/dev/null || PKGS+=(binutils-aarch64-linux-gnu)
command -v xz >/dev/null || PKGS+=(xz-utils)
command -v zstd >/dev/null || PKGS+=(zstd)
if [ ${#PKGS[@]} -gt 0 ]; then
	apt_config "$HOST_APT" host
	apt_update_once "$HOST_APT"
	export APT_CONFIG=$HOST_APT/apt.conf
	TARGET=()
	if [[ " ${PKGS[*]} " == *" qemu-system-arm "* ]]; then
		qemu_suite qemu-system-arm
	fi
	log "installing: ${PKGS[*]} ${TARGET[*]}"
	"${APT[@]}" install -y --no-install-recommends "${TARGET[@]}" "${PKGS[@]}"
	unset APT_CONFIG
fi
log "qemu: $(qemu-system-aarch64 --version | head -1) ($(dpkg-query -W -f='${Version}' qemu-system-arm 2>/dev/null || echo 'not from dpkg'))"

# --- which arm64 kernel: the x86 kernel's ABI when setup.sh has run ----------------------------
WANT_ABI=
if [ -s "$X86_KCACHE/kernel.env" ]; then
	WANT_ABI=$(sed -n 's/^KVER=\(.*\)-amd64$/\1/p' "$X86_KCACHE/kernel.env")
fi
KENV=$KCACHE/kernel.env
cache_ok() {
	[ -s "$KENV" ] || return 1
	# shellcheck disable=SC1090
	( . "$KENV"; [ -f "$VMLINUZ" ] && [ -s "$KROOT/lib/modules/$KVER/modules.dep" ] && [ -x "$BUSYBOX" ] && \
		{ [ -z "${PCIPLUG_E2E_ARM64_KERNEL_PKG:-}" ] || [ "$PCIPLUG_E2E_ARM64_KERNEL_PKG" = "$KERNEL_PKG" ]; } && \
		{ [ -z "$WANT_ABI" ] || [ "$KVER" = "$WANT_ABI-arm64" ]; } )
}
if cache_ok; then
	# shellcheck disable=SC1090
	log "arm64 kernel and busybox already unpacked: $(. "$KENV"; echo "$KERNEL_PKG $KERNEL_PKG_VERSION, busybox-static $BUSYBOX_PKG_VERSION")"
else
	apt_config "$ARM_APT" foreign
	apt_update_once "$ARM_APT"
	export APT_CONFIG=$ARM_APT/apt.conf
	candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/{print $2}'; }
	has() { local v; v=$(candidate "$1"); [ -n "$v" ] && [ "$v" != "(none)" ]; }
	KPKG=${PCIPLUG_E2E_ARM64_KERNEL_PKG:-}
	if [ -z "$KPKG" ] && [ -n "$WANT_ABI" ]; then
		for p in "linux-image-$WANT_ABI-arm64-unsigned" "linux-image-$WANT_ABI-arm64"; do
			if has "$p:arm64"; then KPKG=$p; break; fi
		done
		[ -n "$KPKG" ] || log "no arm64 kernel of the x86 kernel's ABI $WANT_ABI: taking linux-image-arm64's"
	fi
	if [ -z "$KPKG" ]; then
		KPKG=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
		KPKG=${KPKG%:arm64}
		[ -n "$KPKG" ] || die "cannot resolve linux-image-arm64 to a kernel image package"
		if has "$KPKG-unsigned:arm64"; then KPKG=$KPKG-unsigned; fi
	fi
	KPKG_VERSION=$(candidate "$KPKG:arm64")
	BB_VERSION=$(candidate busybox-static:arm64)
	{ [ -n "$KPKG_VERSION" ] && [ "$KPKG_VERSION" != "(none)" ]; } || die "no candidate for $KPKG:arm64"
	{ [ -n "$BB_VERSION" ] && [ "$BB_VERSION" != "(none)" ]; } || die "no candidate for busybox-static:arm64"
	log "arm64 kernel: $KPKG $KPKG_VERSION; busybox-static:arm64 $BB_VERSION"
	DEBS=$CACHE/debs
	rm -rf "$DEBS" "$KCACHE" "$CACHE/busybox"
	mkdir -p "$DEBS" "$KCACHE"
	(cd "$DEBS" && "${APT[@]}" download "$KPKG:arm64=$KPKG_VERSION" "busybox-static:arm64=$BB_VERSION")
	for d in "$DEBS"/*.deb; do log "unpacking $(basename "$d") ($(du -h "$d" | cut -f1))"; done
	dpkg -x "$DEBS"/linux-image-*_arm64.deb "$KCACHE/root"
	dpkg -x "$DEBS"/busybox-static_*_arm64.deb "$CACHE/busybox"
	rm -rf "$DEBS"
	unset APT_CONFIG
	KVER=$(ls -1 "$KCACHE/root/lib/modules" | sort -V | tail -1)
	VMLINUZ=$KCACHE/root/boot/vmlinuz-$KVER
	BUSYBOX=$CACHE/busybox/bin/busybox
	[ -f "$VMLINUZ" ] || die "no $VMLINUZ in $KPKG"
	[ -x "$BUSYBOX" ] || die "no $BUSYBOX in busybox-static:arm64"
	LC_ALL=C readelf -h "$BUSYBOX" | grep -q 'Machine:.*AArch64' || die "$BUSYBOX is not an AArch64 binary"
	# modules.dep is made by depmod at install time; this kernel is only unpacked. depmod only
	# reads the module files, so the host's works for a foreign architecture.
	if command -v depmod >/dev/null; then depmod -b "$KCACHE/root" "$KVER"; else /bin/busybox depmod -b "$KCACHE/root" "$KVER"; fi
	cat > "$KENV.tmp" <<EOF
# written by tests/e2e/setup-arm64.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)
ARCH=aarch64
KERNEL_PKG=$KPKG
KERNEL_PKG_VERSION=$KPKG_VERSION
KVER=$KVER
KROOT=$KCACHE/root
VMLINUZ=$VMLINUZ
BUSYBOX=$BUSYBOX
BUSYBOX_PKG_VERSION=$BB_VERSION
EOF
	mv "$KENV.tmp" "$KENV"
fi
cat "$KENV" >&2
T1=$(date +%s.%N)
log "done in $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s"
