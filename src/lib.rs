//! pciplug: find the guest device behind a hot-plugged PCI path, from kernel uevents.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod path;
pub mod uevent;

pub use error::{Error, Result};
pub use path::{Bdf, Hop, PciPath, RootComplex};
pub use uevent::{Action, Datagram, Uevent};
