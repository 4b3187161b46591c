//! pciplug: find the guest device behind a hot-plugged PCI path, from kernel uevents.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod path;
pub mod recording;
pub mod registry;
pub mod uevent;

pub use error::{Error, Result};
pub use path::{Bdf, Hop, PciPath, RootComplex};
pub use recording::Recording;
pub use registry::{
    BlockDevice, Change, DevType, DeviceView, NetInterface, NvmeController, PciDevice, Registry,
    Stats, Transport,
};
pub use uevent::{Action, Datagram, Uevent};
