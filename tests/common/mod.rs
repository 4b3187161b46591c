//! Shared test helpers: the real recordings, the ground truth their comments record, and
//! assertions that compare a registry with it; the rest in one file each (running the CLI,
//! `eventually`, copying a tree, skipping, the private namespace).
#![allow(dead_code)] // each test binary uses its own subset

pub mod cli;
pub mod datagram_oracle;
mod fixtures;
pub mod gate;
pub mod netns;
pub mod path_oracle;
mod poll;
pub mod registry_ops;
mod skip;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;

use pciplug::{PciPath, Record, Recording, Registry};

/// The fake sysfs trees, from the library's test support.
#[allow(unused_imports)] // as dead_code above: each binary uses its own subset
pub use pciplug::testing::fake_sysfs;
#[allow(unused_imports)] // as dead_code above: each binary uses its own subset
pub use {
    cli::pciplug,
    fixtures::{FIXTURES, RECORDINGS, fixture_path},
    poll::eventually,
    skip::{required, skip},
    tree::copy_tree,
};

/// One entry of a "guest sysfs after step N" listing: what the guest's own sysfs showed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SysfsEntry {
    /// `block`, `net` or `pci` (a PCI endpoint function).
    pub class: String,
    /// The kernel name; for a PCI function its BDF (`0000:01:00.0`).
    pub name: String,
    pub devpath: String,
    /// `None` where the recorder's sysfs walk found no PCI function (NVMe multipath heads).
    pub path: Option<String>,
    /// A SCSI disk's `H:C:T:L`, where the listing gives it (`(PCI path 02/00, scsi 0:0:0:1)`).
    pub scsi: Option<String>,
    /// An NVMe disk's namespace id, where the listing gives it (read from sysfs in the guest).
    pub nsid: Option<u32>,
    /// A PCI function's bound driver (`None` for the listing's `driver=-`).
    pub driver: Option<String>,
    /// A PCI function's `vvvv:dddd` and class (`0x010000`), as the listing writes them
    /// without a `0x` on the IDs.
    pub pci_id: Option<(String, String)>,
}

/// A `# verified after step N: nothing left at PCI path <p>` line (or Cloud Hypervisor's
/// `# gone: <p> (... removed in step N ...)`): checked in the guest's sysfs after that step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedGone {
    pub step: u32,
    pub path: String,
    /// `C:T:L` when only one SCSI LUN at the path was verified gone.
    pub scsi_ctl: Option<String>,
}

/// A real recording with the ground truth recorded beside it.
pub struct Fixture {
    pub name: String,
    pub recording: Recording,
    /// `guest sysfs after step N` listings, by step (`after boot (before step 1)` is step 0).
    pub sysfs_after: BTreeMap<u32, Vec<SysfsEntry>>,
    /// Whether the listings include the PCI functions (set 2 and Cloud Hypervisor; set 1's
    /// listings have block and net devices only).
    pub lists_pci: bool,
    /// Whether those PCI functions are the endpoints only (set 2's recorder leaves out host
    /// bridges, class 0x0600xx, and PCI bridges and ports, 0x0604xx; Cloud Hypervisor's lists all).
    pub pci_endpoints_only: bool,
    /// Whether the listings give a SCSI disk's `H:C:T:L` (set 2; not set 1).
    pub lists_scsi: bool,
    /// `expect: <path> -> <name>` lines, as (path, name, kind-and-devpath text); `name` is
    /// `(pci function, driver X)` or `(pci function, no driver)` for a function without a
    /// block or net child.
    pub expects: Vec<(String, String, String)>,
    pub verified_gone: Vec<VerifiedGone>,
}

/// The PCI path of a function straight on a root bus, from its devpath
/// (`/devices/pci0001:00/0001:00:05.0` -> `pci0001:00/05`): Cloud Hypervisor's listings do not
/// write the path, and it puts every function on a root bus. `None` for anything deeper.
fn root_bus_path(devpath: &str) -> Option<String> {
    let rest = devpath.strip_prefix("/devices/")?;
    let (root, func) = rest.split_once('/')?;
    let root_bus = root.strip_prefix("pci")?;
    let (bus_part, devfn) = func.rsplit_once(':')?;
    if func.contains('/') || bus_part != root_bus {
        return None;
    }
    let (slot, function) = devfn.split_once('.')?;
    let hop = if function == "0" {
        slot.to_owned()
    } else {
        format!("{slot}.{function}")
    };
    Some(if root == "pci0000:00" {
        hop
    } else {
        format!("{root}/{hop}")
    })
}

