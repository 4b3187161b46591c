//! A fake sysfs tree for tests of the sysfs walker: real directories, `uevent` files and
//! relative links laid out as the kernel's. Every method panics on an I/O error: it is test
//! support, and a test that cannot build its tree must fail loudly.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// A fake sysfs in a temporary directory, laid out like the kernel's: device directories
/// under `devices/`, relative links from `bus/pci/devices` and `class/<class>`, a
/// `subsystem` link and a `uevent` file in each device.
pub struct FakeSysfs {
    dir: tempfile::TempDir,
}

impl Default for FakeSysfs {
    fn default() -> FakeSysfs {
        FakeSysfs::new()
    }
}

impl FakeSysfs {
    /// An empty tree with `bus/pci/devices`, the one directory a scan requires.
    pub fn new() -> FakeSysfs {
        FakeSysfs::with_dir(tempfile::tempdir().unwrap())
    }

    /// [`FakeSysfs::new`], in a temporary directory made inside `parent` (`/dev/shm` for a
    /// tree in memory, as sysfs is).
    pub fn new_in(parent: impl AsRef<Path>) -> FakeSysfs {
        FakeSysfs::with_dir(tempfile::tempdir_in(parent).unwrap())
    }

    fn with_dir(dir: tempfile::TempDir) -> FakeSysfs {
        fs::create_dir_all(dir.path().join("bus/pci/devices")).unwrap();
        FakeSysfs { dir }
    }

    /// The root of the tree, to pass as a sysfs root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A link at `at` (relative to the root) to `target` (relative to the root), written
    /// relative to the link's directory as the kernel does (`../../devices/...`).
    pub fn link(&self, at: &str, target: &str) {
        let at = at.trim_start_matches('/');
        let depth = Path::new(at).parent().map_or(0, |p| p.components().count());
        let rel = format!("{}{}", "../".repeat(depth), target.trim_start_matches('/'));
        let at = self.root().join(at);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        symlink(rel, at).unwrap();
    }

    /// Writes attribute `name` of the device at `devpath`.
    pub fn attr(&self, devpath: &str, name: &str, value: &str) {
        let dir = self.root().join(devpath.trim_start_matches('/'));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), value).unwrap();
    }

    /// A device directory with its `uevent` file and a `subsystem` link to
    /// `subsystem_dir` (`bus/pci`, `class/block`).
    pub fn device(&self, devpath: &str, subsystem_dir: &str, uevent: &[&str]) {
        let mut text = uevent.join("\n");
        text.push('\n');
        self.attr(devpath, "uevent", &text);
        self.link(&format!("{devpath}/subsystem"), subsystem_dir);
    }

    /// A PCI function at `devpath`, listed in `bus/pci/devices`.
    pub fn pci(&self, devpath: &str, id: &str, class: &str, driver: Option<&str>) {
        let bdf = devpath.rsplit('/').next().unwrap();
        let mut uevent = Vec::new();
        let driver_line = driver.map(|d| format!("DRIVER={d}"));
        if let Some(d) = &driver_line {
            uevent.push(d.as_str());
        }
        let (class_line, id_line) = (format!("PCI_CLASS={class}"), format!("PCI_ID={id}"));
        let (subsys_line, slot_line) = (
            format!("PCI_SUBSYS_ID={id}"),
            format!("PCI_SLOT_NAME={bdf}"),
        );
        uevent.extend([&*class_line, &*id_line, &*subsys_line, &*slot_line]);
        self.device(devpath, "bus/pci", &uevent);
        self.link(&format!("bus/pci/devices/{bdf}"), devpath);
    }

    /// A class device at `devpath`, listed in `class/<class>`.
    pub fn class_device(&self, class: &str, devpath: &str, uevent: &[&str]) {
        let name = devpath.rsplit('/').next().unwrap();
        self.device(devpath, &format!("class/{class}"), uevent);
        self.link(&format!("class/{class}/{name}"), devpath);
    }

    /// The VFIO group `group` as vfio creates it: `/devices/virtual/vfio/<group>`, listed in
    /// `class/vfio`, with the `uevent` fields of q35-vfio-bind's.
    pub fn vfio_group(&self, group: u32) {
        let devname = format!("DEVNAME=vfio/{group}");
        let devpath = format!("/devices/virtual/vfio/{group}");
        self.class_device("vfio", &devpath, &["MAJOR=244", "MINOR=0", &devname]);
    }

    /// A SCSI host whose device directory is `host_dir` (`.../virtio0/host0`): its class
    /// device `scsi_host/host0` with an empty `scan` attribute, listed in `class/scsi_host`.
    pub fn scsi_host(&self, host_dir: &str) {
        let name = host_dir.rsplit('/').next().unwrap();
        let dev = format!("{host_dir}/scsi_host/{name}");
        self.class_device("scsi_host", &dev, &[]);
        self.attr(&dev, "scan", "");
    }

    /// Removes the device directory at `devpath`, leaving the links to it dangling.
    pub fn unplug(&self, devpath: &str) {
        fs::remove_dir_all(self.root().join(devpath.trim_start_matches('/'))).unwrap();
    }
}

/// The virtio-blk disk at 02/00 in [`q35`].
pub const VDA: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda";
/// The partitioned virtio-blk disk at 03/00/01 in [`q35`].
pub const VDB: &str =
    "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:01.0/virtio1/block/vdb";
