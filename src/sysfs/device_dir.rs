//! [`DeviceDir`]: a device's sysfs directory, opened once, so that a scan reads each device
//! whole, one generation of it, never the attributes of two plugs mixed.

use std::ffi::{CStr, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Attr, classify, is_gone, read_whole};
use crate::error::{Error, Result};
use crate::netlink::sys::{open_at, read_link_at};

/// A device's directory, opened once: each of its attributes is read relative to this handle,
/// so all of them come from the one directory, whatever happens to the path meanwhile. Sysfs
/// gives a replugged device a new directory (a new kernfs node, a new inode): a device
/// replugged during the read either makes the reads through the old handle fail (`ENOENT`,
/// the old node is gone) or leaves them reading the old device whole; comparing the handle
/// with what the path names afterwards ([`DeviceDir::still_there`]) tells the old from the
/// current one.
pub(super) struct DeviceDir {
    pub(super) file: File,
    /// Canonical, for messages and the identity check.
    pub(super) path: PathBuf,
}

/// What the path of a [`DeviceDir`] names once its attributes were read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Identity {
    /// The directory that was read: what was read is the device now present.
    Same,
    /// Nothing: the device went away.
    Gone,
    /// Another directory: the device was replugged while being read.
    Replaced,
}

impl DeviceDir {
    /// Opens the device directory at `path` (canonical); `None` if it is gone.
    pub(super) fn open(path: PathBuf) -> Result<Option<DeviceDir>> {
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
    pub(super) fn still_there(&self) -> Result<Identity> {
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
pub(super) const MAX_REREADS: u32 = 3;

/// A test's stand-in for a replug at a chosen moment: called after each attribute read of
/// a device (its directory and the attribute's name).
#[cfg(test)]
pub(super) type ReadHook = Box<dyn FnMut(&Path, &CStr)>;

#[cfg(test)]
thread_local! {
    pub(super) static AFTER_READ: std::cell::RefCell<Option<ReadHook>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
pub(super) fn after_read(dir: &Path, name: &CStr) {
    AFTER_READ.with(|h| {
        if let Some(hook) = h.borrow_mut().as_mut() {
            hook(dir, name);
        }
    });
}

#[cfg(not(test))]
#[inline(always)]
pub(super) fn after_read(_dir: &Path, _name: &CStr) {}

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
pub(super) fn attr_at(dev: &DeviceDir, name: &CStr) -> Result<Attr> {
    let read = read_attr_at(&dev.file, name);
    after_read(&dev.path, name);
    classify(
        read,
        &dev.path.join(Path::new(OsStr::from_bytes(name.to_bytes()))),
    )
}

/// The name the device's `subsystem` link points to; `None` (logged) if the device went away
/// or the link has no name.
pub(super) fn read_subsystem(dev: &DeviceDir, devpath: &str) -> Result<Option<String>> {
    let read = read_link_at(dev.file.as_fd(), c"subsystem");
    after_read(&dev.path, c"subsystem");
    match read {
        Ok(target) => match target.file_name().and_then(|n| n.to_str()) {
            Some(name) => Ok(Some(name.to_owned())),
            None => {
                tracing::warn!("{devpath}: subsystem link {target:?} has no name; skipped");
                Ok(None)
            }
        },
        Err(e) if is_gone(&e) => {
            tracing::debug!("{devpath}: gone before its subsystem was read ({e})");
            Ok(None)
        }
        Err(e) => Err(Error::io(
            format!("reading {}", dev.path.join("subsystem").display()),
            e,
        )),
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
}