/// One entry line of a listing (after `#   `), or `None` for a line that is not an entry
/// (Cloud Hypervisor's `root` lines).
fn parse_entry(line: &str) -> Option<SysfsEntry> {
    let rest = line.strip_prefix("#   ").unwrap();
    let (head, paren) = match rest.split_once("  (PCI path ") {
        Some((head, paren)) => (head, Some(paren.strip_suffix(')').expect(line))),
        None => (rest, None),
    };
    let mut entry = SysfsEntry {
        class: String::new(),
        name: String::new(),
        devpath: String::new(),
        path: None,
        scsi: None,
        nsid: None,
        driver: None,
        pci_id: None,
    };
    if let Some(paren) = paren {
        let mut parts = paren.split(", ");
        let path = parts.next().unwrap();
        entry.path = (path != "None").then(|| path.to_owned());
        for part in parts {
            match part.split_once(' ') {
                Some(("scsi", a)) => entry.scsi = Some(a.to_owned()),
                Some(("nsid", n)) => entry.nsid = Some(n.parse().expect(line)),
                _ => panic!("unknown listing annotation {part:?}: {line}"),
            }
        }
    }
    let f: Vec<&str> = head.split_whitespace().collect();
    match f[0] {
        "root" => return None,
        "block" | "net" => {
            // block vda /devices/...  (PCI path 02/00)
            assert!(f.len() == 3 && paren.is_some(), "{line}");
            entry.name = f[1].to_owned();
            entry.devpath = f[2].to_owned();
        }
        "pci" => {
            // pci 0000:01:00.0 0x1af4:0x1042 class=0x010000 driver=virtio-pci [(virtio0
            // driver=virtio_blk)] /devices/...  [(PCI path 02/00)]
            let driver = f[4].strip_prefix("driver=").expect(line);
            entry.name = f[1].to_owned();
            entry.driver = (driver != "-").then(|| driver.to_owned());
            let class = f[3].strip_prefix("class=").expect(line);
            entry.pci_id = Some((f[2].replace("0x", ""), class.to_owned()));
            entry.devpath = f.last().unwrap().to_string();
            assert!(entry.devpath.starts_with("/devices/"), "{line}");
            if paren.is_none() {
                entry.path = Some(root_bus_path(&entry.devpath).expect(line));
            }
        }
        other => panic!("unknown listing class {other}: {line}"),
    }
    entry.class = f[0].to_owned();
    Some(entry)
}

