//! The subsystem filter: a classic BPF socket filter that drops, in the kernel, the uevents of
//! subsystems the registry does not keep, so that a storm of them (modules loading, memory
//! blocks coming online, `bdi`, `virtio`, `wakeup` and `queues` objects around every hot-plug)
//! is never queued on the socket, never wakes the listener and never overflows its buffer.
//!
//! The kernel builds every uevent the same way (`lib/kobject_uevent.c`): the header
//! `ACTION@DEVPATH\0`, then `ACTION=`, `DEVPATH=` and `SUBSYSTEM=` as the first three fields,
//! then the rest, `SEQNUM=` last. With the header `H` bytes long (its NUL included) the
//! `ACTION=` field starts at offset `H` and `SUBSYSTEM=` at `2H + 15`: the `ACTION=` and
//! `DEVPATH=` fields repeat the header's two parts, with 7 + 1 + 8 + 1 bytes of keys and NULs.
//! The filter finds the header's NUL, checks that `ACTION=` and `SUBSYSTEM=` are where that
//! layout puts them, and drops the datagram only if the subsystem's value is not one of
//! [`kept_subsystems`] (`pci`, `block`, `net`, `nvme`, `vfio`: the ones
//! [`Registry`](crate::Registry) reads; the program's comparisons are generated from that
//! list). Everything else reaches the socket as before: a datagram laid out otherwise, one
//! whose header has no NUL in its first [`SCAN`] bytes, one too short for the checks.
//!
//! So nothing the registry reads is dropped, save a datagram laid out as the kernel's whose
//! third field names an untracked subsystem and a later `SUBSYSTEM=` a tracked one: the kernel
//! never sends a second one, and only a process with `CAP_SYS_ADMIN` over the network
//! namespace can inject such a datagram. What else it drops the registry would have ignored,
//! or counted and refused: a malformed datagram (or a forgery from a process) whose third
//! field names an untracked subsystem is dropped unseen, and not counted as malformed (or
//! spoofed) in [`Stats`](crate::Stats).
//!
//! A socket filter runs in the sender's context, for the kernel's uevents the thread that
//! sends them, before the datagram is queued: a dropped one is never counted against the
//! receive buffer. [`passes`] is the same decision in Rust, for tests and for callers that
//! must know what the socket will not deliver (the benches count with it).
//!
//! Classic BPF has no loops and its conditional jumps reach at most 255 instructions ahead, so
//! the search for the header's NUL is unrolled, a word of four bytes at a time (six
//! instructions a word and three per 16 bytes for the length check: 387 in all, well under
//! the kernel's limit of 4,096, `BPF_MAXINSNS`; the kernel checks and compiles a program when
//! the socket is opened, in time that grows with its length); per datagram it runs about 1.2
//! per byte of the header. An out-of-bounds load would end a classic BPF program with a drop,
//! so every load is checked against the datagram's length first. A header with a byte above
//! 0x80 (no real devpath has one) is kept unfiltered.

use crate::devpath;

/// Bytes of the header searched for its NUL; a longer header (no real devpath comes near it:
/// the longest in the recordings is 129 bytes) passes unfiltered.
pub const SCAN: usize = 192;

/// The scan checks the datagram's length once per this many bytes.
const GROUP: usize = 16;

/// Instructions of the scan: per group a length check (3) and per word 6.
const SCAN_LEN: usize = (SCAN / GROUP) * (3 + 6 * GROUP / 4);

// Classic BPF, from `<linux/bpf_common.h>` and `<linux/filter.h>`.
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_MISC: u16 = 0x07;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IMM: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MEM: u16 = 0x60;
const BPF_LEN: u16 = 0x80;
const BPF_ST: u16 = 0x02;
const BPF_STX: u16 = 0x03;
const BPF_SUB: u16 = 0x10;
const BPF_AND: u16 = 0x50;
const BPF_TXA: u16 = 0x80;
const BPF_ADD: u16 = 0x00;
const BPF_LSH: u16 = 0x60;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_K: u16 = 0x00;
const BPF_X: u16 = 0x08;
const BPF_TAX: u16 = 0x00;

/// A filter's return: the bytes of the datagram to keep (all of it), or none (drop).
const KEEP: u32 = u32::MAX;
const DROP: u32 = 0;

