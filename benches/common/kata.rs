//! The baseline the waiter benches compare with: what Kata Containers' agent does with
//! uevents (`src/agent/src/uevent.rs`, `sandbox.rs` and `device/block_device_handler.rs`),
//! written again here over the same socket type, so that only what differs is measured.
//!
//! Kata's agent keeps `uevent_watchers: Vec<Option<(Box<dyn UeventMatcher>, Sender)>>` in its
//! sandbox. For every `add` uevent it locks the sandbox, records the event in
//! `uevent_map` (by devpath), then tries every watcher's matcher on it and hands the event to
//! those that match. A virtio-blk wait's matcher is a regex over the devpath,
//! `^<root bus><relative sysfs path of the PCI path>/virtio[0-9]+/block/`, tried after a
//! subsystem check. The cost of an event therefore grows with the number of watchers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pciplug::netlink::{Received, SocketOptions, Stopper};

/// Kata's `Uevent`: the fields its agent reads, as owned strings.
#[derive(Clone, Debug, Default)]
pub struct KataUevent {
    pub action: String,
    pub devpath: String,
    pub devname: String,
    pub subsystem: String,
    pub seqnum: String,
    pub interface: String,
}

impl KataUevent {
    /// As Kata's `Uevent::new`: every `KEY=VALUE` field, the known keys kept.
    pub fn new(datagram: &[u8]) -> KataUevent {
        let mut ev = KataUevent::default();
        let text = String::from_utf8_lossy(datagram);
        for field in text.split('\0') {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "ACTION" => ev.action = value.to_owned(),
                "DEVPATH" => ev.devpath = value.to_owned(),
                "SUBSYSTEM" => ev.subsystem = value.to_owned(),
                "DEVNAME" => ev.devname = value.to_owned(),
                "INTERFACE" => ev.interface = value.to_owned(),
                "SEQNUM" => ev.seqnum = value.to_owned(),
                _ => {}
            }
        }
        ev
    }
}

/// Kata's `VirtioBlkPciMatcher`.
pub struct VirtioBlkPciMatcher {
    rex: regex::Regex,
}

impl VirtioBlkPciMatcher {
    /// `relpath` is the sysfs path of the PCI function below the root bus
    /// (`/0000:00:02.0/0000:01:00.0`), which Kata resolves before it starts waiting.
    pub fn new(relpath: &str) -> VirtioBlkPciMatcher {
        let re = format!(r"^/devices/pci0000:00{relpath}/virtio[0-9]+/block/");
        VirtioBlkPciMatcher {
            rex: regex::Regex::new(&re).expect("a valid matcher regex"),
        }
    }

    pub fn is_match(&self, ev: &KataUevent) -> bool {
        ev.subsystem == "block" && self.rex.is_match(&ev.devpath) && !ev.devname.is_empty()
    }
}

type Watcher = (VirtioBlkPciMatcher, SyncSender<KataUevent>);

#[derive(Default)]
struct Sandbox {
    uevent_map: HashMap<String, KataUevent>,
    uevent_watchers: Vec<Option<Watcher>>,
}

/// A Kata-style uevent listener thread on a uevent socket.
pub struct KataListener {
    sandbox: Arc<Mutex<Sandbox>>,
    /// Datagrams received.
    pub received: Arc<AtomicU64>,
    /// `ENOBUFS` seen.
    pub overflows: Arc<AtomicU64>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
    /// The listener thread's id.
    pub tid: u32,
}

impl KataListener {
    pub fn start(recv_buffer: usize) -> KataListener {
        KataListener::start_with(&SocketOptions::new().recv_buffer(recv_buffer))
    }

