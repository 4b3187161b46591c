//! Reading one device for the scan: [`DeviceDir`], its sysfs directory opened once, so that
//! the device is read whole, one generation of it, never the attributes of two plugs mixed.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Attr, Kind, classify, devpath_in, is_gone, parse_uevent_file, read_whole, resolve};
use crate::devpath;
use crate::error::{Error, Result};
use crate::netlink::sys::{open_at, open_dir_without_symlinks};
use crate::path::PciPath;
use crate::uevent::{Action, Uevent};

/// A device's directory, opened once: each of its attributes is read relative to this handle,
/// so all of them come from the one directory, whatever happens to the path meanwhile. Sysfs
/// gives a replugged device a new directory (a new kernfs node, a new inode): a device
/// replugged during the read either makes the reads through the old handle fail (`ENOENT`,
/// the old node is gone) or leaves them reading the old device whole; comparing the handle
/// with what the path names afterwards ([`DeviceDir::still_there`]) tells the old from the
/// current one.
struct DeviceDir {
    file: File,
    /// Canonical, for messages and the identity check.
    path: PathBuf,
}

/// What the path of a [`DeviceDir`] names once its attributes were read.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    /// The directory that was read: what was read is the device now present.
    Same,
    /// Nothing: the device went away.
    Gone,
    /// Another directory: the device was replugged while being read.
    Replaced,
}

impl DeviceDir {
    /// Opens the device directory at `path` (canonical); `None` if it is gone.
    fn open(path: PathBuf) -> Result<Option<DeviceDir>> {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path);
        match opened {
            Ok(file) => Ok(Some(DeviceDir { file, path })),
            Err(e) if is_gone(&e) => {
                tracing::debug!("{}: gone before it could be opened ({e})", path.display());
                Ok(None)
            }
            Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
        }
    }

    /// Whether the path still names the directory this handle opened (same device and inode).
    fn still_there(&self) -> Result<Identity> {
        let op = || format!("reading {}", self.path.display());
        let now = match fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if is_gone(&e) => return Ok(Identity::Gone),
            Err(e) => return Err(Error::io(op(), e)),
        };
        let read = self.file.metadata().map_err(|e| Error::io(op(), e))?;
        if (now.dev(), now.ino()) == (read.dev(), read.ino()) {
            Ok(Identity::Same)
        } else {
            Ok(Identity::Replaced)
        }
    }
}

/// How many times a device replugged while being read is read again before it is skipped.
/// Each replug is a `remove` and an `add` uevent queued behind the scan, which add the device
/// anyway: skipping it costs nothing but the wait for them, while reading on could last as
/// long as someone replugs.
const MAX_REREADS: u32 = 3;

/// A test's stand-in for a replug at a chosen moment: called after each attribute read of
/// a device (its directory and the attribute's name).
#[cfg(test)]
type ReadHook = Box<dyn FnMut(&Path, &CStr)>;

