//! A tokio (current_thread) program that starts a pciplug Monitor and awaits a disk, as a guest
//! agent would.

use std::time::Duration;

use pciplug::{Change, Receiver};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let monitor = pciplug::Monitor::start()?;
    // The changes, on crossbeam's Receiver as pciplug re-exports it.
    let changes: Receiver<Change> = monitor.subscribe();
    let path: pciplug::PciPath = std::env::args().nth(1).as_deref().unwrap_or("02/00").parse()?;
    let disk = monitor
        .wait_block_timeout_async(&path, Duration::from_millis(100))
        .await;
    match disk {
        Ok(d) => println!("{}", d.devnode()),
        Err(e) => println!("{e}"),
    }
    println!("{} changes seen", changes.try_iter().count());
    Ok(())
}