/// The step of an `# expect:` line's `(... step N, ...)` text.
pub fn expect_step(why: &str) -> u32 {
    why.split("step ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step in {why}"))
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let file = fixture_path(name);
        let text = std::fs::read_to_string(&file).unwrap();
        let recording = Recording::parse(&text, &file).unwrap();
        let mut sysfs_after: BTreeMap<u32, Vec<SysfsEntry>> = BTreeMap::new();
        let mut expects = Vec::new();
        let mut verified_gone = Vec::new();
        let (mut lists_pci, mut pci_endpoints_only, mut lists_scsi) = (false, false, false);
        let mut current: Option<u32> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# guest sysfs after ") {
                let n: u32 = if rest.starts_with("boot (before step 1)") {
                    0
                } else {
                    let n = rest.strip_prefix("step ").expect(line);
                    n.split(' ').next().unwrap().parse().unwrap()
                };
                lists_pci |= rest.contains("PCI functions") || rest.contains("/sys/bus/pci");
                pci_endpoints_only |= rest.contains("/sys/bus/pci/devices endpoints");
                sysfs_after.entry(n).or_default();
                current = Some(n);
            } else if let (Some(n), true) = (current, line.starts_with("#   ")) {
                if let Some(entry) = parse_entry(line) {
                    lists_scsi |= entry.scsi.is_some();
                    sysfs_after.get_mut(&n).unwrap().push(entry);
                }
            } else {
                current = None;
            }
            if let Some(rest) = line.strip_prefix("# expect: ") {
                let (path, rest) = rest.split_once(" -> ").unwrap();
                let (name, why) = if rest.starts_with("(pci function") {
                    let end = rest.find(')').unwrap() + 1;
                    (&rest[..end], &rest[end..])
                } else {
                    rest.split_once(' ').unwrap()
                };
                expects.push((path.to_owned(), name.to_owned(), why.trim().to_owned()));
            }
            if let Some(rest) = line.strip_prefix("# verified after step ") {
                // 6: nothing left at PCI path 02/00[ scsi C:T:L 0:0:1]
                let (step, rest) = rest.split_once(": nothing left at PCI path ").expect(line);
                let (path, scsi_ctl) = match rest.split_once(" scsi C:T:L ") {
                    Some((p, ctl)) => (p, Some(ctl.to_owned())),
                    None => (rest, None),
                };
                verified_gone.push(VerifiedGone {
                    step: step.parse().unwrap(),
                    path: path.to_owned(),
                    scsi_ctl,
                });
            }
            if let Some(rest) = line.strip_prefix("# gone: ") {
                // pci0001:00/05   (ch id s1b, ..., removed in step 6: ...)
                let (path, why) = rest.split_once(' ').unwrap();
                let step = why.split("removed in step ").nth(1).expect(line);
                verified_gone.push(VerifiedGone {
                    step: step.split(':').next().unwrap().parse().unwrap(),
                    path: path.to_owned(),
                    scsi_ctl: None,
                });
            }
        }
        Fixture {
            name: name.to_owned(),
            recording,
            sysfs_after,
            lists_pci,
            pci_endpoints_only,
            lists_scsi,
            expects,
            verified_gone,
        }
    }

    /// Every step, in order: those with datagrams and those without (a multifunction hot-add
    /// of function 1, a refused unplug) that still have a listing or a verified line.
    pub fn steps(&self) -> Vec<u32> {
        let mut steps: BTreeSet<u32> = self.recording.steps().into_iter().collect();
        steps.extend(self.sysfs_after.keys());
        steps.extend(self.verified_gone.iter().map(|g| g.step));
        steps.into_iter().collect()
    }

    /// The datagrams of each step, in receive order (none for a step without any).
    pub fn step_records(&self) -> Vec<(u32, Vec<Record>)> {
        self.steps()
            .into_iter()
            .map(|s| (s, self.records_in(s..=s)))
            .collect()
    }

    /// The records of the steps in `steps`, in receive order (`..=8`: up to step 8).
    pub fn records_in(&self, steps: impl RangeBounds<u32>) -> Vec<Record> {
        self.recording
            .records
            .iter()
            .filter(|r| r.step.is_some_and(|s| steps.contains(&s)))
            .cloned()
            .collect()
    }

    /// The records whose datagram has the field `key=value`, in receive order.
    pub fn with_field<'a>(
        &'a self,
        key: &str,
        value: &str,
    ) -> impl Iterator<Item = &'a Record> + use<'a> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.recording
            .records
            .iter()
            .filter(move |r| field(&r.datagram, &key).as_deref() == Some(value.as_str()))
    }

    /// The first record whose datagram has the field `key=value`.
    #[track_caller]
    pub fn first_with(&self, key: &str, value: &str) -> &Record {
        self.with_field(key, value)
            .next()
            .unwrap_or_else(|| panic!("{}: no datagram with {key}={value}", self.name))
    }

    /// The last sysfs listing (the final state), or empty if the recording has none.
    pub fn final_sysfs(&self) -> Vec<SysfsEntry> {
        self.sysfs_after
            .values()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// What the registry reports, flattened: (path, class, name) for every block device and net
/// interface tied to a PCI path, and the names of NVMe multipath heads not tied to one.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Seen {
    pub tied: BTreeSet<(String, String, String)>,
    pub untied_heads: BTreeSet<String>,
}

pub fn seen(reg: &Registry) -> Seen {
    let mut tied = BTreeSet::new();
    for v in reg.views() {
        for b in &v.block {
            tied.insert((v.path.to_string(), "block".to_owned(), b.name.to_string()));
        }
        for n in v.net {
            tied.insert((v.path.to_string(), "net".to_owned(), n.name.to_string()));
        }
    }
    let untied_heads = reg
        .unresolved_nvme_heads()
        .map(|(_, h)| h.name.to_string())
        .collect();
    Seen { tied, untied_heads }
}

/// `nvme<s>c<c>n<n>` -> `nvme<s>n<n>`: the head a hidden per-path disk belongs to.
pub fn head_of_hidden(name: &str) -> Option<String> {
    let rest = name.strip_prefix("nvme")?;
    let (subsys, rest) = rest.split_once('c')?;
    let (_ctrl, ns) = rest.split_once('n')?;
    Some(format!("nvme{subsys}n{ns}"))
}

