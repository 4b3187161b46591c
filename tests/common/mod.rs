//! Shared test helpers: the real recordings, the ground truth their comments record, and
//! assertions that compare a registry with it; the rest in one file each (running the CLI,
//! `eventually`, copying a tree, skipping, the private namespace).
#![allow(dead_code)] // each test binary uses its own subset

pub mod cli;
pub mod datagram_oracle;
mod fixtures;
pub mod netns;
pub mod path_oracle;
mod poll;
pub mod registry_ops;
mod skip;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;

use pciplug::recording::Record;
use pciplug::{PciPath, Recording, Registry};

/// The fake sysfs trees, from the library's test support.
#[allow(unused_imports)] // as dead_code above: each binary uses its own subset
pub use pciplug::testing::fake_sysfs;
#[allow(unused_imports)] // as dead_code above: each binary uses its own subset
pub use {
    cli::pciplug,
    fixtures::{FIXTURES, fixture_path, records_up_to},
    poll::eventually,
    skip::{required, skip},
    tree::copy_tree,
};

/// One entry of a "guest sysfs after step N" listing: what the guest's own sysfs showed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SysfsEntry {
    pub class: String,
    pub name: String,
    pub devpath: String,
    /// `None` where the recorder's sysfs walk found no PCI function (NVMe multipath heads).
    pub path: Option<String>,
}

/// A real recording with the ground truth recorded beside it.
pub struct Fixture {
    pub name: String,
    pub recording: Recording,
    /// `guest sysfs after step N` listings, by step.
    pub sysfs_after: BTreeMap<u32, Vec<SysfsEntry>>,
    /// `expect: <path> -> <name>` lines, as (path, name, kind-and-devpath text).
    pub expects: Vec<(String, String, String)>,
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let file = fixture_path(name);
        let text = std::fs::read_to_string(&file).unwrap();
        let recording = Recording::parse(&text, &file).unwrap();
        let mut sysfs_after: BTreeMap<u32, Vec<SysfsEntry>> = BTreeMap::new();
        let mut expects = Vec::new();
        let mut current: Option<u32> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# guest sysfs after step ") {
                let n: u32 = rest.split(' ').next().unwrap().parse().unwrap();
                sysfs_after.entry(n).or_default();
                current = Some(n);
            } else if let (Some(n), Some(rest)) = (current, line.strip_prefix("#   ")) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // block vda /devices/... (PCI path 02/00)
                assert!(f.len() >= 6 && f[3] == "(PCI" && f[4] == "path", "{line}");
                let path = f[5].trim_end_matches(')');
                sysfs_after.get_mut(&n).unwrap().push(SysfsEntry {
                    class: f[0].to_owned(),
                    name: f[1].to_owned(),
                    devpath: f[2].to_owned(),
                    path: (path != "None").then(|| path.to_owned()),
                });
            } else {
                current = None;
            }
            if let Some(rest) = line.strip_prefix("# expect: ") {
                let (path, rest) = rest.split_once(" -> ").unwrap();
                let (name, why) = rest.split_once(' ').unwrap();
                expects.push((path.to_owned(), name.to_owned(), why.trim().to_owned()));
            }
        }
        Fixture {
            name: name.to_owned(),
            recording,
            sysfs_after,
            expects,
        }
    }

    pub fn steps(&self) -> Vec<u32> {
        self.recording.steps()
    }

    /// The datagrams of each step, in receive order.
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

/// What the guest's sysfs says the registry must hold, in the same shape as [`seen`].
///
/// Hidden NVMe per-path disks are not reported (no uevent, no /dev node); their heads, which
/// the recorder found with no PCI path, must be held as untied heads.
pub fn expected_from_sysfs(entries: &[SysfsEntry]) -> Seen {
    let mut tied = BTreeSet::new();
    let mut untied_heads = BTreeSet::new();
    for e in entries {
        if head_of_hidden(&e.name).is_some() {
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
