//! A tokio (current_thread) program that starts a pciplug Monitor and waits for a disk on a
//! blocking thread, as a guest agent would.

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let monitor = pciplug::Monitor::start()?;
    let path: pciplug::PciPath = std::env::args().nth(1).as_deref().unwrap_or("02/00").parse()?;
    let m = monitor.clone();
    let disk =
        tokio::task::spawn_blocking(move || m.wait_block(&path, Duration::from_millis(100))).await?;
    match disk {
        Ok(d) => println!("{}", d.devnode()),
        Err(e) => println!("{e}"),
    }
    Ok(())
}
