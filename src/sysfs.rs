//! [`Sysfs`]: the coldplug scan, and the NVMe controller → subsystem links only sysfs knows.
//!
//! The kernel announces a device once, when it appears. Whatever was present before the
//! listener bound its socket has to be read from sysfs instead: [`Sysfs::scan`] returns those
//! devices as the `add` [`Uevent`]s the kernel would have sent for them, so the same
//! [`Registry::apply`] handles both. It reads:
//!
//! - `bus/pci/devices/*` (every PCI function),
//! - `class/block/*`, `class/net/*` and `class/nvme/*` (NVMe controllers), keeping only those
//!   below a PCI function and the NVMe multipath heads (`/devices/virtual/nvme-subsystem/...`);
//!   loop devices, `lo` and the like are not even read (told by their class links alone),
//! - `class/vfio/*`, the VFIO groups (`/devices/virtual/vfio/<group>`) whose node
//!   `/dev/vfio/<group>` is there,
//! - `class/nvme-subsystem/*/nvme<N>`, the links from a subsystem to its controllers, which
//!   tie a multipath head to the PCI path(s) of its controller(s). No uevent carries them
//!   (see observation 4 of `fixtures/real-hotplug/README.md`); nvme-cli finds them the same way.
//!
//! Two more facts only sysfs has, each in a file of its own: an NVMe disk's namespace id
//! (`class/block/<name>/nsid`, `nsid.rs`, read by the live monitor as it registers the disk),
//! and the SCSI hosts below a function with their `scan` attribute (`scsi_host.rs`, the SCSI
//! scan on request). `nvme_link.rs` reads the subsystem links; `device_dir.rs` reads one device,
//! whole.
//!
//! For each device the devpath is its canonical sysfs path minus the root, the subsystem is
//! the one it was listed by (`bus/pci/devices`: `pci`; `class/block`: `block`; and so on, the
//! name its `subsystem` link points to, which the kernel sets by the same list), and the fields are the `KEY=VALUE` lines of its
//! `uevent` file. The hidden block devices (the per-path disks `nvme<S>c<C>n<N>` behind a
//! multipath head, the only ones the kernel hides) are skipped, told by their name as the
//! uevents' are. `DISKSEQ` is taken from the
//! `diskseq` attribute (the disk's, for a partition) when the `uevent` file lacks it.
//!
//! # Robustness
//!
//! Devices come and go while the scan runs. One that disappears between being listed and being
//! read (`ENOENT`/`ENODEV`) is skipped, never reported as an error and never returned from
//! stale data. A device is read whole, one generation of it: its attributes are read relative
//! to its directory, opened once, and the path is checked to still name that directory
//! afterwards; one replugged meanwhile is read again, a few times at most, then skipped
//! (`device_dir.rs`; the `remove` and `add` of each replug are queued behind the scan). A link that resolves outside the root is not followed, and attribute files are
//! opened with `O_NOFOLLOW`. A missing or unreadable `bus/pci/devices`, or any other I/O
//! failure, is an [`Error::Io`] that names what was being read.
//!
//! A scan is a snapshot: a device may go away right after it was read. A live listener binds
//! its socket first, scans, applies the snapshot, and then applies what the socket queued
//! meanwhile, so a late `remove` wins over the scan. A resync's rescan goes further: the
//! listener goes on receiving while a scanner thread reads sysfs (or, without one, between the
//! devices the scan reads: `Sysfs::scan_between`, crate-internal) and applies what it received
//! after the reconcile, so that the socket does not overflow again while sysfs is read.
//!
//! What a scan reads is what the registry keeps, no more: each PCI function, and of the class
//! directories only the entries whose link leads below a PCI function, or to an NVMe
//! multipath head or a VFIO group (one `readlink` tells the others apart, and they are not
//! opened).
//!
//! ```no_run
//! use pciplug::{PciPath, Registry};
//! use pciplug::sysfs::Sysfs;
//! # fn main() -> pciplug::Result<()> {
//! let mut registry = Registry::new();
//! Sysfs::default().scan()?.apply_to(&mut registry);
//! let path: PciPath = "02/00".parse()?;
//! if let Some(disk) = registry.disk(&path) {
//!     println!("{path} -> {}", disk.devnode());
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::devpath;
use crate::error::{Error, Result};
use crate::registry::{Change, Registry};
use crate::uevent::Uevent;