/// What the guest's sysfs says the registry must hold, in the same shape as [`seen`]: block
/// devices and interfaces (the PCI functions are compared by `replay_fixtures`).
///
/// Hidden NVMe per-path disks are not reported (no uevent, no /dev node); their heads, which
/// the recorder found with no PCI path, must be held as untied heads.
pub fn expected_from_sysfs(entries: &[SysfsEntry]) -> Seen {
    let mut tied = BTreeSet::new();
    let mut untied_heads = BTreeSet::new();
    for e in entries {
        if e.class == "pci" || head_of_hidden(&e.name).is_some() {
            continue;
        }
        match &e.path {
            Some(p) => {
                tied.insert((p.clone(), e.class.clone(), e.name.clone()));
            }
            None => {
                untied_heads.insert(e.name.clone());
            }
        }
    }
    Seen { tied, untied_heads }
}

/// Asserts the registry holds exactly what the guest's sysfs showed.
#[track_caller]
pub fn assert_matches_sysfs(reg: &Registry, entries: &[SysfsEntry], context: &str) {
    let want = expected_from_sysfs(entries);
    let got = seen(reg);
    assert_eq!(
        got, want,
        "{context}: registry differs from the guest's sysfs"
    );
}

/// Replays records into a fresh registry.
pub fn replay(records: &[Record]) -> Registry {
    let mut reg = Registry::new();
    for r in records {
        reg.apply_datagram(r.sender, &r.datagram);
    }
    reg
}

/// A canonical text form of the whole registry state, for equality checks.
pub fn snapshot(reg: &Registry) -> Vec<String> {
    let mut v: Vec<String> = reg
        .views()
        .map(|d| serde_json::to_string(&d).unwrap())
        .collect();
    v.extend(
        reg.unresolved_nvme_heads()
            .map(|(s, h)| format!("head {s} {}", serde_json::to_string(h).unwrap())),
    );
    v
}

pub fn p(s: &str) -> PciPath {
    s.parse().unwrap()
}

/// The `(path, "block" | "net", name)` children of one `--json` line of `list` or `replay`.
pub fn json_children(v: &serde_json::Value) -> Vec<(String, String, String)> {
    let path = v["path"].as_str().unwrap();
    let mut out = Vec::new();
    for kind in ["block", "net"] {
        for c in v[kind].as_array().unwrap() {
            out.push((
                path.to_owned(),
                kind.to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The names of the interfaces of the function at `path`, in the registry's order.
pub fn net_names(reg: &Registry, path: &str) -> Vec<String> {
    reg.get(&p(path))
        .unwrap_or_else(|| panic!("no PCI function at {path}"))
        .net
        .iter()
        .map(|n| n.name.to_string())
        .collect()
}

/// Splits a datagram into its NUL-separated fields (header first).
pub fn fields(d: &[u8]) -> Vec<String> {
    d.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
        .collect()
}

/// Joins fields back into a datagram.
pub fn datagram(fields: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in fields {
        v.extend_from_slice(f.as_bytes());
        v.push(0);
    }
    v
}

/// The value of `KEY` in a datagram.
pub fn field(d: &[u8], key: &str) -> Option<String> {
    fields(d)
        .into_iter()
        .find_map(|f| f.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// The real `add` of eth0 at 04/00 in q35-acpi-hotplug, and a `move` of it to `new_name`
/// built as udev's rename makes the kernel send it.
pub fn eth0_add_and_rename_to(new_name: &str) -> (Vec<u8>, Vec<u8>) {
    let f = Fixture::load("q35-acpi-hotplug");
    let add = f.first_with("INTERFACE", "eth0").datagram.clone();
    let old = field(&add, "DEVPATH").unwrap();
    let new = old.replace("/net/eth0", &format!("/net/{new_name}"));
    let mv: Vec<String> = fields(&add)
        .into_iter()
        .map(|f| {
            if f.starts_with("add@") {
                format!("move@{new}")
            } else if f == "ACTION=add" {
                "ACTION=move".into()
            } else if f.starts_with("DEVPATH=") {
                format!("DEVPATH={new}\0DEVPATH_OLD={old}")
            } else if f == "INTERFACE=eth0" {
                format!("INTERFACE={new_name}")
            } else if f.starts_with("SEQNUM=") {
                "SEQNUM=100000".into() // a later event
            } else {
                f
            }
        })
        .collect();
    (add, datagram(&mv))
}
