//! Command-line parsing and dispatch. Exit codes: 0 success, 1 runtime failure (including a
//! wait that timed out), 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod output;
mod replay;

/// Find the guest device behind a hot-plugged PCI path, from kernel uevents.
#[derive(Parser, Debug)]
#[command(name = "pciplug", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Feed uevent recordings through a fresh registry and print the final state.
    ///
    /// Recordings are in the format of fixtures/real-hotplug/README.md; several files are
    /// fed in order into the same registry. Only datagrams whose sender port id is 0 (the
    /// kernel) are believed.
    Replay {
        /// One JSON object per line per PCI device, sorted by path.
        #[arg(long)]
        json: bool,
        /// Recording files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn run() -> ExitCode {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let result = match cli.command {
        Command::Replay { json, files } => replay::run(&files, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pciplug: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