mod device_dir;
mod nsid;
mod nvme_link;
mod scsi_host;
use device_dir::read_device;
pub use nvme_link::NvmeLink;
use nvme_link::subsystem_links;
pub use scsi_host::ScsiHost;

/// The largest attribute file read. Sysfs attributes are at most a page; a bigger file is not
/// a sysfs attribute, and reading it whole is not worth the memory.
const MAX_ATTR: u64 = 64 * 1024;

/// A sysfs tree to read from: `/sys`, or another mount of it in a container or a test.
///
/// `Sysfs` holds only the root path; every call reads afresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysfs {
    /// As given; canonicalized at each read so that a moved mount is seen.
    root: PathBuf,
}

/// What a coldplug scan found: the devices present, and the NVMe subsystem links.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// One `add` event per device, with no sequence number: PCI functions first (a bridge
    /// before what is behind it), then their children, by devpath (a disk before its
    /// partitions).
    pub events: Vec<Uevent>,
    /// The controllers of every NVMe subsystem that are below a PCI function, by subsystem
    /// then controller name.
    pub nvme_links: Vec<NvmeLink>,
}

impl Default for Sysfs {
    /// The system's sysfs, `/sys`.
    fn default() -> Sysfs {
        Sysfs::new("/sys")
    }
}

impl Sysfs {
    /// Reads the sysfs tree mounted at `root` (`/sys` on an ordinary system, which is what
    /// [`Sysfs::default`] uses). Does no I/O.
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    /// Reads every device present now: see the [module documentation](self).
    ///
    /// Fails only if the tree cannot be read (`bus/pci/devices` missing or unreadable, an I/O
    /// error other than a device going away); class directories that do not exist, such as
    /// `class/nvme` without the NVMe driver, are simply empty.
    pub fn scan(&self) -> Result<Snapshot> {
        match self.scan_between(&mut || ControlFlow::<Infallible>::Continue(()))? {
            ControlFlow::Continue(snapshot) => Ok(snapshot),
        }
    }

    /// The registry of what sysfs shows now: a [`scan`](Self::scan) applied to a new
    /// registry, with the NVMe namespace ids read ([`read_nsids`](Self::read_nsids)). What a
    /// monitor starts from, and what a resync reconciles with.
    ///
    /// # Errors
    ///
    /// As [`scan`](Self::scan).
    pub fn registry(&self) -> Result<Registry> {
        Ok(self.registry_of(&self.scan()?))
    }

    /// The registry of `snapshot`, a scan of this tree, with the namespace ids read.
    pub(crate) fn registry_of(&self, snapshot: &Snapshot) -> Registry {
        let mut r = Registry::new();
        snapshot.apply_to(&mut r);
        self.read_nsids(&mut r);
        r
    }

    /// [`scan`](Self::scan), calling `between` after each device it reads (and each NVMe
    /// subsystem): a live listener's scanner thread looks there whether to stop, and a
    /// listener that scans itself takes what its socket received meanwhile
    /// (`monitor/held.rs`). `between` breaking off the scan ends it with what it broke with.
    pub(crate) fn scan_between<B>(
        &self,
        between: &mut dyn FnMut() -> ControlFlow<B>,
    ) -> Result<ControlFlow<B, Snapshot>> {
        let pci_dir = self.root.join("bus/pci/devices");
        let functions = list_dir(&pci_dir)?;
        let root = self.canonical_root()?;
        let mut events = Vec::new();
        for link in functions {
            events.extend(read_device(&root, &link, Kind::Function, None)?);
            if let ControlFlow::Break(b) = between() {
                return Ok(ControlFlow::Break(b));
            }
        }
        for (class, kind) in [
            ("nvme", Kind::NvmeController),
            ("block", Kind::Block),
            ("net", Kind::Net),
            ("vfio", Kind::VfioGroup),
        ] {
            for link in list_class(&self.root.join("class").join(class))? {
                // A skipped entry cost one `readlink`: no need to stop for it.
                let (concerns, target) = may_concern_registry(&link);
                if concerns {
                    events.extend(read_device(&root, &link, kind, target)?);
                    if let ControlFlow::Break(b) = between() {
                        return Ok(ControlFlow::Break(b));
                    }
                }
            }
        }
        // PCI functions first, so the children find them with their IDs; devpath order puts a
        // bridge before what is behind it and a disk before its partitions.
        events.sort_by(|a, b| {
            (a.subsystem() != "pci", a.devpath()).cmp(&(b.subsystem() != "pci", b.devpath()))
        });

        let mut nvme_links = Vec::new();
        for dir in list_class(&self.root.join("class/nvme-subsystem"))? {
            nvme_links.extend(subsystem_links(&root, &dir)?);
            if let ControlFlow::Break(b) = between() {
                return Ok(ControlFlow::Break(b));
            }
        }
        nvme_links.sort_by(|a, b| {
            (&a.subsystem, &a.controller, a.path).cmp(&(&b.subsystem, &b.controller, b.path))
        });
        Ok(ControlFlow::Continue(Snapshot { events, nvme_links }))
    }

