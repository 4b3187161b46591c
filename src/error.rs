//! The one error type of the library.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pciplug.
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

    /// A wait ran out of time; the message says what was seen at the path:
    /// "no block disk at 02/01 within 3s: PCI device 0000:01:01.0 present at 02/01, driver
    /// virtio-pci bound, no block child".
    #[error("no {wanted} within {}: {seen}", humanize(*.waited))]
    Timeout {
        /// What was waited for, and where ("block disk at 02/01").
        wanted: String,
        /// How long the caller waited.
        waited: Duration,
        /// What the registry held at the path when the deadline passed.
        seen: String,
    },

    /// A disk address fits several disks: a path whose function carries more than one whole
    /// disk, or a unit several functions have. The candidates are listed with their addresses.
    #[error(transparent)]
    Ambiguous(#[from] crate::address::AmbiguousDisk),

    /// The listener is gone (shut down or failed), so the wait can never be answered.
    #[error("listener stopped: {0}")]
    ListenerStopped(String),
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