    /// [`start`](Self::start) on a socket opened with `options`.
    pub fn start_with(options: &SocketOptions) -> KataListener {
        let socket = options.open().expect("a uevent socket");
        let stopper = socket.stopper();
        let sandbox = Arc::new(Mutex::new(Sandbox::default()));
        let received = Arc::new(AtomicU64::new(0));
        let overflows = Arc::new(AtomicU64::new(0));
        let (tid_tx, tid_rx) = sync_channel(1);
        let (sb, rc, of) = (
            Arc::clone(&sandbox),
            Arc::clone(&received),
            Arc::clone(&overflows),
        );
        let thread = std::thread::Builder::new()
            .name("kata-listener".into())
            .spawn(move || {
                let _ = tid_tx.send(super::netns::gettid());
                let mut buf = vec![0u8; 8193];
                loop {
                    match socket.recv(&mut buf) {
                        Ok(Received::Datagram(env)) => {
                            if env.truncated || !env.is_from_kernel() {
                                continue;
                            }
                            let ev = KataUevent::new(env.bytes(&buf));
                            rc.fetch_add(1, Ordering::Release);
                            if ev.action != "add" {
                                continue;
                            }
                            let mut sb = sb.lock().unwrap();
                            sb.uevent_map.insert(ev.devpath.clone(), ev.clone());
                            for watch in &mut sb.uevent_watchers {
                                if watch.as_ref().is_some_and(|(m, _)| m.is_match(&ev)) {
                                    let (_, sender) = watch.take().unwrap();
                                    let _ = sender.send(ev.clone());
                                }
                            }
                        }
                        Ok(Received::Overflow) => {
                            of.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Received::TimedOut) => {}
                        Ok(Received::Stopped) | Err(_) => break,
                    }
                }
            })
            .expect("spawning the Kata-style listener");
        let tid = tid_rx.recv().expect("the listener's thread id");
        KataListener {
            sandbox,
            received,
            overflows,
            stopper,
            thread: Some(thread),
            tid,
        }
    }

    /// Registers a watcher, as Kata's `wait_for_uevent` does; the receiver gets the event.
    pub fn watch(&self, matcher: VirtioBlkPciMatcher) -> Receiver<KataUevent> {
        let (tx, rx) = sync_channel(1);
        self.sandbox
            .lock()
            .unwrap()
            .uevent_watchers
            .push(Some((matcher, tx)));
        rx
    }

    /// A function that holds the sandbox lock for a while, as a busy agent would: the
    /// listener stalls meanwhile.
    pub fn staller(&self) -> Box<dyn Fn(std::time::Duration) + Send> {
        let sandbox = Arc::clone(&self.sandbox);
        Box::new(move |d| {
            let _sb = sandbox.lock().unwrap();
            std::thread::sleep(d);
        })
    }

    /// Runs `f` while holding the sandbox lock, as a busy agent would: the listener stalls at
    /// the first `add` it receives meanwhile.
    pub fn while_held<T>(&self, f: impl FnOnce() -> T) -> T {
        let _sb = self.sandbox.lock().unwrap();
        f()
    }

    /// The devpaths recorded, what Kata answers later waits from.
    pub fn recorded(&self) -> usize {
        self.sandbox.lock().unwrap().uevent_map.len()
    }

    /// Stops the thread and drops every watcher (their receivers then see a disconnect).
    pub fn stop(mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sandbox.lock().unwrap().uevent_watchers.clear();
    }
}

/// The `i`th of the paths that waiters on nothing use: under other root complexes, so that
/// nothing a bench injects ever touches them.
pub fn unrelated_path(i: usize) -> pciplug::PciPath {
    format!(
        "pci{:04x}:00/{:02x}/{:02x}",
        0x100 + i / 1024,
        (i / 32) % 32,
        i % 32
    )
    .parse()
    .expect("a well-formed PCI path")
}

/// What Kata's agent would resolve [`unrelated_path`]`(i)` to (below `pci0000:00`, which its
/// regex names).
pub fn unrelated_relpath(i: usize) -> String {
    format!(
        "/0000:00:1f.7/0000:{:02x}:{:02x}.0/0000:ff:{:02x}.0",
        i / 1024 + 1,
        (i / 32) % 32,
        i % 32
    )
}