#[cfg(test)]
thread_local! {
    static AFTER_READ: std::cell::RefCell<Option<ReadHook>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
fn after_read(dir: &Path, name: &CStr) {
    AFTER_READ.with(|h| {
        if let Some(hook) = h.borrow_mut().as_mut() {
            hook(dir, name);
        }
    });
}

#[cfg(not(test))]
#[inline(always)]
fn after_read(_dir: &Path, _name: &CStr) {}

/// The `add` event for the device behind `link`, or `None` if it is not kept or went away.
///
/// One generation of the device, never a mix: its attributes are read through one
/// [`DeviceDir`], which is then checked to be what the path still names. A device replugged
/// meanwhile is read again, up to [`MAX_REREADS`] times, then skipped.
///
/// `target`: the link's text, if the caller read it already (for the first read only: a
/// device replugged meanwhile may be linked elsewhere, so a reread reads the link again).
pub(super) fn read_device(
    root: &Path,
    link: &Path,
    kind: Kind,
    mut target: Option<PathBuf>,
) -> Result<Option<Uevent>> {
    for _ in 0..=MAX_REREADS {
        let Some((dev, devpath)) = open_device(root, link, target.take())? else {
            return Ok(None);
        };
        if !is_kept(link, &devpath, kind) {
            return Ok(None);
        }
        let read = read_generation(&dev, link, devpath, kind)?;
        match dev.still_there()? {
            Identity::Same => return Ok(read),
            Identity::Gone => {
                tracing::debug!("{}: gone while being read", link.display());
                return Ok(None);
            }
            Identity::Replaced => {
                tracing::debug!("{}: replugged while being read; again", link.display());
            }
        }
    }
    tracing::warn!(
        "{}: replugged during each of {} reads; skipped (its queued uevents add it)",
        link.display(),
        MAX_REREADS + 1
    );
    Ok(None)
}

/// The device directory `link` leads to, opened, and its devpath; `None` (logged) if it went
/// away or is not below `root/devices`.
///
/// The link is read and its target opened with no symlink resolved on the way
/// ([`open_dir_without_symlinks`]): where that succeeds, the path spliced together is the
/// canonical one once `.` and `..` are taken out, and costs two system calls where
/// `realpath` reads every component of the path (a dozen, each a walk from the root). Where it
/// does not (a symlink in the root's path or in the tree, a kernel without `openat2`, a
/// device that went away, a link out of the root), the link is resolved and the directory
/// opened as before, which says why.
fn open_device(
    root: &Path,
    link: &Path,
    target: Option<PathBuf>,
) -> Result<Option<(DeviceDir, String)>> {
    if let Some(found) = open_without_symlinks(root, link, target) {
        return Ok(Some(found));
    }
    let Some((dir, devpath)) = resolve(root, link)? else {
        return Ok(None);
    };
    Ok(DeviceDir::open(dir)?.map(|dev| (dev, devpath)))
}

/// Set once `openat2` was refused as a system call: the quick way is then not tried again.
static OPENAT2_REFUSED: AtomicBool = AtomicBool::new(false);

/// [`open_device`]'s quick way, `None` wherever it does not apply.
fn open_without_symlinks(
    root: &Path,
    link: &Path,
    target: Option<PathBuf>,
) -> Option<(DeviceDir, String)> {
    if OPENAT2_REFUSED.load(Ordering::Relaxed) {
        return None;
    }
    let target = match target {
        Some(t) => t,
        None => fs::read_link(link).ok()?,
    };
    // An absolute target replaces the link's directory in the join.
    let spliced = link.parent()?.join(target);
    if !spliced.is_absolute() {
        return None;
    }
    let file = match open_dir_without_symlinks(&spliced) {
        Ok(file) => file,
        Err(e) => {
            // No `openat2` here (a kernel before 5.6, a seccomp filter): not again.
            if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                OPENAT2_REFUSED.store(true, Ordering::Relaxed);
            }
            return None;
        }
    };
    // No symlink on the way: each `..` went to the directory before it.
    let path = without_dots(&spliced);
    let devpath = devpath_in(root, &path)?;
    Some((DeviceDir { file, path }, devpath))
}

