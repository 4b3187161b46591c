//! Uevent recordings: the `*.uevents` fixture format (v1) of `fixtures/real-hotplug/`.
//!
//! A recording is text. Lines starting with `#` are comments and blank lines are skipped;
//! every other line is one datagram as `recvmsg` returned it: `<nl_pid> <hex>`, the sender's
//! netlink port id in decimal (0 is the kernel) and the bytes in hex. A comment
//! `# ==== step N: ...` opens step `N`; the datagrams after it belong to that step.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::Registry;

/// One datagram of a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number in the file.
    pub line: usize,
    /// The sender's netlink port id (0 is the kernel).
    pub sender: u32,
    /// The step it belongs to, if the recording has step markers.
    pub step: Option<u32>,
    /// The datagram bytes.
    pub datagram: Vec<u8>,
}

/// A parsed recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// Where it was read from (for messages).
    pub file: PathBuf,
    /// Its datagrams, in receive order.
    pub records: Vec<Record>,
}

impl Recording {
    /// Reads and parses a recording file.
    pub fn read(file: impl AsRef<Path>) -> Result<Recording> {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("reading recording {}", file.display()), e))?;
        Recording::parse(&text, file)
    }

    /// Parses recording text; `file` names it in errors.
    ///
    /// A line that is not valid fixture syntax is an error naming the file and line. The
    /// datagram bytes themselves are not checked here: that is the registry's job, so that a
    /// well-formed line carrying a malformed datagram is skipped like the live listener
    /// would skip it.
    pub fn parse(text: &str, file: impl Into<PathBuf>) -> Result<Recording> {
        let file = file.into();
        let mut records = Vec::new();
        let mut step = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| Error::Recording {
                file: file.clone(),
                line,
                reason,
            };
            let l = raw.trim_end_matches('\r');
            if l.trim().is_empty() {
                continue;
            }
            if let Some(comment) = l.strip_prefix('#') {
                if let Some(rest) = comment.trim_start().strip_prefix("==== step ") {
                    let n = rest
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .unwrap_or("");
                    step =
                        Some(n.parse().map_err(|_| {
                            err(format!("step marker without a step number: {l:?}"))
                        })?);
                }
                continue;
            }
            let (pid, hex) = l
                .split_once(' ')
                .ok_or_else(|| err(format!("expected '<nl_pid> <hex>', found {:?}", shorten(l))))?;
            let sender: u32 = pid.parse().map_err(|_| {
                err(format!(
                    "sender port id {:?} is not a decimal u32",
                    shorten(pid)
                ))
            })?;
            let datagram = decode_hex(hex).map_err(err)?;
            records.push(Record {
                line,
                sender,
                step,
                datagram,
            });
        }
        Ok(Recording { file, records })
    }

    /// The step numbers present, in order of first appearance.
    pub fn steps(&self) -> Vec<u32> {
        let mut steps: Vec<u32> = Vec::new();
        for r in &self.records {
            if let Some(s) = r
                .step
                .filter(|s| steps.last() != Some(s) && !steps.contains(s))
            {
                steps.push(s);
            }
        }
        steps
    }

    /// Feeds every datagram into `registry`, datagram by datagram, logging what is skipped
    /// (spoofed senders, malformed datagrams) with `tracing` at warn level.
    pub fn replay_into(&self, registry: &mut Registry) {
        for r in &self.records {
            let outcome = registry.apply_datagram(r.sender, &r.datagram);
            outcome.log(&format_args!("{}:{}: ", self.file.display(), r.line));
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn decode_hex(hex: &str) -> std::result::Result<Vec<u8>, String> {
    use crate::hex::DecodeError;
    crate::hex::decode(hex).map_err(|e| match e {
        DecodeError::Empty => "empty datagram hex".into(),
        DecodeError::OddLength(n) => format!("datagram hex has an odd length ({n})"),
        DecodeError::NotHex { byte, at } => format!(
            "datagram hex has a non-hex character {:?} at column {}",
            char::from(byte),
            at + 1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_datagrams_steps_and_senders() {
        let text = "# header\n\n# ==== step 0: boot\n0 616200\n# ==== step 3: x\n1234 6300\n";
        let r = Recording::parse(text, "t.uevents").unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].datagram, b"ab\0");
        assert_eq!(r.records[0].step, Some(0));
        assert_eq!(
            (r.records[1].sender, r.records[1].step, r.records[1].line),
            (1234, Some(3), 6)
        );
        assert_eq!(r.steps(), [0, 3]);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = |t: &str| Recording::parse(t, "f.uevents").unwrap_err().to_string();
        assert_eq!(
            err("# c\n0 6g00\n"),
            "f.uevents:2: datagram hex has a non-hex character 'g' at column 2"
        );
        assert_eq!(
            err("0 616\n"),
            "f.uevents:1: datagram hex has an odd length (3)"
        );
        assert_eq!(
            err("x 6161\n"),
            "f.uevents:1: sender port id \"x\" is not a decimal u32"
        );
        assert_eq!(
            err("616100\n"),
            "f.uevents:1: expected '<nl_pid> <hex>', found \"616100\""
        );
        assert_eq!(err("0 \n"), "f.uevents:1: empty datagram hex");
        assert!(err("# ==== step x\n").contains("step marker"));
    }
}
