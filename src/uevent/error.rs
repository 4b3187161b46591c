//! [`UeventError`]: why a datagram is malformed, and the one table of its kinds.

use super::MAX_DATAGRAM;

/// A malformed datagram; the message says what was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UeventError {
    /// Zero bytes.
    #[error("empty datagram")]
    Empty,
    /// Larger than the kernel can send.
    #[error("datagram of {len} bytes is larger than the {MAX_DATAGRAM}-byte maximum")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// A libudev (udevd group 2) message, not a kernel uevent.
    #[error("libudev-format datagram ({len} bytes): sent by udevd, not the kernel")]
    Libudev {
        /// Its size.
        len: usize,
    },
    /// The last byte is not NUL (truncated, or not a uevent).
    #[error("datagram of {len} bytes does not end in NUL (truncated?): {start:?}")]
    NoNulEnd {
        /// Its size.
        len: usize,
        /// Its beginning, lossily decoded.
        start: String,
    },
    /// The first field is not `ACTION@DEVPATH`.
    #[error("header {0:?} is not ACTION@/DEVPATH")]
    BadHeader(String),
    /// Bytes that are not UTF-8.
    #[error("datagram is not UTF-8 (byte {offset} of {len})")]
    NotUtf8 {
        /// Offset of the first bad byte.
        offset: usize,
        /// Datagram size.
        len: usize,
    },
    /// A field without `=`.
    #[error("field {0:?} is not KEY=VALUE")]
    BadField(String),
    /// A required key is missing.
    #[error("{header:?}: no {key} field")]
    Missing {
        /// The datagram's header.
        header: String,
        /// The missing key.
        key: &'static str,
    },
    /// The header disagrees with the fields.
    #[error("header {header:?} disagrees with {key}={value}")]
    HeaderMismatch {
        /// The datagram's header.
        header: String,
        /// `ACTION` or `DEVPATH`.
        key: &'static str,
        /// The field's value.
        value: String,
    },
    /// A devpath with `.` or `..` components, empty components, or not absolute.
    #[error("devpath {0:?} is not a canonical absolute path")]
    BadDevpath(String),
    /// A value that should be a number or a name is not one.
    #[error("{header:?}: {key}={value:?} is not valid")]
    BadValue {
        /// The datagram's header.
        header: String,
        /// The key.
        key: &'static str,
        /// The value seen.
        value: String,
    },
}

/// The one table of malformed-datagram kinds, one row per [`UeventError`] variant:
/// `(variant, counter field, name, description)`. [`UeventError::kind`] and the registry's
/// `MalformedKinds` counters (which `watch --stats` lists) are generated from it, so a new
/// kind of defect is added here once, and a variant missing here does not compile.
///
/// Called with the name of a macro that takes the rows.
macro_rules! malformed_kinds_table {
    ($then:ident) => {
        $then! {
            (Empty, empty, "empty", "Zero bytes."),
            (TooLarge, too_large, "too-large", "Larger than the kernel can send."),
            (Libudev, libudev, "libudev", "udevd's libudev format, not the kernel's."),
            (NoNulEnd, no_nul_end, "no-nul-end", "Not ending in NUL."),
            (BadHeader, bad_header, "bad-header", "No `ACTION@DEVPATH` header."),
            (NotUtf8, not_utf8, "not-utf8", "Not UTF-8."),
            (BadField, bad_field, "bad-field", "A field without `=`."),
            (Missing, missing_key, "missing-key", "A required key missing."),
            (
                HeaderMismatch,
                header_mismatch,
                "header-mismatch",
                "`ACTION=` or `DEVPATH=` contradicting the header."
            ),
            (
                BadDevpath,
                bad_devpath,
                "bad-devpath",
                "A devpath with `.`, `..` or empty components."
            ),
            (
                BadValue,
                bad_value,
                "bad-value",
                "A value that is not a number or a safe device name."
            ),
        }
    };
}
pub(crate) use malformed_kinds_table;

/// [`UeventError::kind`], from [`malformed_kinds_table`].
macro_rules! kind_names {
    ($(($variant:ident, $field:ident, $name:literal, $doc:literal)),* $(,)?) => {
        impl UeventError {
            /// A short stable name for the kind of defect, for counters and logs.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(UeventError::$variant { .. } => $name,)*
                }
            }
        }
    };
}
malformed_kinds_table!(kind_names);
