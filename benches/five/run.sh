#!/usr/bin/env bash
# Five runs of `cargo bench` on a clean clone of this repository's HEAD, in a new target
# directory, as BENCHMARKS.md's figures are made: every run's whole output is kept, and
# summary.py turns the RESULT lines into medians with their ranges.
#
#   bash benches/five/run.sh [OUT_DIR]      (as root: three benches drive the kernel)
set -euo pipefail
repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
commit="$(git -C "$repo" rev-parse --short HEAD)"
out="${1:-/tmp/pciplug-bench-$commit}"
rm -rf "$out"
mkdir -p "$out"
git clone -q "$repo" "$out/clone"
cd "$out/clone"
{
    echo "commit $commit; $(date -u +%FT%TZ); nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "$(uname -r); $(rustc --version)"
} >"$out/machine.txt"
export CARGO_TARGET_DIR="$out/target"
for i in 1 2 3 4 5; do
    start=$(date +%s)
    cargo bench 2>&1 | tee "$out/run-$i.log" | grep -E '^(RESULT|SKIPPED)' || true
    echo "run $i: $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
done
python3 "$repo/benches/five/summary.py" "$out"/run-*.log | tee "$out/summary.txt"
