//! [`Gate`]: holds the listener thread itself up on request, as a busy agent's listener
//! would be, so that the kernel's queue overflows: the builder's fault hook blocks the
//! listener on the next datagram it receives while the gate is shut. (Holding the state lock
//! no longer does it: the listener goes on receiving while another thread holds the lock.)

use std::io;
use std::sync::{Arc, Condvar, Mutex};

/// Shut: the listener stops at its next datagram until it opens.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// A fault hook that lets every datagram through to `inner` once the gate is open.
    pub fn hook(
        &self,
        inner: impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static,
    ) -> impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static {
        let gate = self.clone();
        move |d| {
            let (shut, opened) = &*gate.0;
            let mut s = shut.lock().unwrap();
            while *s {
                s = opened.wait(s).unwrap();
            }
            drop(s);
            inner(d)
        }
    }

    /// Runs `f` with the gate shut: the listener stops at the first datagram it receives
    /// meanwhile, and what `f` sends after it stays in the socket (or overflows it).
    pub fn shut_while<T>(&self, f: impl FnOnce() -> T) -> T {
        let (shut, opened) = &*self.0;
        *shut.lock().unwrap() = true;
        let out = f();
        *shut.lock().unwrap() = false;
        opened.notify_all();
        out
    }
}
