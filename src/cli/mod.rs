//! Command-line parsing and dispatch. Exit codes: 0 success, 1 runtime failure (including a
//! wait that timed out), 2 bad arguments or a disk address that fits several disks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pciplug::PciPath;

use clap::{Parser, Subcommand};

mod disk;
mod function;
mod live;
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
    /// List the PCI devices present now, by PCI path, read from sysfs.
    List {
        /// One JSON object per line per PCI device, sorted by path (as `replay --json`).
        #[arg(long)]
        json: bool,
        /// Where sysfs is mounted.
        #[arg(long, value_name = "DIR", default_value = "/sys")]
        sysfs: PathBuf,
    },
    /// Print the registry's changes as the kernel announces them, one line each.
    Watch {
        /// One JSON object per change.
        #[arg(long)]
        json: bool,
        /// Also print what the listener counted (datagrams received, applied, ignored,
        /// malformed by kind, spoofed; overflows, resyncs): a `stats ...` line (with --json,
        /// a `{"stats": {...}}` object) at start, within a second of any count changing, and
        /// when the watch ends.
        #[arg(long)]
        stats: bool,
        /// Where sysfs is mounted.
        #[arg(long, value_name = "DIR", default_value = "/sys")]
        sysfs: PathBuf,
    },
    /// Wait for the device at a PCI path and print it: `/dev/NAME` for a block device, the
    /// interface name for a net device, the guest BDF for a PCI function. Exits 1 on timeout,
    /// saying what was seen; 2 when the address fits several disks (a function with several,
    /// and no --scsi or --nsid to pick one), naming each.
    Wait {
        /// The PCI path, e.g. `02/00`, `03/00/01`, `06`; optional with --scsi or --nsid.
        #[arg(value_name = "PATH", value_parser = parse_path, required_unless_present_any = ["scsi", "nsid"])]
        path: Option<PciPath>,
        #[command(flatten)]
        unit: disk::UnitArgs,
        /// What to wait for.
        #[arg(long, value_enum, default_value = "block")]
        kind: live::Kind,
        /// How long to wait, e.g. `3s`, `500ms`, `1m`.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
        /// Wait until no PCI device is at the path instead (prints nothing).
        #[arg(long)]
        removed: bool,
        /// With `--kind pci`: wait until this driver (`vfio-pci`, `virtio-pci`) is bound.
        #[arg(long, value_name = "NAME", conflicts_with = "unbound")]
        driver: Option<String>,
        /// With `--kind pci`: wait until the function is present with no driver bound.
        #[arg(long)]
        unbound: bool,
        /// Print the whole answer as one JSON object (with `--kind pci`: BDF, IDs, class,
        /// driver, IOMMU group).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        edges: function::Edges,
    },
    /// Hand the PCI function at a path, and the rest of its IOMMU group, to vfio-pci; print
    /// `/dev/vfio/<group>`. Exits 1 when it cannot (no IOMMU group, a bridge in the group,
    /// no vfio-pci driver, a write refused, a timeout), saying why. Needs root.
    Vfio {
        /// The PCI path, e.g. `02/00`.
        #[arg(value_name = "PATH", value_parser = parse_path)]
        path: PciPath,
        /// How long to wait for the function and for the group's device node.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print the group, its node and its functions as one JSON object.
        #[arg(long)]
        json: bool,
        /// Where device nodes are.
        #[arg(long, value_name = "DIR", default_value = "/dev")]
        dev: PathBuf,
        #[command(flatten)]
        edges: function::Edges,
    },
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
        Command::List { json, sysfs } => live::list(&sysfs, json),
        Command::Watch { json, stats, sysfs } => live::watch(&sysfs, json, stats),
        Command::Wait {
            path,
            unit,
            kind,
            timeout,
            removed,
            driver,
            unbound,
            json,
            edges,
        } => {
            if (driver.is_some() || unbound) && kind != live::Kind::Pci {
                usage_error("--driver and --unbound need --kind pci");
                return ExitCode::from(2);
            }
            match (unit.unit(), path) {
                (Some(u), path) => disk::wait(edges.builder(), path, u, kind, timeout, unit.scan),
                (None, Some(path)) => {
                    let wait = live::Wait {
                        kind,
                        timeout,
                        removed,
                        state: function::driver_state(driver, unbound),
                        json,
                    };
                    live::wait(edges.builder(), &path, &wait)
                }
                (None, None) => {
                    usage_error("wait needs a PATH, a --scsi T:L or a --nsid N");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Vfio {
            path,
            timeout,
            json,
            dev,
            edges,
        } => function::vfio(&edges, dev, &path, timeout, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn a failure into a panic (exit 101).
            let _ = writeln!(std::io::stderr(), "pciplug: {e}");
            // An ambiguous address is the caller's to make precise, like a bad argument.
            match e {
                pciplug::Error::Wait(pciplug::WaitError::Ambiguous(_)) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Reports a bad combination of arguments clap cannot see (exit 2 is the caller's).
fn usage_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pciplug: {msg}");
}

fn parse_path(s: &str) -> Result<PciPath, String> {
    s.parse()
        .map_err(|e: pciplug::ParsePciPathError| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
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
