#!/bin/bash
# ci-arm64.sh - the arm64 end-to-end run, as CI does it (root, Debian, no stdin):
#   setup-arm64.sh -> the static aarch64 pciplug -> build-initramfs.sh -> run.py --arch aarch64 "$@"
#
#   tests/e2e/ci-arm64.sh            all arm64 scenarios, asserting on what pciplug prints
#   tests/e2e/ci-arm64.sh --smoke    sysfs checks only (no aarch64 binary needed, none is built)
#   tests/e2e/ci-arm64.sh arm64-virt-removal --retries 0 ...   (anything run.py takes)
#
# The aarch64 binary: $PCIPLUG_E2E_AARCH64_BIN when set (a static aarch64 pciplug), else the
# one that .ci/toolchain-1.85.sh --aarch64-only builds with Debian 13's rustc 1.85 and
# libstd-rust-dev:arm64 in its cached chroot (the path it prints last). Honours the
# PCIPLUG_E2E_* variables of setup-arm64.sh and run.py.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
E2E_DIR=${PCIPLUG_E2E_DIR:-$REPO/target/e2e}
export PCIPLUG_E2E_ARM64_CACHE=${PCIPLUG_E2E_ARM64_CACHE:-/var/cache/pciplug/e2e-arm64}
INITRD=$E2E_DIR/arm64/initramfs.cpio.gz

stamp() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(stamp)" 'BEGIN { printf "%.1f", b - a }'; }
die() { printf 'e2e-arm64: error: %s\n' "$*" >&2; exit 1; }
SMOKE=0
for a in "$@"; do [ "$a" = --smoke ] && SMOKE=1; done

t=$(stamp)
bash "$HERE/setup-arm64.sh"
echo "e2e-arm64: setup took $(took "$t")s"

BIN=
if [ $SMOKE = 0 ]; then
	t=$(stamp)
	if [ -n "${PCIPLUG_E2E_AARCH64_BIN:-}" ]; then
		BIN=$PCIPLUG_E2E_AARCH64_BIN
		echo "e2e-arm64: aarch64 pciplug from PCIPLUG_E2E_AARCH64_BIN: $BIN"
	else
		TOOLCHAIN=$REPO/.ci/toolchain-1.85.sh
		[ -f "$TOOLCHAIN" ] || die "no $TOOLCHAIN to build the aarch64 pciplug; set PCIPLUG_E2E_AARCH64_BIN or use --smoke"
		LOG=$E2E_DIR/arm64/toolchain-aarch64.log
		mkdir -p "$(dirname "$LOG")"
		bash "$TOOLCHAIN" --aarch64-only 2>&1 | tee "$LOG"
		BIN=$(sed -n 's/^toolchain-1.85: static aarch64 pciplug: //p' "$LOG" | tail -1)
		[ -n "$BIN" ] || die "$TOOLCHAIN did not say where the aarch64 pciplug is (log: $LOG)"
	fi
	[ -x "$BIN" ] || die "$BIN: no such executable"
	LC_ALL=C readelf -h "$BIN" | grep -q 'Machine:.*AArch64' || die "$BIN is not an AArch64 binary"
	echo "e2e-arm64: aarch64 binary took $(took "$t")s"
fi

t=$(stamp)
PCIPLUG_E2E_KERNEL_CACHE=$PCIPLUG_E2E_ARM64_CACHE/kernel \
	bash "$HERE/build-initramfs.sh" -o "$INITRD" ${BIN:+"$BIN"}
echo "e2e-arm64: initramfs took $(took "$t")s"

exec python3 "$HERE/run.py" --arch aarch64 --initrd "$INITRD" "$@"
