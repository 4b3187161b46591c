//! `pciplug list`, `watch` and `wait`: the live commands.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pciplug::sysfs::Sysfs;
use pciplug::{Monitor, PciPath, Registry};

use super::output;

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A whole block device (disk, not partition); prints `/dev/NAME`.
    Block,
    /// A network interface; prints its name.
    Net,
}

pub fn list(sysfs: &Path, json: bool) -> pciplug::Result<ExitCode> {
    let mut registry = Registry::new();
    Sysfs::new(sysfs).scan()?.apply_to(&mut registry);
    output::print_registry(&registry, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn watch(sysfs: &Path, json: bool) -> pciplug::Result<ExitCode> {
    let monitor = Monitor::builder().sysfs_root(sysfs).start()?;
    let changes = monitor.subscribe();
    let stdout = io::stdout();
    for change in changes {
        let mut out = stdout.lock();
        let written = if json {
            serde_json::to_writer(&mut out, &change)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            writeln!(out, "{change}")
        };
        if let Err(e) = written.and_then(|()| out.flush()) {
            // A closed pipe (`pciplug watch | head`) ends the watch quietly.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(pciplug::Error::Io {
                op: "writing to stdout".into(),
                source: e,
            });
        }
    }
    // The stream ends only when the listener stops.
    Err(pciplug::Error::ListenerStopped(
        monitor.stopped().unwrap_or_else(|| "unknown reason".into()),
    ))
}

pub fn wait(
    sysfs: &Path,
    path: &PciPath,
    kind: Kind,
    timeout: Duration,
    removed: bool,
) -> pciplug::Result<ExitCode> {
    let monitor = Monitor::builder().sysfs_root(sysfs).start()?;
    let line = if removed {
        monitor.wait_removed(path, timeout)?;
        None
    } else {
        match kind {
            Kind::Block => Some(monitor.wait_block(path, timeout)?.devnode()),
            Kind::Net => Some(monitor.wait_net(path, timeout)?.name.to_string()),
        }
    };
    if let Some(line) = line {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
