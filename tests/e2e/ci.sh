#!/bin/bash
# ci.sh - the whole end-to-end run, as CI does it (root, Debian, no stdin):
#   setup.sh -> static release build of pciplug -> build-initramfs.sh -> run.py "$@"
#
#   tests/e2e/ci.sh            all scenarios, asserting on what pciplug prints
#   tests/e2e/ci.sh --smoke    all scenarios, sysfs checks only (no CLI needed)
#   tests/e2e/ci.sh 3 q35-removal --retries 0 ...   (anything run.py takes)
#
# Honours CARGO_TARGET_DIR and the PCIPLUG_E2E_* variables of setup.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=x86_64-unknown-linux-gnu

stamp() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(stamp)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(stamp)
bash "$HERE/setup.sh"
echo "e2e: setup took $(took "$t")s"

t=$(stamp)
# --target keeps RUSTFLAGS off build scripts and proc macros, which must stay dynamic
(cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release --target "$TARGET" --bin pciplug)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/$TARGET/release/pciplug
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
echo "e2e: static build took $(took "$t")s"

t=$(stamp)
bash "$HERE/build-initramfs.sh" "$BIN"
echo "e2e: initramfs took $(took "$t")s"

exec python3 "$HERE/run.py" "$@"
