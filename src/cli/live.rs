//! `pciplug list`, `watch` and `wait`: the live commands.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use pciplug::sysfs::Sysfs;
use pciplug::{
    DriverState, ListenerStopped, Monitor, MonitorBuilder, MonitorStats, PciPath, WaitError,
    is_safe_device_name,
};

use super::{function, output};

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A whole block device (disk, not partition); prints `/dev/NAME`.
    Block,
    /// A network interface; prints its name.
    Net,
    /// A PCI function (optionally in a driver state); prints its guest BDF.
    Pci,
}

/// What `wait` waits for, and how it prints it.
pub struct Wait {
    pub kind: Kind,
    pub timeout: Duration,
    /// Wait until nothing is at the path.
    pub removed: bool,
    /// With [`Kind::Pci`]: the driver state.
    pub state: DriverState,
    /// Print the whole answer as JSON.
    pub json: bool,
}

/// How often `watch --stats` looks at the counters.
const STATS_TICK: Duration = Duration::from_secs(1);

pub fn list(sysfs: &Path, json: bool) -> pciplug::Result<ExitCode> {
    let registry = Sysfs::new(sysfs).registry()?;
    output::print_registry(&registry, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn watch(sysfs: &Path, json: bool, stats: bool) -> pciplug::Result<ExitCode> {
    let monitor = Monitor::builder().sysfs_root(sysfs).start()?;
    let changes = monitor.subscribe();
    let mut out = Out;
    // The counts last printed; `None` until the first line.
    let mut shown: Option<MonitorStats> = None;
    let mut show_stats = |out: &mut Out| -> io::Result<()> {
        let now = monitor.stats();
        if stats && shown != Some(now) {
            out.line(|w| output::write_stats(w, &now, json))?;
            shown = Some(now);
        }
        Ok(())
    };
    let mut next_look = Instant::now();
    let ended = loop {
        if Instant::now() >= next_look {
            if let Err(e) = show_stats(&mut out) {
                break Err(e);
            }
            next_look = Instant::now() + STATS_TICK;
        }
        let change = match changes.recv_timeout(next_look.saturating_duration_since(Instant::now()))
        {
            Ok(change) => change,
            Err(RecvTimeoutError::Timeout) => continue,
            // The stream ends only when the listener stops.
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        };
        let written = if json {
            out.line(|w| {
                serde_json::to_writer(&mut *w, &change)
                    .map_err(io::Error::from)
                    .and_then(|()| writeln!(w))
            })
        } else {
            out.line(|w| writeln!(w, "{change}"))
        };
        if let Err(e) = written {
            break Err(e);
        }
    };
    match ended {
        Ok(()) => {
            // What the listener saw up to its end, then why it ended.
            let _ = show_stats(&mut out);
            // The channel ends only after the listener has marked itself stopped, with why.
            let why = monitor.stopped().unwrap_or(ListenerStopped::ShutDown);
            Err(WaitError::ListenerStopped(why).into())
        }
        // A closed pipe (`pciplug watch | head`) ends the watch quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(pciplug::Error::Io {
            op: "writing to stdout".into(),
            source: e,
        }),
    }
}

pub fn wait(builder: MonitorBuilder, path: &PciPath, wait: &Wait) -> pciplug::Result<ExitCode> {
    let monitor = builder.start()?;
    let Wait { timeout, json, .. } = *wait;
    let line = if wait.removed {
        monitor.wait_removed_timeout(path, timeout)?;
        None
    } else {
        let (name, line) = match wait.kind {
            Kind::Block => {
                let disk = monitor.wait_block_timeout(path, timeout)?;
                let line = if json {
                    json_line(&disk)?
                } else {
                    disk.devnode()
                };
                (disk.name.clone(), line)
            }
            Kind::Net => {
                let net = monitor.wait_net_timeout(path, timeout)?;
                let line = if json {
                    json_line(&net)?
                } else {
                    net.name.to_string()
                };
                (net.name.clone(), line)
            }
            Kind::Pci => return function::wait(&monitor, path, &wait.state, timeout, json),
        };
        Some((name, line))
    };
    if let Some((name, line)) = line {
        print_device(&name, &line, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the line of the device called `name` found at `at`.
pub fn print_device(name: &str, line: &str, at: &dyn std::fmt::Display) -> pciplug::Result<()> {
    // The line is what a caller mounts or configures: never print a name that could
    // escape /dev or forge a second line, whatever the library let through.
    if !is_safe_device_name(name) {
        return Err(pciplug::Error::Io {
            op: format!("printing the device at {at}"),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name:?} is not a safe device name"),
            ),
        });
    }
    // Not println!: a closed stdout is an error to report, not a panic (exit 101).
    Out.line(|w| writeln!(w, "{line}"))
        .map_err(|e| pciplug::Error::Io {
            op: "writing to stdout".into(),
            source: e,
        })
}

/// `value` as one line of JSON.
fn json_line(value: &impl serde::Serialize) -> pciplug::Result<String> {
    serde_json::to_string(value).map_err(|e| pciplug::Error::Io {
        op: "printing the answer as JSON".into(),
        source: e.into(),
    })
}

/// stdout, one flushed line at a time, so that a reader sees each line as it happens.
struct Out;

impl Out {
    fn line(
        &mut self,
        f: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut w = io::stdout().lock();
        f(&mut w)?;
        w.flush()
    }
}
