#!/bin/bash
# build-initramfs.sh - the initramfs the pciplug end-to-end tests boot.
#
#   build-initramfs.sh [-o OUT.cpio.gz] [PCIPLUG_BINARY]
#
# Contents: static busybox and its applet links, PCIPLUG_BINARY as /bin/pciplug
# (must be statically linked; stripped on the way in), the kernel modules the
# scenarios need with everything they depend on (from modules.dep, in load order,
# decompressed), and guest-init.sh as /init. Without PCIPLUG_BINARY the image can
# only run `run.py --smoke`.
#
# The kernel comes from setup.sh ($PCIPLUG_E2E_KERNEL_CACHE/kernel.env).
# OUT defaults to $PCIPLUG_E2E_DIR/initramfs.cpio.gz (<repo>/target/e2e/...).
#
# For arm64, point PCIPLUG_E2E_KERNEL_CACHE at setup-arm64.sh's kernel cache: its
# kernel.env also names the arm64 busybox (BUSYBOX=). A busybox that cannot run on
# this host makes its applet links itself in the guest (/init runs
# `busybox --install -s`), and PCIPLUG_BINARY must be for the same machine as busybox.
#
# The binary the tests expect is built with
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
# (the explicit --target keeps RUSTFLAGS away from build scripts and proc macros).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
E2E_DIR=${PCIPLUG_E2E_DIR:-$REPO/target/e2e}
KCACHE=${PCIPLUG_E2E_KERNEL_CACHE:-$E2E_DIR/kernel}
OUT=$E2E_DIR/initramfs.cpio.gz

usage() { echo "usage: $0 [-o OUT.cpio.gz] [PCIPLUG_BINARY]" >&2; exit 2; }
die() { printf 'build-initramfs: error: %s\n' "$*" >&2; exit 1; }
while getopts "o:h" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
PCIPLUG=${1:-}

[ -s "$KCACHE/kernel.env" ] || die "no $KCACHE/kernel.env: run tests/e2e/setup.sh first"
# shellcheck disable=SC1091
. "$KCACHE/kernel.env"
BUSYBOX=${BUSYBOX:-/bin/busybox}
MODDIR=$KROOT/lib/modules/$KVER
[ -s "$MODDIR/modules.dep" ] || die "no $MODDIR/modules.dep"

is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter' && LC_ALL=C readelf -h "$1" >/dev/null 2>&1; }
is_static "$BUSYBOX" || die "$BUSYBOX is not a static ELF binary (apt-get install busybox-static)"
elf_machine() { LC_ALL=C readelf -h "$1" | sed -n 's/^ *Machine: *//p'; }
if [ -n "$PCIPLUG" ]; then
	[ -x "$PCIPLUG" ] || die "$PCIPLUG is not an executable"
	is_static "$PCIPLUG" || die "$PCIPLUG is dynamically linked; build it with RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu"
	[ "$(elf_machine "$PCIPLUG")" = "$(elf_machine "$BUSYBOX")" ] ||
		die "$PCIPLUG is for $(elf_machine "$PCIPLUG"), but the guest ($BUSYBOX) is $(elf_machine "$BUSYBOX")"
fi
# Built into the kernel, or the guest cannot be driven at all: PCIe port services with
# native hot-plug (pciehp) and, on arm64 virt, the ECAM host bridge and the PL011 UARTs.
KCONFIG=$KROOT/boot/config-$KVER
if [ -f "$KCONFIG" ]; then
	NEED_Y="CONFIG_PCIEPORTBUS CONFIG_HOTPLUG_PCI_PCIE"
	case $(elf_machine "$BUSYBOX") in
	AArch64) NEED_Y="$NEED_Y CONFIG_PCI_HOST_GENERIC CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE" ;;
	esac
	for c in $NEED_Y; do
		grep -qx "$c=y" "$KCONFIG" || die "$KVER does not have $c=y (see $KCONFIG)"
	done
fi

# Modules the scenarios load, by module name ('-' and '_' are the same). All of
# them are modules (=m) in Debian's kernel; one that is built in is skipped.
WANTED="virtio_pci virtio_blk virtio_net virtio_scsi sd_mod nvme"
# virtio-pmem (scenarios_storage.py): the device's driver and the pmem block driver on its
# nd bus (libnvdimm, nd_btt and dax come with them).
WANTED="$WANTED virtio_pmem nd_pmem"
# Crypto providers that crc-t10dif / crc64-rocksoft look up by name (modprobe would load them
# through modules.softdep); without them those libraries fall back to their generic code.
OPTIONAL="crct10dif_generic crc64_rocksoft_generic"

