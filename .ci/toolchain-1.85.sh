#!/usr/bin/env bash
# toolchain-1.85.sh - prove rust-version with a real rustc 1.85, and build a static aarch64 pciplug.
#
#   bash .ci/toolchain-1.85.sh                  build + tests with rustc 1.85, then the aarch64 build
#   bash .ci/toolchain-1.85.sh --aarch64-only   only the static aarch64 build
#
# The toolchain is Debian 13 (trixie)'s own rustc/cargo 1.85, in a debootstrap chroot that also
# holds gcc, libc6-dev, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and libstd-rust-dev:arm64
# (arm64 is added as a dpkg architecture inside the chroot, never on the host). Runs as root.
#
# Cached outside the clone, under $PCIPLUG_TOOLCHAIN_CACHE (default /var/cache/pciplug):
#   trixie-rust/            the chroot; its .pciplug-stamp names what it holds. It is built in a
#                           temporary directory and renamed only when complete, and rebuilt when
#                           the stamp is missing or names something else (log: trixie-rust.log)
#   rust-1.85/cargo-home/   CARGO_HOME of the 1.85 builds (the crates.io index and sources)
#   rust-1.85/target/       their target directory; the static aarch64 binary is
#                           rust-1.85/target/aarch64-unknown-linux-gnu/release/pciplug
#
# Every mount (the bind-mounted clone, /proc, /sys, /dev, debootstrap's own) is made in a private
# mount namespace that this script re-executes itself into: it is never seen outside, it is gone
# when the script ends however it ends, and a trap unmounts it as well. The build and tests run
# after pivot_root into the chroot, not chroot(2): the kernel refuses a user namespace to a
# chrooted process, and the kernel tests re-run themselves under `unshare --user --net`.
#
# The Debian mirror is the host's own (its apt sources), or $PCIPLUG_DEBIAN_MIRROR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${PCIPLUG_TOOLCHAIN_CACHE:-/var/cache/pciplug}
ROOT=$CACHE/trixie-rust
LOG=$CACHE/trixie-rust.log
CARGO_CACHE=$CACHE/rust-1.85
SUITE=trixie
PACKAGES_HOST="rustc cargo gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross file util-linux mount ca-certificates"
PACKAGES_ARM64="libstd-rust-dev:arm64"
# What a good chroot holds; a chroot whose stamp differs is rebuilt. Change v1 to force a rebuild.
STAMP="v1 $SUITE minbase + $PACKAGES_HOST + arm64: $PACKAGES_ARM64"
AARCH64=aarch64-unknown-linux-gnu

mode=all
case ${1:-} in
'') ;;
--aarch64-only) mode=aarch64 ;;
-h | --help)
	sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "toolchain-1.85: unknown argument $1 (see --help)" >&2
	exit 2
	;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "toolchain-1.85: must run as root (debootstrap, mounts, pivot_root)" >&2
	exit 1
fi

# Into a private mount namespace, once: no mount made below is ever visible outside it.
if [ "${PCIPLUG_TOOLCHAIN_NS:-}" != 1 ]; then
	command -v unshare >/dev/null || {
		echo "toolchain-1.85: unshare(1) from util-linux is needed" >&2
		exit 1
	}
	PCIPLUG_TOOLCHAIN_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi

stamp() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(stamp)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(stamp)
say() { echo "toolchain-1.85: $*"; }

mounted=()
tmp_root=
cleanup() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
	done
	if [ -n "$tmp_root" ] && [ -d "$tmp_root" ]; then
		# debootstrap's own mounts of the half-built root live in this namespace only; unmount
		# them anyway before removing, and never cross into another file system.
		{ grep -o " $tmp_root/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
		rm -rf --one-file-system "$tmp_root"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in() { # mount_in TARGET mount-args...: mount and remember, for the trap
	local target=$1
	shift
	mount "$@" "$target"
	mounted+=("$target")
}

apt_mirror() {
	if [ -n "${PCIPLUG_DEBIAN_MIRROR:-}" ]; then
		echo "$PCIPLUG_DEBIAN_MIRROR"
		return
	fi
	# The host's Debian mirror: the first archive (not security) URI of its apt sources.
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && grep -v '^[[:space:]]*#' "$f"
	done | grep -oE '(https?|file)://[^ ]+' | grep -v -- '-security' | sed -n 1p
}

# The host's trust store, read-only, so that apt and cargo in the chroot reach their registries
# as the host's do.
mount_host_ca() { # mount_host_ca ROOT
	local ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
	if [ -f "$ca" ] && [ -f "$1/etc/ssl/certs/ca-certificates.crt" ]; then
		mount_in "$1/etc/ssl/certs/ca-certificates.crt" --bind -o ro "$ca"
	fi
}

# --- the chroot: built once, kept with a stamp ---------------------------------------------------
build_root() {
	local mirror i
	mirror=$(apt_mirror)
	[ -n "$mirror" ] || {
		echo "toolchain-1.85: no Debian mirror found in the host's apt sources; set PCIPLUG_DEBIAN_MIRROR" >&2
		exit 1
	}
	if ! command -v debootstrap >/dev/null; then
		say "installing debootstrap on the host"
		apt-get -o DPkg::Lock::Timeout=600 update -qq
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap
	fi
	tmp_root=$(mktemp -d "$CACHE/.trixie-rust.tmp.XXXXXX")
	chmod 755 "$tmp_root"
	say "debootstrap $SUITE into $tmp_root"
	debootstrap --variant=minbase --include="${PACKAGES_HOST// /,}" \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$SUITE" "$tmp_root" "$mirror" >"$LOG" 2>&1 || {
		tail -n 30 "$LOG" >&2
		echo "toolchain-1.85: debootstrap failed (log: $LOG)" >&2
		exit 1
	}
	# arm64's libstd for rustc, inside the chroot only.
	mount_in "$tmp_root/proc" -t proc proc
	mount_host_ca "$tmp_root"
	cp /etc/resolv.conf "$tmp_root/etc/resolv.conf"
	chroot "$tmp_root" dpkg --add-architecture arm64
	chroot "$tmp_root" apt-get -qq update
	DEBIAN_FRONTEND=noninteractive chroot "$tmp_root" apt-get install -y -qq --no-install-recommends \
		$PACKAGES_ARM64 >>"$LOG" 2>&1 || {
		tail -n 30 "$LOG" >&2
		echo "toolchain-1.85: installing $PACKAGES_ARM64 failed (log: $LOG)" >&2
		exit 1
	}
	chroot "$tmp_root" apt-get clean
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}"; done
	mounted=()
	mkdir -p "$tmp_root/src" "$tmp_root/cargo-home" "$tmp_root/target" "$tmp_root/.pivot-old"
	chroot "$tmp_root" dpkg-query -W rustc cargo gcc gcc-aarch64-linux-gnu libstd-rust-dev:arm64 \
		>"$tmp_root/.pciplug-versions"
	echo "$STAMP" >"$tmp_root/.pciplug-stamp"
	sync -f "$tmp_root/.pciplug-stamp"
	# The stamp is in place before the rename: the final name only ever holds a complete chroot.
	if [ -e "$ROOT" ]; then
		local old
		old=$(mktemp -d "$CACHE/.trixie-rust.old.XXXXXX")
		mv "$ROOT" "$old/root"
		rm -rf --one-file-system "$old"
	fi
	mv "$tmp_root" "$ROOT"
	tmp_root=
}

