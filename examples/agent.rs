//! The device steps of a Kata-style guest agent, written on pciplug, sync and async.
//!
//! The host hot-plugs a device and tells the agent its PCI path; the agent waits for the
//! guest's device behind it: a virtio-blk disk (the node to mount), a SCSI LUN (by its
//! `T:L` on the HBA at the path), a NIC (the interface to configure), a function handed to
//! VFIO (its guest BDF, once `vfio-pci` is bound). One `Monitor` serves every request.
//!
//! ```text
//! agent [--async] [--sysfs DIR] REQUEST...
//!   block:PATH        the disk at PATH             -> block PATH /dev/vda
//!   scsi:PATH:T:L     the SCSI LUN T:L at PATH      -> scsi PATH T:L /dev/sdb
//!   net:PATH          the interface at PATH        -> net PATH eth0
//!   vfio:PATH         the function at PATH, bound to vfio-pci -> vfio PATH 0000:02:00.0
//! ```
//!
//! With `--async`, the requests are served concurrently on a tokio `current_thread` runtime
//! with the `_async` waits (no blocking thread); without it, each on its own thread with the
//! sync waits. Each waits up to 30 s. The answers are printed in the order asked, one line
//! each; exit status 1 if any request failed (its error on stderr), 2 for a bad command line.
//! `tests/agent.rs` runs it on real recordings the kernel delivers.

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use pciplug::{DiskAddress, DriverState, Monitor, PciPath, Unit};

/// How long each request waits: the deadline a host gives its agent, generously.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One device step of the agent.
#[derive(Clone, Debug)]
enum Request {
    Block(PciPath),
    Scsi(PciPath, String),
    Net(PciPath),
    Vfio(PciPath),
}

impl Request {
    fn parse(arg: &str) -> Result<Request, String> {
        let bad = |e: &dyn std::fmt::Display| format!("bad request {arg:?}: {e}");
        let (kind, rest) = arg.split_once(':').ok_or_else(|| bad(&"no KIND:"))?;
        let path = |p: &str| p.parse::<PciPath>().map_err(|e| bad(&e));
        match kind {
            "block" => Ok(Request::Block(path(rest)?)),
            "net" => Ok(Request::Net(path(rest)?)),
            "vfio" => Ok(Request::Vfio(path(rest)?)),
            "scsi" => {
                let (p, unit) = rest.split_once(':').ok_or_else(|| bad(&"no T:L"))?;
                unit.parse::<pciplug::ScsiUnit>().map_err(|e| bad(&e))?;
                Ok(Request::Scsi(path(p)?, unit.to_owned()))
            }
            other => Err(bad(&format!("unknown kind {other}"))),
        }
    }

    /// The SCSI LUN's address.
    fn scsi_address(path: &PciPath, unit: &str) -> DiskAddress {
        let unit = Unit::Scsi(unit.parse().expect("checked when parsed"));
        DiskAddress::with_unit(Some(*path), unit)
    }

    /// Serves the request with the sync waits, blocking this thread.
    fn serve(&self, m: &Monitor) -> pciplug::Result<String> {
        Ok(match self {
            Request::Block(p) => {
                format!("block {p} {}", m.wait_block_timeout(p, TIMEOUT)?.devnode())
            }
            Request::Scsi(p, u) => {
                let disk = m.wait_disk_timeout(&Self::scsi_address(p, u), TIMEOUT)?;
                format!("scsi {p} {u} {}", disk.devnode())
            }
            Request::Net(p) => format!("net {p} {}", m.wait_net_timeout(p, TIMEOUT)?.name),
            Request::Vfio(p) => {
                let f = m.wait_function_timeout(p, &vfio_pci(), TIMEOUT)?;
                format!("vfio {p} {}", f.bdf)
            }
        })
    }

    /// Serves the request with the async waits: the runtime's thread is never blocked.
    async fn serve_async(&self, m: &Monitor) -> pciplug::Result<String> {
        Ok(match self {
            Request::Block(p) => {
                let disk = m.wait_block_timeout_async(p, TIMEOUT).await?;
                format!("block {p} {}", disk.devnode())
            }
            Request::Scsi(p, u) => {
                let disk = m
                    .wait_disk_timeout_async(&Self::scsi_address(p, u), TIMEOUT)
                    .await?;
                format!("scsi {p} {u} {}", disk.devnode())
            }
            Request::Net(p) => format!(
                "net {p} {}",
                m.wait_net_timeout_async(p, TIMEOUT).await?.name
            ),
            Request::Vfio(p) => {
                let f = m
                    .wait_function_timeout_async(p, &vfio_pci(), TIMEOUT)
                    .await?;
                format!("vfio {p} {}", f.bdf)
            }
        })
    }
}

/// A function handed to VFIO: bound to `vfio-pci`.
fn vfio_pci() -> DriverState {
    DriverState::Driver("vfio-pci".into())
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(answers) => {
            let mut served = true;
            for answer in answers {
                match answer {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("agent: {e}");
                        served = false;
                    }
                }
            }
            if served {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(usage) => {
            eprintln!("agent: {usage}");
            ExitCode::from(2)
        }
    }
}

/// Serves the requests of a command line (without the program name): each one's answer, in
/// the order asked; `Err` for a bad command line. The tests call it as `main` does.
pub fn run(args: impl Iterator<Item = String>) -> Result<Vec<pciplug::Result<String>>, String> {
    let mut args = args.peekable();
    let is_async = args.next_if_eq("--async").is_some();
    let mut builder = Monitor::builder();
    if args.next_if_eq("--sysfs").is_some() {
        builder = builder.sysfs_root(args.next().ok_or("--sysfs needs a directory")?);
    }
    let requests = args
        .map(|a| Request::parse(&a))
        .collect::<Result<Vec<_>, _>>()?;
    if requests.is_empty() {
        return Err("usage: agent [--async] [--sysfs DIR] REQUEST...".into());
    }
    let monitor = match builder.start() {
        Ok(m) => m,
        Err(e) => return Ok(vec![Err(e)]),
    };
    Ok(if is_async {
        serve_all_async(&monitor, requests)
    } else {
        serve_all(&monitor, requests)
    })
}

/// Each request on its own thread, with the sync waits.
fn serve_all(monitor: &Monitor, requests: Vec<Request>) -> Vec<pciplug::Result<String>> {
    let handlers: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let m = monitor.clone();
            thread::spawn(move || r.serve(&m))
        })
        .collect();
    handlers
        .into_iter()
        .map(|h| h.join().expect("a handler panicked"))
        .collect()
}

/// Every request concurrently on one thread, with the async waits.
fn serve_all_async(monitor: &Monitor, requests: Vec<Request>) -> Vec<pciplug::Result<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let handlers: Vec<_> = requests
            .into_iter()
            .map(|r| {
                let m = monitor.clone();
                tokio::spawn(async move { r.serve_async(&m).await })
            })
            .collect();
        let mut answers = Vec::new();
        for h in handlers {
            answers.push(h.await.expect("a handler panicked"));
        }
        answers
    })
}