/// The virtio-net interface at 04/00 in [`q35`].
pub const ETH0: &str = "/devices/pci0000:00/0000:00:04.0/0000:05:00.0/virtio3/net/eth0";
/// The NVMe PCI function at 06/00 in [`q35`].
pub const NVME_FN: &str = "/devices/pci0000:00/0000:00:06.0/0000:07:00.0";
/// The NVMe subsystem of [`NVME_FN`]'s controller in [`q35`].
pub const SUBSYS: &str = "/devices/virtual/nvme-subsystem/nvme-subsys0";

/// The q35 topology of `fixtures/real-hotplug/README.md` (coldplug scenario plus the
/// net interface): virtio-blk at 02/00, a partitioned virtio-blk at 03/00/01, virtio-net
/// at 04/00, NVMe with native multipath at 06/00; plus a loop device and `lo`.
pub fn q35() -> FakeSysfs {
    let t = FakeSysfs::new();
    q35_functions(&t);
    q35_disks_and_net(&t);
    q35_nvme(&t);
    // Not below PCI: not returned.
    t.class_device(
        "block",
        "/devices/virtual/block/loop0",
        &["MAJOR=7", "MINOR=0", "DEVNAME=loop0", "DEVTYPE=disk"],
    );
    t.class_device(
        "net",
        "/devices/virtual/net/lo",
        &["INTERFACE=lo", "IFINDEX=1"],
    );
    t
}

/// The PCI functions of [`q35`]: host bridge, root ports, a bridge, the devices.
fn q35_functions(t: &FakeSysfs) {
    let rp = "1B36:000C"; // pcie-root-port
    t.pci(
        "/devices/pci0000:00/0000:00:00.0",
        "8086:29C0",
        "60000",
        None,
    );
    for slot in ["02", "03", "04", "06"] {
        let dp = format!("/devices/pci0000:00/0000:00:{slot}.0");
        t.pci(&dp, rp, "60400", Some("pcieport"));
    }
    t.pci(
        "/devices/pci0000:00/0000:00:03.0/0000:02:00.0",
        "1B36:000E",
        "60400",
        None,
    );
    t.pci(
        "/devices/pci0000:00/0000:00:02.0/0000:01:00.0",
        "1AF4:1042",
        "10000",
        Some("virtio-pci"),
    );
    t.pci(
        "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:01.0",
        "1AF4:1001",
        "10000",
        Some("virtio-pci"),
    );
    t.pci(
        "/devices/pci0000:00/0000:00:04.0/0000:05:00.0",
        "1AF4:1041",
        "20000",
        Some("virtio-pci"),
    );
    t.pci(NVME_FN, "1B36:0010", "10802", Some("nvme"));
}

/// The virtio disks (one partitioned) and the interface of [`q35`].
fn q35_disks_and_net(t: &FakeSysfs) {
    // vda: a kernel whose uevent file has no DISKSEQ; the attribute has it.
    t.class_device(
        "block",
        VDA,
        &["MAJOR=254", "MINOR=0", "DEVNAME=vda", "DEVTYPE=disk"],
    );
    t.attr(VDA, "diskseq", "1\n");
    t.attr(VDA, "hidden", "0\n");
    t.class_device(
        "block",
        VDB,
        &[
            "MAJOR=254",
            "MINOR=16",
            "DEVNAME=vdb",
            "DEVTYPE=disk",
            "DISKSEQ=2",
        ],
    );
    t.attr(VDB, "diskseq", "2\n");
    for n in ["1", "2"] {
        let (minor, devname, partn) = (
            format!("MINOR=1{n}"),
            format!("DEVNAME=vdb{n}"),
            format!("PARTN={n}"),
        );
        // Partitions have no `diskseq` attribute; their events carry the disk's.
        t.class_device(
            "block",
            &format!("{VDB}/vdb{n}"),
            &["MAJOR=254", &minor, &devname, "DEVTYPE=partition", &partn],
        );
    }
    t.class_device("net", ETH0, &["INTERFACE=eth0", "IFINDEX=2"]);
}

/// The NVMe controller of [`q35`], its hidden path disk, its subsystem and multipath head.
fn q35_nvme(t: &FakeSysfs) {
    let ctrl = format!("{NVME_FN}/nvme/nvme0");
    t.class_device("nvme", &ctrl, &["MAJOR=241", "MINOR=0", "DEVNAME=nvme0"]);
    // The hidden per-path disk: under the controller, listed in class/block, no uevent.
    let hidden = format!("{ctrl}/nvme0c0n1");
    t.class_device(
        "block",
        &hidden,
        &["MAJOR=0", "MINOR=0", "DEVNAME=nvme0c0n1", "DEVTYPE=disk"],
    );
    t.attr(&hidden, "hidden", "1\n");
    t.attr(&hidden, "nsid", "1\n");
    t.device(SUBSYS, "class/nvme-subsystem", &[]);
    t.link("class/nvme-subsystem/nvme-subsys0", SUBSYS);
    t.link(&format!("{SUBSYS}/nvme0"), &ctrl);
    let head = format!("{SUBSYS}/nvme0n1");
    t.class_device(
        "block",
        &head,
        &[
            "MAJOR=259",
            "MINOR=1",
            "DEVNAME=nvme0n1",
            "DEVTYPE=disk",
            "DISKSEQ=6",
        ],
    );
    t.attr(&head, "hidden", "0\n");
    // No uevent carries the namespace id; only this attribute does.
    t.attr(&head, "nsid", "1\n");
}