/// `path` (absolute) with its `.` and `..` components taken out, as the kernel walks them when
/// no symlink is on the way (`..` at `/` stays there).
fn without_dots(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The `add` event made of what the directory `dev` holds, or `None` if it is not kept or
/// went away.
fn read_generation(
    dev: &DeviceDir,
    link: &Path,
    devpath: String,
    kind: Kind,
) -> Result<Option<Uevent>> {
    // The subsystem is the list the device was found in: the kernel links a device into
    // `bus/pci/devices` or `class/<class>` by the very subsystem its `subsystem` link names,
    // so reading that link again per device (a system call each) would learn nothing.
    let subsystem = kind.subsystem().to_owned();
    let Some(mut env) = read_fields(dev, &devpath)? else {
        return Ok(None);
    };
    if kind == Kind::Block && !add_block_facts(dev, &mut env)? {
        return Ok(None);
    }
    // The fields every kernel datagram carries, except SEQNUM.
    env.insert("ACTION".to_owned(), Action::Add.as_str().to_owned());
    env.insert("DEVPATH".to_owned(), devpath.clone());
    env.insert("SUBSYSTEM".to_owned(), subsystem.clone());
    match Uevent::from_parts(Action::Add, devpath, subsystem, None, env) {
        Ok(ev) => Ok(Some(ev)),
        Err(e) => {
            tracing::warn!("{}: skipped: {e}", link.display());
            Ok(None)
        }
    }
}

/// Whether a device listed as `kind` is one the registry keeps: a PCI function itself (not
/// something below one listed in `bus/pci/devices`), a class device below a PCI function, an
/// NVMe multipath head, or a VFIO group.
fn is_kept(link: &Path, devpath: &str, kind: Kind) -> bool {
    if kind == Kind::VfioGroup {
        return devpath::vfio_group(devpath.as_bytes()).is_some();
    }
    match PciPath::from_devpath(devpath) {
        Ok(Some((_, end))) => kind != Kind::Function || end == devpath.len(),
        Ok(None) => kind == Kind::Block && devpath::is_nvme_subsystem_path(devpath),
        Err(e) => {
            tracing::debug!("{}: not placeable, skipped: {e}", link.display());
            false
        }
    }
}

/// The fields of the device's `uevent` file; `None` if the device is skipped.
fn read_fields(dev: &DeviceDir, devpath: &str) -> Result<Option<HashMap<String, String>>> {
    match attr_at(dev, c"uevent")? {
        Attr::Value(text) => Ok(Some(parse_uevent_file(&text))),
        Attr::Absent => {
            tracing::debug!("{devpath}: gone before its uevent file was read");
            Ok(None)
        }
        Attr::Skip => Ok(None),
    }
}

/// What a block device's attributes add to its `uevent` fields: `false` if it is hidden
/// (an NVMe per-path disk) or went away, else adds `DISKSEQ` when the fields lack it.
///
/// Hidden is told by the name, as for a uevent (`devpath::is_hidden_nvme_path`), not by the
/// `hidden` attribute: the kernel hides only those disks (`GENHD_FL_HIDDEN`, set by NVMe
/// multipath alone), and one rule serves both ways in; a read of `hidden` per disk would
/// cost a scan of thousands of disks as many system calls.
fn add_block_facts(dev: &DeviceDir, env: &mut HashMap<String, String>) -> Result<bool> {
    if env
        .get("DEVNAME")
        .is_some_and(|n| devpath::is_hidden_nvme_path(n))
    {
        return Ok(false);
    }
    if env.contains_key("DISKSEQ") {
        return Ok(true);
    }
    // Kernels >= 5.15 have `diskseq` on the disk; a partition's events carry its disk's.
    // Its disk is the directory above, read through the partition's handle: the disk of
    // this very partition, even if the disk was replugged meanwhile.
    let diskseq = match env.get("DEVTYPE").map(String::as_str) {
        Some("partition") => c"../diskseq",
        _ => c"diskseq",
    };
    match attr_at(dev, diskseq)? {
        Attr::Value(v) => {
            if let Ok(seq) = v.trim().parse::<u64>() {
                env.insert("DISKSEQ".to_owned(), seq.to_string());
            }
            Ok(true)
        }
        Attr::Absent => Ok(true),
        Attr::Skip => Ok(false),
    }
}

/// Reads attribute `name` of the device whose directory is `dir`, relative to that very
/// directory, without following a symlink in its place.
fn read_attr_at(dir: &File, name: &CStr) -> io::Result<String> {
    read_whole(open_at(
        dir.as_fd(),
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW,
    )?)
}

/// Attribute `name` of the device whose directory `dev` opened; see [`DeviceDir`].
fn attr_at(dev: &DeviceDir, name: &CStr) -> Result<Attr> {
    let read = read_attr_at(&dev.file, name);
    after_read(&dev.path, name);
    match read {
        Ok(v) => Ok(Attr::Value(v)),
        // The file's path only for what is logged or returned.
        Err(e) => classify(
            Err(e),
            &dev.path.join(Path::new(OsStr::from_bytes(name.to_bytes()))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::sysfs::{Snapshot, Sysfs};
    use crate::testing::fake_sysfs::{FakeSysfs, VDA, VDB, q35};
    use crate::uevent::Uevent;

    /// Scans `t` with `hook` called after each attribute read.
    fn scan_with(t: &FakeSysfs, hook: impl FnMut(&Path, &CStr) + 'static) -> Snapshot {
        AFTER_READ.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
        let snap = Sysfs::new(t.root()).scan();
        AFTER_READ.with(|h| *h.borrow_mut() = None);
        snap.unwrap()
    }

    /// Replugs the disk at `devpath` as the kernel does: its directory goes (here, moved aside,
    /// so that a handle on it still reads the old disk whole) and a new one comes, with its
    /// own `MINOR` and `diskseq`, and a partition `1` whose `MINOR` is the disk's + 1.
    fn replug(t: &FakeSysfs, devpath: &str, minor: u32, diskseq: u64) {
        let gone = tempfile::tempdir_in(t.root()).unwrap();
        fs::rename(t.root().join(&devpath[1..]), gone.path().join("old")).unwrap();
        // A handle on the moved directory reads it after this call: it is kept, inside the
        // tree, and goes with it.
        std::mem::forget(gone);
        let name = devpath.rsplit('/').next().unwrap();
        let (minor_l, devname) = (format!("MINOR={minor}"), format!("DEVNAME={name}"));
        let disk = ["MAJOR=254", &minor_l, &devname, "DEVTYPE=disk"];
        t.device(devpath, "class/block", &disk);
        t.attr(devpath, "diskseq", &format!("{diskseq}\n"));
        let part = format!("{devpath}/{name}1");
        let (minor_l, devname) = (format!("MINOR={}", minor + 1), format!("DEVNAME={name}1"));
        let partition = [
            "MAJOR=254",
            &minor_l,
            &devname,
            "DEVTYPE=partition",
            "PARTN=1",
        ];
        t.device(&part, "class/block", &partition);
    }

    fn event<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a Uevent> {
        snap.events.iter().find(|e| e.sysname() == name)
    }

    /// `MINOR` and `DISKSEQ` of `name` in `snap`.
    fn generation(snap: &Snapshot, name: &str) -> (Option<String>, Option<String>) {
        let e = event(snap, name).unwrap_or_else(|| panic!("{name} was not read"));
        let field = |k| e.get(k).map(str::to_owned);
        (field("MINOR"), field("DISKSEQ"))
    }

    fn some(a: &str, b: &str) -> (Option<String>, Option<String>) {
        (Some(a.to_owned()), Some(b.to_owned()))
    }

    /// True once, at the first read of attribute `attr` in a directory ending with `dir`.
    fn first_read_of(dir: &'static str, attr: &'static CStr) -> impl FnMut(&Path, &CStr) -> bool {
        let mut done = false;
        move |d, a| {
            let now = !done && d.ends_with(dir) && a == attr;
            done |= now;
            now
        }
    }

    #[test]
    fn a_disk_replugged_between_two_attribute_reads_is_read_as_one_generation() {
        // vda's uevent file has its MINOR, its `diskseq` attribute the DISKSEQ: read apart,
        // a replug between them would give the MINOR of one plug and the DISKSEQ of the next.
        let t = Rc::new(q35());
        let plugs = Rc::clone(&t);
        let mut at = first_read_of("vda", c"uevent");
        let snap = scan_with(&t, move |d, a| {
            if at(d, a) {
                replug(&plugs, VDA, 32, 9);
            }
        });
        assert_eq!(
            generation(&snap, "vda"),
            some("32", "9"),
            "the new plug, whole"
        );

        // The same after the last read: the old plug was read whole, but is no longer there.
        let t = Rc::new(q35());
        let plugs = Rc::clone(&t);
        let mut at = first_read_of("vda", c"diskseq");
        let snap = scan_with(&t, move |d, a| {
            if at(d, a) {
                replug(&plugs, VDA, 48, 10);
            }
        });
        assert_eq!(generation(&snap, "vda"), some("48", "10"));
        // The rest of the tree is read as usual.
        assert_eq!(generation(&snap, "vdb"), some("16", "2"));
    }

    #[test]
    fn a_partition_whose_disk_is_replugged_while_it_is_read_gets_its_own_disks_diskseq() {
        // vdb1's DISKSEQ is its disk's attribute, read through vdb1's own directory.
        let t = Rc::new(q35());
        let plugs = Rc::clone(&t);
        let mut at = first_read_of("vdb1", c"uevent");
        let snap = scan_with(&t, move |d, a| {
            if at(d, a) {
                replug(&plugs, VDB, 64, 11);
            }
        });
        assert_eq!(generation(&snap, "vdb1"), some("65", "11"));
        // vdb2 went with the old disk: not read from its old directory.
        assert!(event(&snap, "vdb2").is_none());
    }

    #[test]
    fn a_disk_unplugged_while_it_is_read_is_not_returned() {
        let t = Rc::new(q35());
        let plugs = Rc::clone(&t);
        let mut at = first_read_of("vda", c"uevent");
        let snap = scan_with(&t, move |d, a| {
            if at(d, a) {
                plugs.unplug(VDA);
            }
        });
        assert!(event(&snap, "vda").is_none());
        assert_eq!(generation(&snap, "vdb"), some("16", "2"));
    }

    #[test]
    fn a_disk_replugged_during_every_read_is_skipped_after_a_few() {
        let t = Rc::new(q35());
        let plugs = Rc::clone(&t);
        let reads = Rc::new(Cell::new(0u32));
        let counted = Rc::clone(&reads);
        let snap = scan_with(&t, move |d, a| {
            if d.ends_with("vda") && a == c"uevent" {
                counted.set(counted.get() + 1);
                replug(&plugs, VDA, 100 + counted.get(), 100);
            }
        });
        assert_eq!(reads.get(), MAX_REREADS + 1);
        assert!(
            event(&snap, "vda").is_none(),
            "no generation was read whole"
        );
        assert_eq!(generation(&snap, "vdb"), some("16", "2"));
    }

    #[test]
    fn a_directory_is_still_there_until_it_is_replaced_or_removed() {
        let t = q35();
        let path = t.root().join(&VDA[1..]);
        let dev = DeviceDir::open(path.clone()).unwrap().unwrap();
        assert_eq!(dev.still_there().unwrap(), Identity::Same);
        replug(&t, VDA, 1, 2);
        assert_eq!(dev.still_there().unwrap(), Identity::Replaced);
        t.unplug(VDA);
        assert_eq!(dev.still_there().unwrap(), Identity::Gone);
        assert!(DeviceDir::open(path).unwrap().is_none());
    }

    /// What a scan returned, as comparable text: each event with every field the q35 tree
    /// has.
    fn events(snap: &Snapshot) -> Vec<String> {
        const KEYS: [&str; 16] = [
            "ACTION",
            "DEVPATH",
            "SUBSYSTEM",
            "MAJOR",
            "MINOR",
            "DEVNAME",
            "DEVTYPE",
            "DISKSEQ",
            "PARTN",
            "DRIVER",
            "PCI_ID",
            "PCI_SUBSYS_ID",
            "PCI_SLOT_NAME",
            "PCI_CLASS",
            "INTERFACE",
            "IFINDEX",
        ];
        let fields = |e: &Uevent| KEYS.map(|k| e.get(k).map(str::to_owned));
        snap.events
            .iter()
            .map(|e| format!("{e} {:?}", fields(e)))
            .collect()
    }

    #[test]
    fn the_quick_open_and_the_resolving_one_read_the_same_devices() {
        let t = q35();
        // Through a symlink to the root, no link can be opened without resolving it: every
        // device is found by `realpath`, as before the quick way.
        let aside = tempfile::tempdir().unwrap();
        let via_link = aside.path().join("sys");
        std::os::unix::fs::symlink(t.root(), &via_link).unwrap();
        let (direct, resolved) = (
            Sysfs::new(t.root()).scan().unwrap(),
            Sysfs::new(&via_link).scan().unwrap(),
        );
        assert_eq!(events(&direct), events(&resolved));
        assert_eq!(direct.events.len(), 17, "{:#?}", direct.events);
        // The quick way, relative `..` and all, names each device as `realpath` does; not
        // through the root's link.
        let root = t.root().canonicalize().unwrap();
        let link = t.root().join("class/block/vda");
        let (dev, devpath) = open_without_symlinks(&root, &link, None).expect("opened at once");
        assert_eq!(devpath, VDA);
        assert_eq!(dev.path, fs::canonicalize(&link).unwrap());
        assert!(open_without_symlinks(&root, &via_link.join("class/block/vda"), None).is_none());
    }

    #[test]
    fn a_symlink_on_the_way_is_resolved_not_read_past() {
        // `class/block` a link to a directory two levels down: its entries' `../../devices/...`
        // lead, there, to `a/devices/...`, which does not exist, while read as text from
        // `class/block` they would name the disks in `devices/`.
        let t = q35();
        let root = t.root();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::rename(root.join("class/block"), root.join("a/b/block")).unwrap();
        std::os::unix::fs::symlink("../a/b/block", root.join("class/block")).unwrap();
        assert!(!root.join("class/block/vda/uevent").exists());
        assert!(root.join(&VDA[1..]).join("uevent").exists());

        let snap = Sysfs::new(root).scan().unwrap();
        assert!(
            snap.events.iter().all(|e| e.subsystem() != "block"),
            "{:#?}",
            snap.events
        );
        // The rest is read as usual.
        assert!(event(&snap, "eth0").is_some());
    }

    #[test]
    fn opening_without_symlinks_refuses_any_on_the_way() {
        let t = q35();
        let dir = t.root().canonicalize().unwrap().join(&VDA[1..]);
        assert!(open_dir_without_symlinks(&dir).is_ok());
        // A link as the last component, and one on the way.
        let link = t.root().canonicalize().unwrap().join("class/block/vda");
        let last = open_dir_without_symlinks(&link).unwrap_err();
        assert_eq!(last.raw_os_error(), Some(libc::ENOTDIR), "{last}");
        let on_the_way = open_dir_without_symlinks(&link.join("../vda")).unwrap_err();
        assert_eq!(on_the_way.raw_os_error(), Some(libc::ELOOP), "{on_the_way}");
    }
}
