//! Any bytes as a datagram from the kernel: `Datagram::parse` and `Registry::apply_datagram`
//! never panic, and whatever is believed was checked (see `tests/common/datagram_oracle.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/datagram_oracle.rs"]
mod datagram_oracle;

fuzz_target!(|data: &[u8]| {
    datagram_oracle::check(data);
});
