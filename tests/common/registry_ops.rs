//! A registry driven by a byte string: sequences of datagrams shaped like the real
//! recordings (reordered, renamed, re-numbered, re-sent, forged, corrupted), resyncs and NVMe
//! links, with the registry's invariants checked after every step.
//!
//! One interpreter serves the `registry` fuzz target (`fuzz/fuzz_targets/registry.rs`, which
//! includes this file by path) and its deterministic equivalent in `tests/fuzz_equivalents.rs`,
//! so a crash input found by the fuzzer replays as a plain test. It depends only on pciplug
//! and std.
#![allow(dead_code)] // each user takes its own subset

use std::collections::BTreeSet;

use pciplug::{
    Change, Datagram, DevType, Outcome, PciPath, Recording, Registry, is_safe_device_name,
};

/// Operations per input at most, so one input stays fast whatever its length.
pub const MAX_OPS: usize = 200;

/// The three gaps in `src/registry.rs` that the fuzzer found, fixed in 68fc8f5; the tests
/// named after them in `tests/fuzz_equivalents.rs` and the inputs under
/// `fuzz/regressions/registry/` keep them fixed:
///
/// 1. A `move` of an interface onto a name the function already holds, identical, dropped the
///    old name without reporting a change.
/// 2. Block and net names shared one index, so an interface renamed like a disk (`vda`)
///    took the disk away; in Linux they are separate namespaces.
/// 3. With two NVMe controllers in one PCI function, relinking one to another subsystem
///    unlinked the function from the first one although the other controller was still in
///    it, and reported the heads gone while they were still shown.
pub const FOUND: [&str; 3] = [
    "net-rename-onto-held-name",
    "block-and-net-names-are-separate-namespaces",
    "two-nvme-controllers-in-one-function",
];

/// Names the reshaping gives to devices of either class, so that names collide and are
/// reused, across block and net too (gap 2 of [`FOUND`]).
const NAMES: [&str; 10] = [
    "vda",
    "vdb",
    "vdb1",
    "vdc",
    "sda",
    "nvme0",
    "nvme0n1",
    "nvme0c0n1",
    "eth0",
    "ens4",
];

/// A name for a device, from [`NAMES`].
fn pick_name(input: &mut Input<'_>) -> Option<&'static str> {
    input.pick(&NAMES).copied()
}

const ACTIONS: [&str; 9] = [
    "add",
    "remove",
    "change",
    "move",
    "bind",
    "unbind",
    "online",
    "offline",
    "frobnicate",
];

/// The datagrams of the real recordings that the registry applies (the relevant ones, sent by
/// the kernel), deduplicated, in recording order: the shapes the interpreter starts from.
pub fn templates(recordings: &[Recording]) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rec in recordings {
        for r in &rec.records {
            let relevant = matches!(Datagram::parse(&r.datagram), Ok(Datagram::Relevant(_)));
            if r.sender == 0 && relevant && seen.insert(r.datagram.clone()) {
                out.push(r.datagram.clone());
            }
        }
    }
    out
}

/// Reads the input a byte at a time; every read past the end ends the run.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn index(&mut self, len: usize) -> Option<usize> {
        let lo = self.byte()? as usize;
        let hi = self.byte()? as usize;
        (len > 0).then(|| (hi << 8 | lo) % len)
    }

    fn pick<'t, T>(&mut self, list: &'t [T]) -> Option<&'t T> {
        let i = self.index(list.len())?;
        list.get(i)
    }
}