/// `ACTION=`'s first four bytes and the next four (`ION=`), as big-endian words (what a
/// classic BPF word load gives).
const ACTI: u32 = u32::from_be_bytes(*b"ACTI");
const ION_EQ: u32 = u32::from_be_bytes(*b"ION=");
const SUBS: u32 = u32::from_be_bytes(*b"SUBS");
const YSTE: u32 = u32::from_be_bytes(*b"YSTE");
const M_EQ: u32 = u16::from_be_bytes(*b"M=") as u32;
/// Bytes from the start of `SUBSYSTEM=` that the checks read: the key (10) and a value of up to
/// [`MAX_KEPT_LEN`] bytes with its NUL.
const SUBSYSTEM_FIELD: u32 = 10 + MAX_KEPT_LEN as u32 + 1;

/// The longest subsystem name the filter can keep (`block`).
const MAX_KEPT_LEN: usize = 5;

/// The subsystems whose uevents the filter keeps: those the registry reads
/// (`uevent::TRACKED_SUBSYSTEMS`, and `vfio` for VFIO groups), one rule.
pub fn kept_subsystems() -> impl Iterator<Item = &'static str> {
    crate::uevent::TRACKED_SUBSYSTEMS
        .into_iter()
        .chain([devpath::VFIO_SUBSYSTEM])
}

/// How the program compares a kept subsystem's value (its name and NUL, at most six bytes):
/// the first four bytes as a word, under a mask when the name is shorter than three bytes, and
/// what follows them (none, a byte, or a half-word).
fn value_checks(name: &str) -> (u32, u32, Option<(u16, u32)>) {
    let mut v = [0u8; 6];
    v[..name.len()].copy_from_slice(name.as_bytes());
    let len = name.len() + 1;
    let mask = if len >= 4 {
        u32::MAX
    } else {
        u32::MAX << (8 * (4 - len))
    };
    let word = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) & mask;
    let rest = match len {
        0..=4 => None,
        5 => Some((BPF_B, u32::from(v[4]))),
        _ => Some((BPF_H, u32::from(u16::from_be_bytes([v[4], v[5]])))),
    };
    (word, mask, rest)
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program (see the module's documentation).
pub fn program() -> Vec<libc::sock_filter> {
    let mut p = Vec::with_capacity(SCAN_LEN + 60);
    // X = M[1] = the datagram's length, for the bounds checks.
    p.push(stmt(BPF_LDX | BPF_W | BPF_LEN, 0));
    p.push(stmt(BPF_STX, 1));
    // The scan, [`GROUP`] bytes at a time, each a word at a time: a group that reaches past
    // the datagram's end → keep; a word with a NUL → A = its offset, to `found`.
    // `(w - 0x01010101) & 0x80808080` is not zero for a word holding a zero byte, and for no
    // word of four ASCII bytes without one (no borrow crosses a byte then); a word with a byte
    // above 0x80 may give a false hit, which `found` sends to keep.
    let found = p.len() + SCAN_LEN + 1;
    for g in (0..SCAN).step_by(GROUP) {
        p.push(stmt(BPF_LD | BPF_IMM, (g + GROUP) as u32));
        p.push(jump(BPF_JMP | BPF_JGT | BPF_X, 0, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, KEEP));
        for k in (g..g + GROUP).step_by(4) {
            let k = k as u32;
            p.push(stmt(BPF_LD | BPF_W | BPF_ABS, k));
            p.push(stmt(BPF_ALU | BPF_SUB | BPF_K, 0x0101_0101));
            p.push(stmt(BPF_ALU | BPF_AND | BPF_K, 0x8080_8080));
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0));
            p.push(stmt(BPF_LD | BPF_IMM, k));
            // `ja` counts from the next instruction.
            p.push(stmt(BPF_JMP | BPF_JA, (found - (p.len() + 1)) as u32));
        }
    }
    // No NUL in the first SCAN bytes.
    p.push(stmt(BPF_RET | BPF_K, KEEP));
    debug_assert_eq!(p.len(), found);
    let mut checks = vec![
        // found: A = k, the word's offset. X = k; the first NUL of the word's bytes gives
        // A = H, the header's length (the NUL's offset + 1); none (a false hit) → keep.
        stmt(BPF_MISC | BPF_TAX, 0),
    ];
    for j in 0..4 {
        checks.extend([
            stmt(BPF_LD | BPF_B | BPF_IND, j),
            jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
            stmt(BPF_MISC | BPF_TXA, 0),
            stmt(BPF_ALU | BPF_ADD | BPF_K, j + 1),
            stmt(BPF_JMP | BPF_JA, 0), // to `header`, resolved below
        ]);
    }
    checks.push(stmt(BPF_RET | BPF_K, KEEP));
    // header: M[0] = H.
    let header = checks.len();
    checks.extend([
        stmt(BPF_ST, 0),
        // A = 2H + 15 + 16: the end of what the checks read; past the datagram's end → keep.
        stmt(BPF_ALU | BPF_LSH | BPF_K, 1),
        stmt(BPF_ALU | BPF_ADD | BPF_K, 15 + SUBSYSTEM_FIELD),
        stmt(BPF_LDX | BPF_W | BPF_MEM, 1),
        jump(BPF_JMP | BPF_JGT | BPF_X, 0, KEEP_AT, 0),
        // `ACTION=` at H.
        stmt(BPF_LDX | BPF_W | BPF_MEM, 0),
        stmt(BPF_LD | BPF_W | BPF_IND, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, ACTI, 0, KEEP_AT),
        stmt(BPF_LD | BPF_W | BPF_IND, 3),
        jump(BPF_JMP | BPF_JEQ | BPF_K, ION_EQ, 0, KEEP_AT),
        // X = 2H + 15: `SUBSYSTEM=` there.
        stmt(BPF_LD | BPF_W | BPF_MEM, 0),
        stmt(BPF_ALU | BPF_LSH | BPF_K, 1),
        stmt(BPF_ALU | BPF_ADD | BPF_K, 15),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_IND, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, SUBS, 0, KEEP_AT),
        stmt(BPF_LD | BPF_W | BPF_IND, 4),
        jump(BPF_JMP | BPF_JEQ | BPF_K, YSTE, 0, KEEP_AT),
        stmt(BPF_LD | BPF_H | BPF_IND, 8),
        jump(BPF_JMP | BPF_JEQ | BPF_K, M_EQ, 0, KEEP_AT),
    ]);
    // The value: each kept subsystem in turn (its word, then what follows); none → drop. A
    // mismatch jumps to the next one's first instruction (`NEXT`).
    let mut starts = Vec::new();
    for name in kept_subsystems() {
        starts.push(checks.len());
        assert!(
            (1..=MAX_KEPT_LEN).contains(&name.len()),
            "the filter compares subsystem names of 1 to {MAX_KEPT_LEN} bytes: {name}"
        );
        let (word, mask, rest) = value_checks(name);
        checks.push(stmt(BPF_LD | BPF_W | BPF_IND, 10));
        if mask != u32::MAX {
            checks.push(stmt(BPF_ALU | BPF_AND | BPF_K, mask));
        }
        match rest {
            None => checks.push(jump(BPF_JMP | BPF_JEQ | BPF_K, word, KEEP_AT, NEXT)),
            Some((size, value)) => {
                checks.push(jump(BPF_JMP | BPF_JEQ | BPF_K, word, 0, NEXT));
                checks.push(stmt(BPF_LD | size | BPF_IND, 14));
                checks.push(jump(BPF_JMP | BPF_JEQ | BPF_K, value, KEEP_AT, NEXT));
            }
        }
    }
    // drop, keep
    let drop_at = checks.len();
    checks.push(stmt(BPF_RET | BPF_K, DROP));
    let keep_at = checks.len();
    checks.push(stmt(BPF_RET | BPF_K, KEEP));
    // The jump targets marked with placeholders, resolved against the block's layout.
    for (i, ins) in checks.iter_mut().enumerate() {
        if ins.code == BPF_JMP | BPF_JA {
            ins.k = (header - (i + 1)) as u32;
            continue;
        }
        let next = starts.iter().copied().find(|&e| e > i).unwrap_or(drop_at);
        let target = |mark: u8| -> u8 {
            let to = match mark {
                KEEP_AT => keep_at,
                NEXT => next,
                _ => return mark,
            };
            // Relative to the next instruction; every target lies ahead.
            u8::try_from(to - (i + 1)).expect("a short forward jump")
        };
        if ins.code & 0x07 == BPF_JMP {
            ins.jt = target(ins.jt);
            ins.jf = target(ins.jf);
        }
    }
    p.extend(checks);
    p
}

