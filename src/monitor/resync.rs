//! A resync after lost events: drain, rescan sysfs in a scanner thread while the listener
//! holds what arrives (`held.rs`), reconcile, apply what was held; paced by `pacing.rs`.

use std::io;
use std::ops::ControlFlow;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::held::{Held, MAX_HELD_BYTES};
use super::pacing::Pacing;
use super::thread::{Listener, Step, publish};
use crate::error::Result;
use crate::netlink::Received;
use crate::registry::Registry;
use crate::wait::error::ListenerStopped;

impl Listener {
    /// After an overflow: drain what is queued (the kernel drops new events until the queue
    /// is empty), rescan sysfs while holding what the socket receives meanwhile (`held.rs`),
    /// reconcile, then apply what was held. Returns `Some(reason)` if the thread must stop;
    /// `None` to go on listening, also after a rescan that failed. Overflows seen during the
    /// rescan make one more resync owed (`owed`), paced after this one.
    pub(super) fn resync(
        &self,
        buf: &mut [u8],
        pacing: &mut Pacing,
        owed: &mut Option<Instant>,
    ) -> Option<ListenerStopped> {
        // 1. Drain until the socket is empty (non-blocking receives until EAGAIN), with the
        //    same step as the listening loop: what is queued is applied, not lost, and an
        //    overflow meanwhile is counted and covered by this resync.
        loop {
            let received = self.socket.recv_timeout(buf, Duration::ZERO);
            match self.step(received, buf) {
                Step::Next | Step::Overflow => {}
                Step::Drained => break,
                Step::Stop(why) => return Some(why),
            }
        }
        // 2. Rescan, taking what the socket receives meanwhile between the devices it reads,
        //    so that the socket's buffer does not overflow again while sysfs is read. Its
        //    start and end space the next one.
        let start = Instant::now();
        self.during_rescan();
        let mut held = Held::default();
        let truth = self.rescan(buf, &mut held);
        pacing.ran(start, Instant::now());
        let truth = match truth {
            Rescanned::Stop(why) => return Some(why),
            Rescanned::Failed => None,
            Rescanned::Read(truth) => Some(truth),
        };
        // 3. Reconcile, and wake whoever waits on a path that changed: an answer that
        //    appeared during the rescan is in `truth`, or in what was held, and its waiter is
        //    woken here or in step 4. A rescan that failed (counted) leaves the registry as
        //    it is.
        if let Some(truth) = truth {
            let shared = &*self.shared;
            let mut st = shared.state.lock();
            let changes = st.registry.reconcile(*truth);
            shared.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                changes = changes.len(),
                held = held.len(),
                "resynced from sysfs after lost uevents"
            );
            publish(shared, st, changes);
        }
        // 4. What was held, in the order received, with the listening loop's own step: after
        //    the reconcile, as the datagrams still queued in the socket (see `held.rs` for why
        //    that order is right). An overflow among them was counted when it was received.
        //    Applying thousands takes milliseconds, as long as a small buffer lasts under a
        //    storm: the socket is still taken from meanwhile, behind what is held.
        let mut next = 0;
        while let Some((env, bytes)) = held.get(next) {
            if let Step::Stop(why) = self.step(Ok(Received::Datagram(env)), bytes) {
                return Some(why);
            }
            next += 1;
            if next % HOLD_EVERY == 0 {
                if let ControlFlow::Break(why) = self.hold_queued(buf, &mut held) {
                    return Some(why);
                }
            }
        }
        if held.overflowed {
            // However many came during the rescan: one more resync, paced after this one.
            tracing::warn!("uevent socket overflowed during the rescan: one more resync owed");
            *owed = Some(pacing.earliest().unwrap_or_else(Instant::now));
        }
        None
    }

    /// Between two devices of a rescan: takes what the socket queued into `held`, with
    /// zero-timeout receives, until it is empty or `held` has no room for one more datagram
    /// (the rest then waits in the socket). `Break(reason)` if the thread must stop.
    fn hold_queued(&self, buf: &mut [u8], held: &mut Held) -> ControlFlow<ListenerStopped> {
        while held.has_room(buf.len()) {
            match self.socket.recv_timeout(buf, Duration::ZERO) {
                Ok(Received::Datagram(env)) => held.push(env, env.bytes(buf)),
                Ok(Received::TimedOut) => break,
                other => match self.step(other, buf) {
                    // Counted by the step; owes one more resync once this one is done.
                    Step::Overflow => held.overflowed = true,
                    Step::Stop(why) => return ControlFlow::Break(why),
                    Step::Next | Step::Drained => {}
                },
            }
        }
        ControlFlow::Continue(())
    }

    /// The number of the rescan under way (the first is 1), for the test hooks.
    #[cfg(any(test, feature = "test-support"))]
    fn rescan_number(&self) -> u64 {
        let c = &self.shared.counters;
        c.resyncs.load(Ordering::Relaxed) + c.resync_failures.load(Ordering::Relaxed) + 1
    }

    /// The test's resync hook, if any, with the number of this rescan.
    #[cfg(any(test, feature = "test-support"))]
    fn during_rescan(&self) {
        if let Some(hook) = &self.resync_hook {
            hook.call(self.rescan_number());
        }
    }

    /// Without test support there is no resync hook.
    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    fn during_rescan(&self) {}

    /// The test's scan tick hook, if any, with the number of this rescan and of the tick.
    #[cfg(any(test, feature = "test-support"))]
    fn scan_tick(&self, tick: u64) {
        if let Some(hook) = &self.scan_tick_hook {
            hook.call(self.rescan_number(), tick);
        }
    }

    /// Whether a test asked for the rescan in the listener's thread.
    #[cfg(any(test, feature = "test-support"))]
    fn forced_in_listener(&self) -> bool {
        self.rescan_in_listener
    }

    /// Without test support the scanner thread is always tried.
    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    fn forced_in_listener(&self) -> bool {
        false
    }

    /// Without test support there is no scan tick hook.
    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    fn scan_tick(&self, _tick: u64) {}

    /// A registry of what sysfs shows now, read by a scanner thread while this one holds
    /// what the socket receives (`held`); failed (counted and logged) if sysfs cannot be read.
    fn rescan(&self, buf: &mut [u8], held: &mut Held) -> Rescanned {
        let stop = AtomicBool::new(false);
        let scanned = thread::scope(|scope| {
            let scanner = if self.forced_in_listener() {
                Err(io::Error::other("forced by the test"))
            } else {
                thread::Builder::new()
                    .name("pciplug-rescan".into())
                    .spawn_scoped(scope, || {
                        // Below the listener, and the threads the kernel's senders run in: a rescan
                        // gives way to them, rather than leave datagrams queued behind it.
                        if let Err(e) = crate::netlink::sys::lower_thread_priority(RESCAN_NICE) {
                            tracing::debug!("rescan thread at the listener's priority: {e}");
                        }
                        self.scan(&stop)
                    })
            };
            let scanner = match scanner {
                Ok(scanner) => scanner,
                Err(e) => {
                    tracing::warn!("no rescan thread ({e}): rescanning in the listener's");
                    return self.scan_holding(buf, held);
                }
            };
            let mut why = None;
            while !scanner.is_finished() {
                if !held.has_room(buf.len()) {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                match self.socket.recv_timeout(buf, SCANNER_CHECK) {
                    Ok(Received::Datagram(env)) => held.push(env, env.bytes(buf)),
                    Ok(Received::TimedOut) => {}
                    other => match self.step(other, buf) {
                        Step::Overflow => held.overflowed = true,
                        Step::Stop(reason) => {
                            stop.store(true, Ordering::Relaxed);
                            why = Some(reason);
                            break;
                        }
                        Step::Next | Step::Drained => {}
                    },
                }
            }
            let scanned = scanner
                .join()
                .unwrap_or_else(|panic| panic::resume_unwind(panic));
            match why {
                Some(why) => Ok(ControlFlow::Break(why)),
                None => scanned.map(|s| match s {
                    ControlFlow::Continue(r) => ControlFlow::Continue(r),
                    ControlFlow::Break(()) => ControlFlow::Break(ListenerStopped::ShutDown),
                }),
            }
        });
        if !held.has_room(buf.len()) {
            tracing::warn!(
                held = held.len(),
                "a rescan held all it may ({MAX_HELD_BYTES} bytes); the rest waited in the socket"
            );
        }
        match scanned {
            Ok(ControlFlow::Continue(r)) => Rescanned::Read(r),
            Ok(ControlFlow::Break(why)) => Rescanned::Stop(why),
            Err(e) => {
                self.shared
                    .counters
                    .resync_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("resync after lost uevents failed: {e}; the registry may be stale");
                Rescanned::Failed
            }
        }
    }

    /// The scanner thread's work: sysfs read into a registry; broken off once `stop` is set.
    fn scan(&self, stop: &AtomicBool) -> Result<ControlFlow<(), Box<Registry>>> {
        let mut tick = 0;
        let scanned = self.sysfs.scan_between(&mut || {
            tick += 1;
            self.scan_tick(tick);
            if stop.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(match scanned {
            ControlFlow::Continue(snapshot) => {
                ControlFlow::Continue(Box::new(self.sysfs.registry_of(&snapshot)))
            }
            ControlFlow::Break(()) => ControlFlow::Break(()),
        })
    }

    /// Without a scanner thread: the scan in this one, holding what the socket receives
    /// between the devices it reads.
    fn scan_holding(
        &self,
        buf: &mut [u8],
        held: &mut Held,
    ) -> Result<ControlFlow<ListenerStopped, Box<Registry>>> {
        let mut tick = 0;
        let scanned = self.sysfs.scan_between(&mut || {
            tick += 1;
            self.scan_tick(tick);
            self.hold_queued(buf, held)
        })?;
        Ok(match scanned {
            ControlFlow::Continue(snapshot) => {
                ControlFlow::Continue(Box::new(self.sysfs.registry_of(&snapshot)))
            }
            ControlFlow::Break(why) => ControlFlow::Break(why),
        })
    }
}

/// How much lower than the listener's the scanner thread's priority is (nice value): at +10 a
/// CPU-bound thread gets about a tenth of what one at +0 gets where they compete, so a rescan
/// on a busy machine takes longer, rather than push the listener off the CPU while a storm
/// fills the socket.
const RESCAN_NICE: libc::c_int = 10;

/// How often the listener looks whether the scanner thread is done, when nothing arrives.
const SCANNER_CHECK: Duration = Duration::from_millis(1);

/// While the held datagrams are applied, the socket is read again after every this many: 64
/// applied take some 10-20 us, far less than a 64 KiB buffer lasts at the kernel's rate (about
/// 100 datagrams), and one zero-timeout receive that finds nothing costs about 1 us.
const HOLD_EVERY: usize = 64;

/// What a rescan gave.
enum Rescanned {
    /// What sysfs shows.
    Read(Box<Registry>),
    /// Sysfs could not be read (counted and logged).
    Failed,
    /// The thread must stop, for this reason (seen while holding datagrams).
    Stop(ListenerStopped),
}
