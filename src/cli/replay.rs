//! `pciplug replay`: recordings through a fresh registry, then the final state.

use std::path::PathBuf;
use std::process::ExitCode;

use pciplug::{Recording, Registry};

use super::output;

pub fn run(files: &[PathBuf], json: bool) -> pciplug::Result<ExitCode> {
    // Read (and syntax-check) every file before applying any, so a bad file is reported
    // without a half-applied state being printed.
    let recordings = files
        .iter()
        .map(Recording::read)
        .collect::<pciplug::Result<Vec<_>>>()?;
    let mut registry = Registry::new();
    for r in &recordings {
        r.replay_into(&mut registry);
    }
    output::print_registry(&registry, json)?;
    let s = registry.stats();
    tracing::info!(
        "{} datagrams: {} applied, {} ignored ({} unknown actions), {} malformed, {} spoofed, {} unplaceable",
        s.received,
        s.applied,
        s.ignored,
        s.unknown_action,
        s.malformed,
        s.spoofed,
        s.unplaceable
    );
    Ok(ExitCode::SUCCESS)
}
