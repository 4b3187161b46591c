//! Running the `pciplug` binary: arguments, stdin, a timeout, and what it exited with and
//! printed.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::eventually;

/// How long a command may run unless the test says otherwise: far beyond any `--timeout` the
/// tests pass, so that only a hang reaches it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// `pciplug <args>`, not yet started: stdin empty (`/dev/null`) unless [`Pciplug::stdin`]
/// gives it bytes, stdout and stderr captured.
pub struct Pciplug {
    command: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// `pciplug` with `args`.
pub fn pciplug<I, S>(args: I) -> Pciplug
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_pciplug"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Pciplug {
        command,
        stdin: None,
        timeout: DEFAULT_TIMEOUT,
    }
}

/// What a finished command exited with and printed (lossily decoded).
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The exit code; panics if a signal ended the command.
    #[track_caller]
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal, not exited: {self:?}"))
    }
}

impl Pciplug {
    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.command.args(args);
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Bytes to write to its stdin, which is then closed.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.command.stdin(Stdio::piped());
        self.stdin = Some(bytes.into());
        self
    }

    /// Where its stdout goes instead of being captured (a closed pipe, say).
    pub fn stdout(mut self, to: impl Into<Stdio>) -> Self {
        self.command.stdout(to);
        self
    }

    /// Where its stderr goes instead of being captured.
    pub fn stderr(mut self, to: impl Into<Stdio>) -> Self {
        self.command.stderr(to);
        self
    }

    /// How long it may run before it is killed and the test fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs it to the end.
    #[track_caller]
    pub fn run(self) -> Ran {
        self.spawn().finish()
    }

    /// Starts it; [`Running::finish`] waits for it.
    #[track_caller]
    pub fn spawn(mut self) -> Running {
        let what = format!("{:?}", self.command);
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        if let Some(bytes) = self.stdin {
            let mut stdin = child.stdin.take().expect("piped stdin");
            // A command that exits without reading its stdin is not this helper's failure.
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        Running {
            child,
            what,
            timeout: self.timeout,
        }
    }
}

/// A started command.
pub struct Running {
    child: Child,
    what: String,
    timeout: Duration,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout, to read as it prints (it is then not part of [`Running::finish`]'s result).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("a captured stdout")
    }

    /// Waits for it to exit, at most its timeout (then kills it and fails the test).
    #[track_caller]
    pub fn finish(mut self) -> Ran {
        let stdout = self.child.stdout.take().map(read_all);
        let stderr = self.child.stderr.take().map(read_all);
        let exited = eventually(self.timeout, || {
            self.child
                .try_wait()
                .expect("waiting for pciplug")
                .is_some()
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("{} still running after {:?}", self.what, self.timeout);
        }
        let status = self.child.wait().expect("waiting for pciplug");
        let text = |reader: Option<thread::JoinHandle<String>>| {
            reader.map_or_else(String::new, |r| r.join().expect("reading pciplug's output"))
        };
        Ran {
            status,
            stdout: text(stdout),
            stderr: text(stderr),
        }
    }

    /// Kills it (a `watch` that never ends by itself) and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("killing pciplug");
        self.child.wait().expect("reaping pciplug");
    }
}

/// Reads a pipe to its end in a thread of its own, so that a full pipe never blocks the child.
fn read_all(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes).expect("reading a pipe");
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