# PCI functions without a block or net child (issue 13): virtio-rng (its function is bound
# by virtio-pci either way; virtio_rng binds the virtioN child, as in the recordings) and
# VFIO: vfio-pci (with vfio, vfio_pci_core, vfio_virqfd, irqbypass) and the type1 IOMMU
# backend, which nothing requests by name. None of them binds a device by itself.
WANTED="$WANTED virtio_rng vfio_pci vfio_iommu_type1"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pciplug-initramfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,etc,lib/modules}

# --- modules, dependencies first (depth-first over modules.dep) ---------------------
declare -A DEPS FILE SEEN
while IFS= read -r line; do
	f=${line%%:*}
	n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
	FILE[$n]=$f
	DEPS[$n]=${line#*:}
done < "$MODDIR/modules.dep"
ORDER=()
visit() {
	local m=$1 d n
	[ -n "${SEEN[$m]:-}" ] && return 0
	SEEN[$m]=1
	for d in ${DEPS[$m]}; do
		n=${d##*/}; n=${n%%.ko*}; visit "${n//-/_}"
	done
	ORDER+=("$m")
}
for m in $WANTED; do
	m=${m//-/_}
	if [ -n "${FILE[$m]:-}" ]; then
		visit "$m"
	elif grep -Eq "/${m//_/[-_]}\.ko" "$MODDIR/modules.builtin" 2>/dev/null; then
		echo "build-initramfs: $m is built into $KVER"
	else
		die "module $m is neither in $MODDIR/modules.dep nor built in"
	fi
done
for m in $OPTIONAL; do
	[ -n "${FILE[$m]:-}" ] && visit "$m"
done
: > "$ROOT/etc/modules.order"
for m in "${ORDER[@]}"; do
	src=$MODDIR/${FILE[$m]}
	dst=$ROOT/lib/modules/$m.ko
	case $src in
	*.ko.xz) xz -dc "$src" > "$dst" ;;
	*.ko.zst) zstd -qdc "$src" > "$dst" ;;
	*.ko.gz) gzip -dc "$src" > "$dst" ;;
	*.ko) cp "$src" "$dst" ;;
	*) die "unexpected module file $src" ;;
	esac
	echo "$m" >> "$ROOT/etc/modules.order"
done

# --- busybox, pciplug, /init ------------------------------------------------------------
cp "$BUSYBOX" "$ROOT/bin/busybox"
if APPLETS=$("$BUSYBOX" --list 2>/dev/null) && [ -n "$APPLETS" ]; then
	for a in $APPLETS; do
		# No modprobe: nothing in the guest should load modules behind the test's back.
		case $a in busybox|modprobe) continue ;; esac
		ln -s busybox "$ROOT/bin/$a"
	done
else
	# a foreign busybox (arm64 on an x86 host): /init makes the links, then removes modprobe
	touch "$ROOT/etc/busybox-install"
fi
ln -s bin "$ROOT/sbin"
if [ -n "$PCIPLUG" ]; then
	# the host's strip knows only its own machine; a cross strip (binutils-aarch64-linux-gnu)
	# is used when there is one, else the binary goes in as it is
	case $(elf_machine "$PCIPLUG") in
	AArch64) STRIP=aarch64-linux-gnu-strip ;;
	*) STRIP=strip ;;
	esac
	if ! { command -v "$STRIP" >/dev/null && "$STRIP" -o "$ROOT/bin/pciplug" "$PCIPLUG" 2>/dev/null; }; then
		echo "build-initramfs: no $STRIP here: $PCIPLUG goes in unstripped"
		cp "$PCIPLUG" "$ROOT/bin/pciplug"
	fi
	chmod 755 "$ROOT/bin/pciplug"
	sha256sum "$PCIPLUG" | cut -d' ' -f1 > "$ROOT/etc/pciplug.sha256"
fi
install -m 755 "$HERE/guest-init.sh" "$ROOT/init"
echo "$KVER" > "$ROOT/etc/kver"

mkdir -p "$(dirname "$OUT")"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --owner=0:0 --reproducible --quiet) | gzip -6 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "build-initramfs: wrote $OUT ($(stat -c %s "$OUT") bytes): kernel $KVER ($KERNEL_PKG $KERNEL_PKG_VERSION)," \
	"${#ORDER[@]} modules (${ORDER[*]}), pciplug: ${PCIPLUG:-none (smoke only)}"
