//! [`Gate`]: holds the listener thread itself up on request, as a busy agent's listener
//! would be, so that what the kernel sends queues in the socket (or overflows it): the
//! builder's fault hook blocks the listener on the next datagram it receives while the gate is
//! shut. (Holding the state lock does not do it: the listener goes on receiving while another
//! thread holds the lock.) Open, the hook costs one atomic load per datagram.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Shut: the listener stops at its next datagram until it opens.
#[derive(Clone, Default)]
pub struct Gate(Arc<Inner>);

#[derive(Default)]
struct Inner {
    shut: AtomicBool,
    lock: Mutex<()>,
    opened: Condvar,
}

impl Gate {
    /// A fault hook that lets every datagram through to `inner` once the gate is open.
    pub fn hook(
        &self,
        inner: impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static,
    ) -> impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static {
        let gate = self.clone();
        move |d| {
            let g = &*gate.0;
            if g.shut.load(Ordering::Acquire) {
                let mut l = g.lock.lock().unwrap();
                while g.shut.load(Ordering::Acquire) {
                    l = g.opened.wait(l).unwrap();
                }
            }
            inner(d)
        }
    }

    /// Runs `f` with the gate shut: the listener stops at the first datagram it receives
    /// meanwhile, and what `f` sends after it stays in the socket (or overflows it).
    pub fn shut_while<T>(&self, f: impl FnOnce() -> T) -> T {
        let g = &*self.0;
        g.shut.store(true, Ordering::Release);
        let out = f();
        let _l = g.lock.lock().unwrap();
        g.shut.store(false, Ordering::Release);
        g.opened.notify_all();
        out
    }
}