mkdir -p "$CACHE" "$CARGO_CACHE/cargo-home" "$CARGO_CACHE/target"
exec 9>"$CACHE/trixie-rust.lock"
t=$(stamp)
# Runs hold the lock shared, so that no rebuild happens under them; a rebuild holds it exclusive.
root_ok() { [ "$(cat "$ROOT/.pciplug-stamp" 2>/dev/null)" = "$STAMP" ]; }
flock -s 9
if root_ok; then
	say "chroot cached at $ROOT"
else
	flock -u 9
	flock -x 9
fi
if root_ok; then
	: # cached, or built by another run while this one waited for the lock
else
	say "building the chroot (stamp missing or outdated)"
	# Leftovers of a run killed without its trap: nobody builds but us (the lock), and their
	# mounts died with that run's mount namespace.
	rm -rf --one-file-system "$CACHE"/.trixie-rust.tmp.* "$CACHE"/.trixie-rust.old.*
	build_root
fi
flock -s 9
say "chroot took $(took "$t")s: $(tr '\n' ' ' <"$ROOT/.pciplug-versions")"

# --- the run: pivot_root into the chroot, with the clone and the caches bind-mounted --------------
mount_in "$ROOT" --bind "$ROOT" # pivot_root needs a mount point
mount_in "$ROOT/proc" -t proc proc
mount_in "$ROOT/sys" -t sysfs sysfs
mount_in "$ROOT/dev" --rbind /dev
mount_in "$ROOT/src" --bind "$REPO"
mount_in "$ROOT/cargo-home" --bind "$CARGO_CACHE/cargo-home"
mount_in "$ROOT/target" --bind "$CARGO_CACHE/target"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount_host_ca "$ROOT"

inroot() { # inroot COMMAND...: run in the chroot, after pivot_root, in /src
	unshare --mount --propagation private -- bash -c '
		cd "$1" && pivot_root . .pivot-old && shift &&
		exec chroot . /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root CARGO_HOME=/cargo-home \
			CARGO_TARGET_DIR=/target CARGO_TERM_COLOR=never PCIPLUG_REQUIRE_KERNEL=1 \
			${CI:+CI=$CI} /bin/sh -c "umount -l /.pivot-old && cd /src && exec \"\$@\"" sh "$@"
	' sh "$ROOT" "$@"
}

phase() { # phase NAME COMMAND...
	local name=$1 t
	shift
	t=$(stamp)
	say "$name: $*"
	inroot "$@"
	say "$name took $(took "$t")s"
}

inroot rustc --version
inroot cargo --version
if [ "$mode" = all ]; then
	phase "build" cargo build --locked --lib
	# Every target (benches, tests, examples) compiles with 1.85, not only what `cargo test` builds.
	phase "check all targets" cargo check --locked --all-targets
	phase "test" cargo test --locked
fi

phase "aarch64 static build" env \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --locked --release --target "$AARCH64" --bin pciplug
BIN=$CARGO_CACHE/target/$AARCH64/release/pciplug
desc=$(inroot file -b "/target/$AARCH64/release/pciplug")
say "$BIN: $desc"
case $desc in
*"ARM aarch64"*"statically linked"* | *"ARM aarch64"*"static-pie linked"*) ;;
*)
	echo "toolchain-1.85: $BIN is not a static aarch64 executable" >&2
	exit 1
	;;
esac
say "static aarch64 pciplug: $BIN"
say "total $(took "$T0")s"
