//! What a library user's build holds: without the default `cli` feature, none of the
//! command-line tool's dependencies (`tests/adopter/check.sh` builds a tokio adopter crate
//! the same way).

use std::collections::BTreeSet;
use std::process::Command;

/// The command-line tool's own dependencies, and serde (feature `serde`, on with `cli`).
const CLI_ONLY: [&str; 5] = [
    "clap",
    "tracing-subscriber",
    "humantime",
    "serde_json",
    "serde",
];

/// The names of the crates in pciplug's normal dependency tree with `features`.
fn tree(features: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "-e", "normal", "--prefix", "none"])
        .args(features)
        .output()
        .expect("running cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn without_default_features_the_library_builds_none_of_the_cli_dependencies() {
    let lean = tree(&["--no-default-features"]);
    assert!(
        lean.contains("pciplug") && lean.contains("netlink-sys"),
        "{lean:?}"
    );
    let found: Vec<_> = CLI_ONLY.iter().filter(|c| lean.contains(**c)).collect();
    assert!(found.is_empty(), "the lean library depends on {found:?}");
    // The default build (the tool) does have them: the check above sees them when present.
    let full = tree(&[]);
    assert!(CLI_ONLY.iter().all(|c| full.contains(*c)), "{full:?}");
    // `serde` alone brings serde, not the tool's dependencies.
    let serde = tree(&["--no-default-features", "--features", "serde"]);
    assert!(serde.contains("serde") && !serde.contains("clap") && !serde.contains("serde_json"));
}