    fn canonical_root(&self) -> Result<PathBuf> {
        fs::canonicalize(&self.root)
            .map_err(|e| Error::io(format!("resolving {}", self.root.display()), e))
    }
}

impl Snapshot {
    /// Applies the snapshot to `registry`: the PCI functions, then their children, then the
    /// NVMe links (a link only takes once its controller is in the registry). Returns what
    /// changed; applying the same snapshot again changes nothing.
    pub fn apply_to(&self, registry: &mut Registry) -> Vec<Change> {
        let mut changes = Vec::new();
        let (functions, children): (Vec<&Uevent>, Vec<&Uevent>) =
            self.events.iter().partition(|e| e.subsystem() == "pci");
        for ev in functions.into_iter().chain(children) {
            match registry.apply(ev) {
                Ok(c) => changes.extend(c),
                // `scan` returns only devices it could place; a hand-made snapshot may not.
                Err(e) => tracing::debug!("coldplug event {ev} not applied: {e}"),
            }
        }
        for link in &self.nvme_links {
            changes.extend(link.apply_to(registry));
        }
        changes
    }
}

/// Which source a device was listed in; decides which devices are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Function,
    Block,
    Net,
    NvmeController,
    VfioGroup,
}

impl Kind {
    /// The subsystem of every device listed as this kind (`bus/pci/devices`, `class/block`,
    /// ...): what its `subsystem` link names.
    fn subsystem(self) -> &'static str {
        match self {
            Kind::Function => "pci",
            Kind::Block => "block",
            Kind::Net => "net",
            Kind::NvmeController => "nvme",
            Kind::VfioGroup => "vfio",
        }
    }
}