// Placeholders for the check block's jump targets (no real offset there is this large).
const KEEP_AT: u8 = 0xff;
/// To the next subsystem's comparison, or drop after the last.
const NEXT: u8 = 0xfd;

/// Whether the filter lets `datagram` through: the program's decision, in Rust.
pub fn passes(datagram: &[u8]) -> bool {
    let d = datagram;
    let Some(h) = header_len(d) else {
        return true;
    };
    let at = 2 * h + 15;
    if at + SUBSYSTEM_FIELD as usize > d.len() {
        return true;
    }
    if &d[h..h + 7] != b"ACTION=" || &d[at..at + 10] != b"SUBSYSTEM=" {
        return true;
    }
    let value = &d[at + 10..];
    kept_subsystems()
        .any(|name| value.starts_with(name.as_bytes()) && value.get(name.len()) == Some(&0))
}

/// The header's length (its NUL's offset + 1) as the program's scan finds it: a word of four
/// bytes at a time, in groups of [`GROUP`] bytes within the first [`SCAN`]; `None` where the
/// program keeps the datagram without looking further (no NUL there, a group reaching past the
/// datagram's end before the NUL's word, or a word with a byte above 0x80 before it).
fn header_len(d: &[u8]) -> Option<usize> {
    for g in (0..SCAN).step_by(GROUP) {
        let group = d.get(g..g + GROUP)?;
        for (i, word) in group.chunks_exact(4).enumerate() {
            if let Some(j) = word.iter().position(|&b| b == 0) {
                return Some(g + 4 * i + j + 1);
            }
            if word.iter().any(|&b| b > 0x80) {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's layout, with `SEQNUM=` after the fields.
    fn uevent(action: &str, devpath: &str, subsystem: &str, rest: &str) -> Vec<u8> {
        format!(
            "{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0{rest}SEQNUM=7\0"
        )
        .into_bytes()
    }

    #[test]
    fn the_program_fits_the_kernel_and_jumps_forward_only() {
        let p = program();
        assert!(p.len() <= 4096, "{} instructions", p.len());
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == BPF_JMP {
                let reach = if ins.code & 0xf0 == BPF_JA {
                    ins.k as usize
                } else {
                    usize::from(ins.jt.max(ins.jf))
                };
                assert!(i + 1 + reach < p.len(), "instruction {i} jumps out");
            }
        }
        assert_eq!(
            p.last().map(|i| (i.code, i.k)),
            Some((BPF_RET | BPF_K, KEEP))
        );
    }

    #[test]
    fn a_value_is_compared_with_its_nul_and_nothing_after_it() {
        assert_eq!(
            value_checks("pci"),
            (u32::from_be_bytes(*b"pci\0"), u32::MAX, None)
        );
        assert_eq!(
            value_checks("nvme"),
            (u32::from_be_bytes(*b"nvme"), u32::MAX, Some((BPF_B, 0)))
        );
        assert_eq!(
            value_checks("block"),
            (
                u32::from_be_bytes(*b"bloc"),
                u32::MAX,
                Some((BPF_H, u32::from(u16::from_be_bytes(*b"k\0"))))
            )
        );
        // Shorter names: the bytes after the NUL masked off.
        assert_eq!(
            value_checks("ab"),
            (u32::from_be_bytes(*b"ab\0\0"), 0xffff_ff00, None)
        );
        assert_eq!(
            value_checks("a"),
            (u32::from_be_bytes(*b"a\0\0\0"), 0xffff_0000, None)
        );
    }

    #[test]
    fn keeps_the_tracked_subsystems_and_drops_the_others() {
        let dp = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0";
        for s in kept_subsystems() {
            assert!(passes(&uevent("add", dp, s, "")), "{s}");
        }
        for s in [
            "virtio",
            "bdi",
            "module",
            "nvme-subsystem",
            "nvme-generic",
            "vfio-dev",
            "blockx",
            "pcie",
            "pc",
            "",
        ] {
            assert!(!passes(&uevent("add", dp, s, "")), "{s:?}");
        }
    }

    #[test]
    fn passes_what_is_not_laid_out_as_the_kernel_lays_it_out() {
        let dp = "/devices/virtual/misc/x";
        // Fields in another order, a missing field, a short datagram, no NUL, a long header.
        let odd = [
            format!("add@{dp}\0DEVPATH={dp}\0ACTION=add\0SUBSYSTEM=misc\0SEQNUM=1\0").into_bytes(),
            format!("add@{dp}\0ACTION=add\0SUBSYSTEM=misc\0SEQNUM=1\0").into_bytes(),
            format!("add@{dp}\0ACTION=change\0DEVPATH={dp}\0SUBSYSTEM=misc\0SEQNUM=1\0")
                .into_bytes(),
            format!("add@{dp}\0ACTION=add\0DEVPATH={dp}\0SUBSYSTEM=misc\0").into_bytes(),
            b"add@/x".to_vec(),
            Vec::new(),
            uevent("add", &format!("/devices/{}", "a".repeat(SCAN)), "misc", ""),
            // A byte above 0x80 in the header: kept without looking further.
            uevent("add", "/devices/virtual/caf\u{e9}/misc/x", "misc", ""),
        ];
        for d in &odd {
            assert!(passes(d), "{:?}", String::from_utf8_lossy(d));
        }
        // The same, laid out as the kernel does: dropped.
        assert!(!passes(&uevent("add", dp, "misc", "")));
        assert!(!passes(&uevent(
            "add",
            &format!("/devices/{}", "a".repeat(SCAN - 20)),
            "misc",
            ""
        )));
    }
}
