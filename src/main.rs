//! The `pciplug` command: a thin layer over the library. stdout is data, stderr is logs
//! (`RUST_LOG` filters them; warnings are shown by default).

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::run()
}
