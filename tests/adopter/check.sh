#!/usr/bin/env bash
# Builds the adopter crate beside this script (pciplug with default-features = false, plus
# tokio) and fails if the command-line tool's dependencies are in its tree.
set -euo pipefail
cd "$(dirname "$0")"
target="${CARGO_TARGET_DIR:-../../target}/adopter"
cargo build --quiet --target-dir "$target"
tree="$(cargo tree -e normal --prefix none)"
if grep -E '^(clap|tracing-subscriber|humantime|serde_json|serde) ' <<<"$tree"; then
    echo "adopter: the library pulled in the command-line tool's dependencies (above)" >&2
    exit 1
fi
echo "adopter: builds; $(sort -u <<<"$tree" | wc -l) crates in its tree, none of the CLI's"
cargo tree -e normal --depth 1