/// Runs the operations `data` encodes on a fresh registry, checking the invariants after
/// each; panics (with what broke) on a violation.
pub fn run(templates: &[Vec<u8>], data: &[u8]) {
    if templates.is_empty() {
        return;
    }
    let mut input = Input { data, pos: 0 };
    let mut reg = Registry::new();
    // The last datagram applied and whether it was applied, for the re-send operation.
    let mut last: Option<(Vec<u8>, bool)> = None;
    // PCIPLUG_OPS_TRACE=1 prints each datagram fed, to read a crash input.
    let trace = std::env::var_os("PCIPLUG_OPS_TRACE").is_some();
    let show = |what: &str, d: &[u8]| {
        if trace {
            eprintln!("{what}: {}", String::from_utf8_lossy(d).replace('\0', " "));
        }
    };
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        let before = state(&reg);
        match op % 8 {
            // A real datagram as recorded.
            0 | 1 => {
                let Some(d) = input.pick(templates) else {
                    break;
                };
                show("real", d);
                last = Some((d.clone(), apply(&mut reg, d, &before)));
            }
            // A real datagram reshaped: another action, slot, name, DISKSEQ, a field dropped.
            2 | 3 => {
                let Some(d) = input.pick(templates) else {
                    break;
                };
                let Some(d) = reshape(d, &mut input) else {
                    break;
                };
                show("reshaped", &d);
                last = Some((d.clone(), apply(&mut reg, &d, &before)));
            }
            // A real datagram with one byte overwritten.
            4 => {
                let (Some(d), Some(at), Some(b)) =
                    (input.pick(templates), input.byte(), input.byte())
                else {
                    break;
                };
                let mut d = d.clone();
                let at = (at as usize * d.len()) / 256;
                d[at] = b;
                show("corrupted", &d);
                last = Some((d.clone(), apply(&mut reg, &d, &before)));
            }
            // The same from a process: never believed, nothing changes.
            5 => {
                let (Some(d), Some(port)) = (input.pick(templates), input.byte()) else {
                    break;
                };
                let sender = u32::from(port) + 1;
                let out = reg.apply_datagram(sender, d);
                assert!(
                    matches!(out, Outcome::Spoofed { sender: s } if s == sender),
                    "port {sender} believed: {out:?}"
                );
                assert_eq!(
                    state(&reg),
                    before,
                    "a forged datagram changed the registry"
                );
            }
            // The datagram just applied, again: a duplicate changes nothing.
            6 => {
                if let Some((d, applied)) = &last {
                    show("again", d);
                    let out = reg.apply_datagram(0, d);
                    if *applied {
                        assert!(
                            matches!(&out, Outcome::Applied(c) if c.is_empty()),
                            "applying {} twice changed {out:?}",
                            String::from_utf8_lossy(d).replace('\0', " ")
                        );
                    }
                    assert_eq!(state(&reg), before, "a duplicate changed the registry");
                }
            }
            // A resync to a truth built from some real datagrams, or an NVMe link from sysfs.
            _ => {
                // What follows is no longer a duplicate of what came before.
                last = None;
                if resync_or_link(&mut reg, &mut input, templates, &before, trace).is_none() {
                    break;
                }
            }
        }
        check(&reg);
    }
}

/// Operation 7: a resync to a truth built from some real datagrams (even selector byte), or an
/// NVMe controller linked to a subsystem as sysfs would say (odd). `None` when the input ran out.
fn resync_or_link(
    reg: &mut Registry,
    input: &mut Input<'_>,
    templates: &[Vec<u8>],
    before: &State,
    trace: bool,
) -> Option<()> {
    let how = input.byte()?;
    if how % 2 == 0 {
        let mut truth = Registry::new();
        for _ in 0..how / 2 % 16 {
            let Some(d) = input.pick(templates) else {
                break;
            };
            truth.apply_datagram(0, d);
        }
        if trace {
            eprintln!("resync to {:?}", state(&truth));
        }
        let want = state(&truth);
        let changes = reg.reconcile(truth);
        check_changes(before, &changes, &state(reg));
        assert_eq!(state(reg), want, "reconcile did not reach the truth");
        assert!(reg.reconcile(reg.clone()).is_empty(), "a no-op resync");
    } else {
        let paths: Vec<PciPath> = reg.devices().map(|d| d.path).collect();
        let (Some(path), Some(c), Some(s)) = (input.pick(&paths), input.byte(), input.byte())
        else {
            return Some(());
        };
        let ctrl = format!("nvme{}", c % 2);
        let sub = format!("nvme-subsys{}", s % 2);
        if trace {
            eprintln!("link {path} {ctrl} {sub}");
        }
        let changes = reg.link_nvme_controller(path, &ctrl, &sub);
        check_changes(before, &changes, &state(reg));
    }
    Some(())
}

