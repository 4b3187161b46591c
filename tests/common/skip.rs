//! What a test does where it cannot run: in CI it fails, elsewhere it says why and passes.

/// Set (to anything but `0` or empty) by `.ci/run`: a test that cannot run here fails.
pub const REQUIRE_KERNEL_ENV: &str = "PCIPLUG_REQUIRE_KERNEL";

/// Whether a test that cannot run must fail: `PCIPLUG_REQUIRE_KERNEL` is set, or `CI=true`.
pub fn required() -> bool {
    let set = |var: &str, off: &[&str]| {
        std::env::var(var).is_ok_and(|v| !v.is_empty() && !off.contains(&v.as_str()))
    };
    set(REQUIRE_KERNEL_ENV, &["0"]) || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `test` cannot run here, for `why`: a panic when [`required`], else `SKIPPED <test>: <why>`
/// on stderr. The caller returns right after.
#[track_caller]
pub fn skip(test: &str, why: impl std::fmt::Display) {
    if required() {
        panic!("{test} cannot run here ({REQUIRE_KERNEL_ENV} or CI=true forbids skipping): {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}
