//! Any string as a PCI path and as a devpath: parsing never panics, and what parses prints
//! back to itself (see `tests/common/path_oracle.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/path_oracle.rs"]
mod path_oracle;

fuzz_target!(|data: &[u8]| {
    path_oracle::check(data);
});