/// The entries of a directory that must exist (`bus/pci/devices`).
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let op = || format!("reading {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(op(), e))? {
        out.push(entry.map_err(|e| Error::io(op(), e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The entries of a class directory; one that does not exist (no such driver loaded, or no
/// such kernel feature) has none.
fn list_class(dir: &Path) -> Result<Vec<PathBuf>> {
    match list_dir(dir) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        other => other,
    }
}

/// False for a class entry whose link, by its text alone, leads to a device that cannot
/// concern the registry (a virtual one: loop devices, `lo`, bridges, device-mapper disks): a
/// scan, and so a resync, reads only the PCI functions, what is below them, and the NVMe
/// multipath heads. Anything else, a link that cannot be read or one that does not lead
/// plainly into `devices/` included, is left to [`read_device`], which resolves it fully.
///
/// Also returns the link's text, if it could be read, for [`read_device`] to use.
fn may_concern_registry(link: &Path) -> (bool, Option<PathBuf>) {
    let Ok(target) = fs::read_link(link) else {
        return (true, None);
    };
    let Some(mut rest) = target.to_str() else {
        return (true, Some(target));
    };
    while let Some(r) = rest.strip_prefix("../") {
        rest = r;
    }
    if !rest.starts_with("devices/") || rest.contains("/../") || rest.contains("/./") {
        return (true, Some(target));
    }
    let concerns = devpath::may_concern_registry(format!("/{rest}").as_bytes());
    (concerns, Some(target))
}

/// True for the errors of a device that went away while being read.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Resolves a link to a device directory inside `root` (canonical). `Ok(None)` (logged) if
/// the device went away or the link leads outside `root` or outside `/devices`.
fn resolve(root: &Path, link: &Path) -> Result<Option<(PathBuf, String)>> {
    let resolved = match fs::canonicalize(link) {
        Ok(p) => p,
        Err(e) if is_gone(&e) => {
            tracing::debug!("{}: gone before it could be read ({e})", link.display());
            return Ok(None);
        }
        Err(e) => return Err(Error::io(format!("resolving {}", link.display()), e)),
    };
    let Some(devpath) = devpath_in(root, &resolved) else {
        tracing::warn!(
            "{} resolves to {}, outside {}/devices: not followed",
            link.display(),
            resolved.display(),
            root.display()
        );
        return Ok(None);
    };
    Ok(Some((resolved, devpath)))
}

/// The devpath of the device directory at `resolved` (canonical): its path below `root`
/// (canonical), if that is below `root/devices`.
fn devpath_in(root: &Path, resolved: &Path) -> Option<String> {
    resolved
        .strip_prefix(root)
        .ok()
        .and_then(Path::to_str)
        .map(|rel| format!("/{rel}"))
        .filter(|d| d.starts_with("/devices/"))
}

/// Reads an attribute file without following a symlink in its place.
fn read_attr(path: &Path) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    read_whole(file)
}

/// An attribute file's text, at most [`MAX_ATTR`] bytes of it.
fn read_whole(mut file: File) -> io::Result<String> {
    // A sysfs attribute fits in a page: read into one on the stack, where one read takes it
    // whole and the next finds the end, and allocate only what it holds. (`read_to_end` into
    // an empty `Vec` reads 32 bytes first, then grows the buffer.)
    let mut page = [0u8; 4096];
    let mut len = 0;
    while len < page.len() {
        match file.read(&mut page[len..]) {
            Ok(0) => return utf8(page[..len].to_vec()),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // More than a page: not a sysfs attribute, but read as before, up to `MAX_ATTR`.
    let mut bytes = page.to_vec();
    file.take(MAX_ATTR - page.len() as u64)
        .read_to_end(&mut bytes)?;
    utf8(bytes)
}

fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// What became of reading one attribute of a device.
enum Attr {
    Value(String),
    /// ENOENT: the attribute does not exist, or the whole device went away.
    Absent,
    /// The device is gone (ENODEV), or the file is not a plain attribute (a symlink, not
    /// UTF-8): the device is skipped. Already logged.
    Skip,
}

fn attr(path: &Path) -> Result<Attr> {
    classify(read_attr(path), path)
}

/// What a read of the attribute at `path` means for the scan.
fn classify(read: io::Result<String>, path: &Path) -> Result<Attr> {
    match read {
        Ok(v) => Ok(Attr::Value(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Attr::Absent),
        Err(e) if is_gone(&e) => {
            tracing::debug!("{}: gone while being read ({e})", path.display());
            Ok(Attr::Skip)
        }
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP) || e.kind() == io::ErrorKind::InvalidData =>
        {
            tracing::warn!(
                "{}: not a sysfs attribute ({e}); device skipped",
                path.display()
            );
            Ok(Attr::Skip)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The `KEY=VALUE` lines of a sysfs `uevent` file; other lines are ignored.
fn parse_uevent_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PciPath;
    use crate::registry::{DevType, Transport};
    use crate::uevent::Action;
    use std::collections::BTreeSet;
    use std::os::unix::fs::symlink;

    use crate::testing::fake_sysfs::*;

    fn p(s: &str) -> PciPath {
        s.parse().unwrap()
    }

    fn registry_of(snapshot: &Snapshot) -> Registry {
        let mut r = Registry::new();
        snapshot.apply_to(&mut r);
        r
    }

    fn names<'a>(blocks: impl IntoIterator<Item = &'a crate::BlockDevice>) -> Vec<&'a str> {
        blocks.into_iter().map(|b| &*b.name).collect()
    }

    #[test]
    fn the_q35_topology_scans_into_the_expected_registry() {
        let snap = Sysfs::new(q35().root()).scan().unwrap();
        let r = registry_of(&snap);

        let paths: Vec<String> = r.devices().map(|d| d.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "00", "02", "02/00", "03", "03/00", "03/00/01", "04", "04/00", "06", "06/00"
            ]
        );
        assert_eq!(names(r.block_devices(&p("02/00"))), ["vda"]);
        assert_eq!(
            names(r.block_devices(&p("03/00/01"))),
            ["vdb", "vdb1", "vdb2"]
        );
        assert_eq!(r.net(&p("04/00")).unwrap().name.as_ref(), "eth0");
        assert_eq!(r.net(&p("04/00")).unwrap().ifindex, Some(2));
        for bare in ["00", "02", "03", "03/00", "04", "06"] {
            assert!(r.block_devices(&p(bare)).is_empty(), "{bare}");
            assert!(r.net(&p(bare)).is_none(), "{bare}");
        }

        // NVMe: the head counts under the controller's function once linked.
        assert_eq!(
            snap.nvme_links,
            [NvmeLink {
                path: p("06/00"),
                controller: "nvme0".into(),
                subsystem: "nvme-subsys0".into(),
            }]
        );
        let disk = r.disk(&p("06/00")).unwrap();
        assert_eq!(&*disk.name, "nvme0n1");
        assert_eq!(
            disk.transport,
            Transport::NvmeMultipath {
                subsystem: "nvme-subsys0".into()
            }
        );
        assert_eq!(r.unresolved_nvme_heads().count(), 0);
        assert_eq!(
            r.get(&p("06/00")).unwrap().nvme[0].subsystem.as_deref(),
            Some("nvme-subsys0")
        );

        // The hidden per-path disk, loop0 and lo are nowhere.
        for gone in ["nvme0c0n1", "loop0", "lo"] {
            assert!(
                snap.events.iter().all(|e| e.sysname() != gone),
                "{gone} was returned"
            );
        }
        let all_blocks: Vec<&str> = r
            .devices()
            .flat_map(|d| names(r.block_devices(&d.path)))
            .collect();
        assert_eq!(all_blocks, ["vda", "vdb", "vdb1", "vdb2", "nvme0n1"]);

        // IDs, driver and DISKSEQ (from the attribute when the uevent file lacks it).
        let vda_fn = r.get(&p("02/00")).unwrap();
        assert_eq!(vda_fn.driver.as_deref(), Some("virtio-pci"));
        assert_eq!(vda_fn.ids.unwrap().id, (0x1af4, 0x1042));
        assert_eq!(r.disk(&p("02/00")).unwrap().diskseq, Some(1));
        let vdb = r.block_devices(&p("03/00/01"));
        assert_eq!(vdb[1].devtype, DevType::Partition);
        assert_eq!(vdb[1].disk.as_deref(), Some("vdb"));
        assert_eq!(vdb[1].diskseq, Some(2), "a partition carries its disk's");
        assert_eq!(vdb[1].partn, Some(1));
    }

    #[test]
    fn events_look_like_the_kernels() {
        let snap = Sysfs::new(q35().root()).scan().unwrap();
        let vda = snap.events.iter().find(|e| e.devpath() == VDA).unwrap();
        assert_eq!(vda.action(), Action::Add);
        assert_eq!(vda.seqnum(), None);
        assert_eq!(vda.subsystem(), "block");
        for (k, v) in [
            ("ACTION", "add"),
            ("DEVPATH", VDA),
            ("SUBSYSTEM", "block"),
            ("MAJOR", "254"),
            ("MINOR", "0"),
            ("DEVNAME", "vda"),
            ("DEVTYPE", "disk"),
            ("DISKSEQ", "1"),
        ] {
            assert_eq!(vda.get(k), Some(v), "{k}");
        }
        assert_eq!(vda.get("SEQNUM"), None);
        let f = snap
            .events
            .iter()
            .find(|e| e.devpath() == "/devices/pci0000:00/0000:00:02.0/0000:01:00.0")
            .unwrap();
        assert_eq!(f.subsystem(), "pci");
        assert_eq!(f.get("PCI_SLOT_NAME"), Some("0000:01:00.0"));
        assert_eq!(f.get("DRIVER"), Some("virtio-pci"));

        // Functions first, in path order; then children by devpath.
        let first_child = snap
            .events
            .iter()
            .position(|e| e.subsystem() != "pci")
            .unwrap();
        assert_eq!(first_child, 10);
        assert!(
            snap.events[first_child..]
                .iter()
                .all(|e| e.subsystem() != "pci")
        );
        assert!(snap.events[first_child..].is_sorted_by_key(|e| e.devpath().to_owned()));
    }

    #[test]
    fn applying_is_independent_of_the_snapshot_order_and_idempotent() {
        let snap = Sysfs::new(q35().root()).scan().unwrap();
        let r = registry_of(&snap);
        let mut reversed = snap.clone();
        reversed.events.reverse();
        reversed.nvme_links.reverse();
        #[cfg(feature = "serde")]
        {
            let json =
                |r: &Registry| serde_json::to_string(&r.views().collect::<Vec<_>>()).unwrap();
            assert_eq!(json(&r), json(&registry_of(&reversed)));
        }
        let mut again = r.clone();
        assert_eq!(snap.apply_to(&mut again), []);
    }

    #[test]
    fn devices_that_go_away_during_the_scan_are_skipped() {
        let t = q35();
        // Listed, then gone: dangling links in bus/pci/devices and class/block.
        t.pci(
            "/devices/pci0000:00/0000:00:07.0",
            "1AF4:1042",
            "10000",
            None,
        );
        t.unplug("/devices/pci0000:00/0000:00:07.0");
        t.class_device(
            "block",
            "/devices/pci0000:00/0000:00:04.0/0000:05:00.0/virtio9/block/vdz",
            &["DEVNAME=vdz"],
        );
        t.unplug("/devices/pci0000:00/0000:00:04.0/0000:05:00.0/virtio9");
        // Resolves, but the uevent file is gone (removed between canonicalize and read).
        fs::remove_file(t.root().join(&ETH0[1..]).join("uevent")).unwrap();

        let snap = Sysfs::new(t.root()).scan().unwrap();
        let r = registry_of(&snap);
        assert!(r.get(&p("07")).is_none());
        assert!(snap.events.iter().all(|e| e.sysname() != "vdz"));
        assert!(r.net(&p("04/00")).is_none(), "eth0 must not be resurrected");
        assert_eq!(r.disk(&p("02/00")).unwrap().name.as_ref(), "vda");
    }

    #[test]
    fn virtual_devices_are_not_read() {
        let t = q35();
        // A virtual device that reading would fail on: a scan that read it would be an error.
        let loop1 = "/devices/virtual/block/loop1";
        t.class_device("block", loop1, &["DEVNAME=loop1"]);
        let uevent = t.root().join(&loop1[1..]).join("uevent");
        fs::remove_file(&uevent).unwrap();
        fs::create_dir(&uevent).unwrap();
        let snap = Sysfs::new(t.root()).scan().unwrap();
        assert!(snap.events.iter().all(|e| e.sysname() != "loop1"));
        // The NVMe multipath head, virtual too, is read.
        assert!(snap.events.iter().any(|e| e.sysname() == "nvme0n1"));
        // The same failure on a device below a PCI function is an error.
        let vda_uevent = t.root().join(&VDA[1..]).join("uevent");
        fs::remove_file(&vda_uevent).unwrap();
        fs::create_dir(&vda_uevent).unwrap();
        let e = Sysfs::new(t.root()).scan().unwrap_err().to_string();
        assert!(
            e.ends_with("vda/uevent: Is a directory (os error 21)"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_root_is_a_clear_error() {
        let e = Sysfs::new("/nonexistent").scan().unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "reading /nonexistent/bus/pci/devices: No such file or directory (os error 2)"
        );
        assert!(std::error::Error::source(&e).is_some());

        let empty = tempfile::tempdir().unwrap();
        let e = Sysfs::new(empty.path()).scan().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "reading {}/bus/pci/devices: No such file or directory (os error 2)",
                empty.path().display()
            )
        );
    }

    #[test]
    fn links_out_of_the_root_are_not_followed() {
        let t = q35();
        let outside = FakeSysfs::new();
        outside.class_device(
            "block",
            "/devices/pci0000:00/0000:00:09.0/virtio7/block/vdq",
            &["DEVNAME=vdq", "DEVTYPE=disk"],
        );
        let target = outside
            .root()
            .join("devices/pci0000:00/0000:00:09.0/virtio7/block/vdq");
        symlink(&target, t.root().join("class/block/vdq")).unwrap();
        // An attribute that is a symlink is not read through either.
        let secret = outside.root().join("secret");
        fs::write(&secret, "DEVNAME=vdr\nDEVTYPE=disk\n").unwrap();
        let vdr = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vdr";
        t.link(&format!("{vdr}/subsystem"), "class/block");
        symlink(&secret, t.root().join(&vdr[1..]).join("uevent")).unwrap();
        t.link("class/block/vdr", vdr);
        // Inside the root but not a device: devpaths start with /devices.
        t.class_device(
            "net",
            "/firmware/pci0000:00/0000:00:04.0/0000:05:00.0/net/eth9",
            &["INTERFACE=eth9"],
        );

        let snap = Sysfs::new(t.root()).scan().unwrap();
        for name in ["vdq", "vdr", "eth9"] {
            assert!(snap.events.iter().all(|e| e.sysname() != name), "{name}");
        }
        assert_eq!(
            registry_of(&snap).disk(&p("02/00")).unwrap().name.as_ref(),
            "vda"
        );
    }

    #[test]
    fn nvme_links_are_found_per_subsystem() {
        let t = q35();
        // A second path to the same subsystem, on another root port (multipath).
        let second = "/devices/pci0000:00/0000:00:05.0/0000:06:00.0";
        t.pci(second, "1B36:0010", "10802", Some("nvme"));
        let ctrl = format!("{second}/nvme/nvme1");
        t.class_device("nvme", &ctrl, &["DEVNAME=nvme1"]);
        t.link(&format!("{SUBSYS}/nvme1"), &ctrl);
        // A fabrics controller in another subsystem: no PCI path, no link.
        let fabrics = "/devices/virtual/nvme-fabrics/ctl/nvme2";
        t.class_device("nvme", fabrics, &["DEVNAME=nvme2"]);
        t.device(
            "/devices/virtual/nvme-subsystem/nvme-subsys2",
            "class/nvme-subsystem",
            &[],
        );
        t.link(
            "class/nvme-subsystem/nvme-subsys2",
            "/devices/virtual/nvme-subsystem/nvme-subsys2",
        );
        t.link("devices/virtual/nvme-subsystem/nvme-subsys2/nvme2", fabrics);

        let s = Sysfs::new(t.root());
        let links = s.nvme_links_of("nvme-subsys0").unwrap();
        let got: Vec<(String, &str)> = links
            .iter()
            .map(|l| (l.path.to_string(), l.controller.as_str()))
            .collect();
        assert_eq!(
            got,
            [("05/00".to_owned(), "nvme1"), ("06/00".to_owned(), "nvme0")]
        );
        assert!(s.nvme_links_of("nvme-subsys2").unwrap().is_empty());
        assert!(s.nvme_links_of("nvme-subsys9").unwrap().is_empty());
        let e = s.nvme_links_of("../../devices").unwrap_err();
        assert!(e.to_string().contains("not a subsystem name"), "{e}");

        // Both paths lead to the head.
        let r = registry_of(&s.scan().unwrap());
        for path in ["05/00", "06/00"] {
            assert_eq!(r.disk(&p(path)).unwrap().name.as_ref(), "nvme0n1", "{path}");
        }
    }

    #[test]
    fn a_tree_without_nvme_or_net_classes_scans_fine() {
        let t = FakeSysfs::new();
        t.pci(
            "/devices/pci0000:00/0000:00:02.0",
            "1AF4:1042",
            "10000",
            None,
        );
        let snap = Sysfs::new(t.root()).scan().unwrap();
        assert_eq!(snap.events.len(), 1);
        assert!(snap.nvme_links.is_empty());
        assert!(
            Sysfs::new(t.root())
                .nvme_links_of("nvme-subsys0")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn vfio_groups_are_found_in_their_class() {
        let t = q35();
        t.vfio_group(5);
        // A no-IOMMU group is no IOMMU group: not kept.
        t.class_device(
            "vfio",
            "/devices/virtual/vfio/noiommu-0",
            &["DEVNAME=vfio/noiommu-0"],
        );
        let snap = Sysfs::new(t.root()).scan().unwrap();
        let groups: Vec<&Uevent> = snap
            .events
            .iter()
            .filter(|e| e.subsystem() == "vfio")
            .collect();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].devpath(), "/devices/virtual/vfio/5");
        let r = registry_of(&snap);
        assert_eq!(r.vfio_groups().collect::<Vec<_>>(), [5]);
        assert_eq!(
            r.len(),
            registry_of(&Sysfs::new(q35().root()).scan().unwrap()).len()
        );
    }

    #[test]
    fn uevent_files_are_key_value_lines() {
        let env = parse_uevent_file("MAJOR=254\nDEVNAME=vda\n\nnoise\n=x\nEMPTY=\n");
        let keys: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["MAJOR", "DEVNAME", "EMPTY"]));
        assert_eq!(env["EMPTY"], "");
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Sysfs>();
        is::<Snapshot>();
        is::<NvmeLink>();
    }
}
