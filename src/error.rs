//! [`Error`], the library's error; a wait's own is [`WaitError`](crate::WaitError), which
//! [`Error::Wait`] wraps.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pciplug: at start-up, reading sysfs, handing a function to
/// VFIO, parsing input; a wait's failure is a [`WaitError`](crate::WaitError), wrapped as
/// [`Error::Wait`] so that `?` works where waits and the rest mix.
///
/// `Display` puts the context first ("reading /sys/bus/pci/devices: ...") and
/// [`std::error::Error::source`] carries the cause where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PCI path string could not be parsed.
    #[error(transparent)]
    PciPath(#[from] crate::path::ParsePciPathError),

    /// A datagram is not a well-formed kernel uevent.
    #[error(transparent)]
    Uevent(#[from] crate::uevent::UeventError),

    /// A recording (fixture) file is not in the documented format.
    #[error("{file}:{line}: {reason}")]
    Recording {
        /// The file being read.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong with the line.
        reason: String,
    },

    /// An I/O operation failed; `op` names it ("reading /sys/...", "binding the uevent socket").
    #[error("{op}: {source}")]
    Io {
        /// The operation that failed, with its object.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A wait failed: it timed out, its disk address is ambiguous, the listener stopped, or
    /// what it does besides waiting failed ([`WaitError`](crate::WaitError) says which).
    #[error(transparent)]
    Wait(#[from] crate::WaitError),

    /// A write to sysfs was refused (a rescan, a driver override, an unbind, a probe): the
    /// file, the value and the OS error.
    #[error(transparent)]
    SysfsWrite(#[from] crate::sysfs_write::SysfsWriteError),

    /// A function could not be handed to `vfio-pci`.
    #[error(transparent)]
    Vfio(#[from] crate::vfio::VfioError),
}

impl Error {
    /// Wraps an I/O error with the operation that failed.
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}

/// Prints a duration the way a person would write it on a command line (`3s`, `250ms`).
/// The time a wait that started at `start` was given until `deadline`, rounded up to the
/// millisecond: what a timeout error quotes, rather than the time it happened to take.
pub(crate) fn given(start: std::time::Instant, deadline: std::time::Instant) -> Duration {
    let d = deadline.saturating_duration_since(start);
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

pub(crate) fn humanize(d: Duration) -> impl fmt::Display {
    struct H(Duration);
    impl fmt::Display for H {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let ms = self.0.as_millis();
            if ms >= 1000 && ms % 1000 == 0 {
                write!(f, "{}s", ms / 1000)
            } else if ms >= 1000 {
                write!(f, "{:.3}s", self.0.as_secs_f64())
            } else if ms > 0 {
                write!(f, "{ms}ms")
            } else {
                write!(f, "{}us", self.0.as_micros())
            }
        }
    }
    H(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_command_line_arguments() {
        assert_eq!(humanize(Duration::from_secs(3)).to_string(), "3s");
        assert_eq!(humanize(Duration::from_millis(1500)).to_string(), "1.500s");
        assert_eq!(humanize(Duration::from_millis(250)).to_string(), "250ms");
        assert_eq!(humanize(Duration::from_micros(40)).to_string(), "40us");
    }

    #[test]
    fn io_errors_put_the_operation_first_and_keep_the_cause() {
        let e = Error::io(
            "reading /sys/bus/pci/devices",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(e.to_string().starts_with("reading /sys/bus/pci/devices: "));
        assert!(std::error::Error::source(&e).is_some());
    }
}