/// Applies a kernel datagram and checks that what it reports changed is what changed.
/// Returns whether it was applied.
fn apply(reg: &mut Registry, d: &[u8], before: &State) -> bool {
    match reg.apply_datagram(0, d) {
        Outcome::Applied(changes) => {
            let after = state(reg);
            assert_eq!(
                described(before, &changes),
                after,
                "the changes {changes:#?} do not describe what changed"
            );
            check_namespaces(d, &changes);
            true
        }
        Outcome::Spoofed { .. } => panic!("a kernel datagram counted as spoofed"),
        other => {
            assert_eq!(&state(reg), before, "refused ({other:?}) yet changed");
            false
        }
    }
}

/// Block and net names are separate namespaces in Linux (`/dev/vda` and an interface `vda`
/// can coexist): an event of one class never takes a device of the other away, unless the
/// whole function at that path went.
fn check_namespaces(d: &[u8], changes: &[Change]) {
    let subsystem = split(d)
        .into_iter()
        .find_map(|f| f.strip_prefix("SUBSYSTEM=").map(str::to_owned));
    let gone = |p: &PciPath| {
        changes
            .iter()
            .any(|c| matches!(c, Change::DeviceRemoved { path, .. } if path == p))
    };
    for c in changes {
        let crossed = match (subsystem.as_deref(), c) {
            (Some("net"), Change::BlockRemoved { path: Some(p), .. }) => !gone(p),
            (Some("net"), Change::BlockRemoved { path: None, .. }) => true,
            (Some("block"), Change::NetRemoved { path, .. }) => !gone(path),
            _ => false,
        };
        assert!(
            !crossed,
            "{} took away {c:?}",
            String::from_utf8_lossy(d).replace('\0', " ")
        );
    }
}

/// The fields of a datagram, header first.
fn split(d: &[u8]) -> Vec<String> {
    d.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

fn join(fields: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in fields {
        v.extend_from_slice(f.as_bytes());
        v.push(0);
    }
    v
}

/// A real datagram changed the way a different event on a different device would look,
/// keeping header and fields consistent (so that it is believed and applied).
fn reshape(d: &[u8], input: &mut Input<'_>) -> Option<Vec<u8>> {
    let mut fields = split(d);
    let (action, devpath) = fields.first()?.split_once('@')?;
    let (mut action, mut devpath) = (action.to_owned(), devpath.to_owned());
    let mut old: Option<String> = None;
    let how = input.byte()?;
    match how % 6 {
        0 => action = input.pick(&ACTIONS)?.to_string(),
        // Another slot or bus at one of the PCI hops: another device, or a moved bus.
        1 => {
            let comps: Vec<&str> = devpath.split('/').collect();
            let bdfs: Vec<usize> = (0..comps.len())
                .filter(|&i| comps[i].len() == 12 && comps[i].as_bytes()[4] == b':')
                .collect();
            let &i = input.pick(&bdfs)?;
            let v = input.byte()?;
            let mut c = comps[i].to_owned();
            if how & 0x80 == 0 {
                c.replace_range(8..10, &format!("{:02x}", v % 0x20));
            } else {
                c.replace_range(5..7, &format!("{:02x}", v % 8));
            }
            let mut comps: Vec<String> = comps.iter().map(|s| s.to_string()).collect();
            comps[i] = c;
            devpath = comps.join("/");
        }
        // Another name: in DEVNAME/INTERFACE and as the last devpath component.
        2 => {
            let name = pick_name(input)?;
            for f in fields.iter_mut().skip(1) {
                if f.starts_with("DEVNAME=") {
                    *f = format!("DEVNAME={name}");
                } else if f.starts_with("INTERFACE=") {
                    *f = format!("INTERFACE={name}");
                }
            }
            if how & 0x80 == 0 {
                if let Some((parent, _)) = devpath.rsplit_once('/') {
                    devpath = format!("{parent}/{name}");
                }
            }
        }
        // Another DISKSEQ: a new disk under an old name, or a late event of an old one.
        3 => {
            let seq = input.byte()? % 8;
            fields.retain(|f| !f.starts_with("DISKSEQ="));
            if how & 0x80 == 0 {
                fields.push(format!("DISKSEQ={seq}"));
            }
        }
        // A field lost.
        4 => {
            let i = input.index(fields.len())?;
            if i > 0
                && !["ACTION=", "DEVPATH=", "SUBSYSTEM=", "SEQNUM="]
                    .iter()
                    .any(|k| fields[i].starts_with(k))
            {
                fields.remove(i);
            }
        }
        // A rename: a move from the device's old name.
        _ => {
            let name = pick_name(input)?;
            let (parent, current) = devpath.rsplit_once('/')?;
            old = Some(devpath.clone());
            action = "move".into();
            for f in fields.iter_mut().skip(1) {
                if f.starts_with("DEVNAME=") || f.starts_with("INTERFACE=") {
                    let key = f.split('=').next().unwrap_or_default().to_owned();
                    *f = format!("{key}={name}");
                }
            }
            if current != name {
                devpath = format!("{parent}/{name}");
            }
        }
    }
    fields[0] = format!("{action}@{devpath}");
    for f in fields.iter_mut().skip(1) {
        if f.starts_with("ACTION=") {
            *f = format!("ACTION={action}");
        } else if f.starts_with("DEVPATH=") {
            *f = format!("DEVPATH={devpath}");
        }
    }
    if let Some(old) = old {
        fields.retain(|f| !f.starts_with("DEVPATH_OLD="));
        fields.insert(2, format!("DEVPATH_OLD={old}"));
    }
    Some(join(&fields))
}

/// What the registry shows, flattened: devices with their driver, and every child tied to a
/// PCI path. What [`Change`]s describe, and what a waiter or a `watch` sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    devices: BTreeSet<(PciPath, Option<String>)>,
    children: BTreeSet<(PciPath, &'static str, String)>,
}

pub fn state(reg: &Registry) -> State {
    let mut s = State::default();
    for v in reg.views() {
        s.devices.insert((v.path, v.driver.map(str::to_owned)));
        for b in &v.block {
            s.children.insert((v.path, "block", b.name.to_string()));
        }
        for n in v.net {
            s.children.insert((v.path, "net", n.name.to_string()));
        }
        for c in v.nvme {
            s.children.insert((v.path, "nvme", c.name.to_string()));
        }
    }
    s
}

/// The changes an operation reported take the state before it to the state after it: a
/// waiter woken on the paths of the changes, or a `watch` that prints them, misses nothing.
fn check_changes(before: &State, changes: &[Change], after: &State) {
    assert_eq!(
        &described(before, changes),
        after,
        "the changes {changes:#?} do not describe what changed"
    );
}

/// The state before, with `changes` applied to it.
fn described(before: &State, changes: &[Change]) -> State {
    let mut s = before.clone();
    let device = |s: &mut State, p: PciPath| s.devices.iter().find(|d| d.0 == p).cloned();
    for c in changes {
        match c {
            Change::DeviceAdded { path, .. } => {
                s.devices.insert((*path, None));
            }
            Change::DeviceRemoved { path, .. } => {
                if let Some(d) = device(&mut s, *path) {
                    s.devices.remove(&d);
                }
            }
            Change::DriverBound { path, driver } => {
                if let Some(d) = device(&mut s, *path) {
                    s.devices.remove(&d);
                }
                s.devices.insert((*path, Some(driver.to_string())));
            }
            Change::DriverUnbound { path } => {
                if let Some(d) = device(&mut s, *path) {
                    s.devices.remove(&d);
                }
                s.devices.insert((*path, None));
            }
            Change::BlockAdded {
                path: Some(p),
                block,
            } => {
                s.children.insert((*p, "block", block.name.to_string()));
            }
            Change::BlockRemoved {
                path: Some(p),
                block,
            } => {
                s.children.remove(&(*p, "block", block.name.to_string()));
            }
            Change::NetAdded { path, net } => {
                s.children.insert((*path, "net", net.name.to_string()));
            }
            Change::NetRenamed { path, old, net } => {
                s.children.remove(&(*path, "net", old.to_string()));
                s.children.insert((*path, "net", net.name.to_string()));
            }
            Change::NetRemoved { path, net } => {
                s.children.remove(&(*path, "net", net.name.to_string()));
            }
            Change::NvmeAdded { path, controller } => {
                s.children
                    .insert((*path, "nvme", controller.name.to_string()));
            }
            Change::NvmeRemoved { path, controller } => {
                s.children
                    .remove(&(*path, "nvme", controller.name.to_string()));
            }
            _ => {}
        }
    }
    s
}

/// The registry's invariants, from outside.
pub fn check(reg: &Registry) {
    // Names are held once per namespace (block, net); both may hold the same name.
    let mut own_names = BTreeSet::new();
    let mut net_names = BTreeSet::new();
    for d in reg.devices() {
        // Each function is where its devpath says, under its own bus address.
        let placed = PciPath::from_devpath(&d.devpath).ok().flatten();
        assert_eq!(
            placed.map(|(p, end)| (p, end == d.devpath.len())),
            Some((d.path, true)),
            "{} held at {}",
            d.devpath,
            d.path
        );
        assert_eq!(
            d.devpath.rsplit('/').next(),
            Some(d.bdf.to_string().as_str())
        );
        // Each child is below its function, with a name safe to put after /dev/, held once.
        for b in &d.block {
            assert!(
                b.devpath.starts_with(&format!("{}/", d.devpath)),
                "block {} ({}) held at {}",
                b.name,
                b.devpath,
                d.path
            );
            assert!(is_safe_device_name(&b.name), "block name {:?}", b.name);
            assert!(
                own_names.insert(b.name.to_string()),
                "{} held twice",
                b.name
            );
        }
        for n in &d.net {
            assert!(
                n.devpath.starts_with(&format!("{}/", d.devpath)),
                "net {} ({}) held at {}",
                n.name,
                n.devpath,
                d.path
            );
            assert!(is_safe_device_name(&n.name), "net name {:?}", n.name);
            assert!(
                net_names.insert(n.name.to_string()),
                "{} held twice",
                n.name
            );
        }
        if let Some(disk) = reg.disk(&d.path) {
            assert_eq!(disk.devtype, DevType::Disk);
            assert!(is_safe_device_name(&disk.name));
        }
        let _ = reg.describe(&d.path);
    }
    // NVMe heads: never also held by a function.
    let mut heads = BTreeSet::new();
    for d in reg.devices() {
        for b in reg.block_devices(&d.path) {
            if !d.block.contains(b) {
                heads.insert(b.name.to_string());
            }
        }
    }
    heads.extend(reg.unresolved_nvme_heads().map(|(_, h)| h.name.to_string()));
    for h in &heads {
        assert!(
            !own_names.contains(h),
            "{h} held as a head and by a function"
        );
        assert!(is_safe_device_name(h), "head name {h:?}");
    }
    // Every datagram fed is counted once, under one outcome.
    let s = reg.stats();
    assert_eq!(
        s.received,
        s.applied + s.ignored + s.malformed + s.spoofed + s.unplaceable,
        "{s:?}"
    );
    assert!(s.unknown_action <= s.ignored);
}
