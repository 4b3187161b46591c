//! Synthetic devices built from real datagram shapes.
//!
//! The datagrams of `fixtures/real-hotplug/q35-acpi-hotplug.uevents` for one virtio-blk
//! hot-plug (step 1: ACPI `wakeup` add, PCI add, `virtio0` add, `bdi` add, block add, two
//! binds) and its unplug (step 8: `bdi` and block remove, two unbinds, `virtio0` remove,
//! `wakeup` remove, PCI remove), and of the virtio-net hot-plug of step 4, are taken byte for
//! byte and rewritten for another function: its devpath and BDF, `virtioN`, the disk name,
//! minor and `DISKSEQ`, the `wakeupN` object. Fields, their order and the mix of events the
//! registry ignores stay the kernel's. `SEQNUM` is left out: the kernel appends it on
//! injection, and [`with_seqnum`] appends one for in-process use.

use std::collections::BTreeMap;

use pciplug::Recording;

/// One synthetic PCI function.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its devpath (`/devices/pci0000:00/0000:00:02.0/0000:01:03.0`).
    pub devpath: String,
    /// Its PCI path (`02/03`, `pci0001:00/02/03`).
    pub path: String,
    /// `DDDD:BB:SS.F`.
    pub bdf: String,
    /// What it is.
    pub kind: Kind,
    /// A unique number: `virtioN`, the disk's minor (`16 * n`), the `wakeupN` object.
    pub n: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bridge (`pcie-root-port` IDs, driver `pcieport`).
    Bridge,
    /// A virtio-blk function with one disk.
    Disk,
    /// A virtio-net function with one interface.
    Net,
}

impl Device {
    /// The disk's kernel name (`vda`, `vdz`, `vdaa`, ...), as `sd_format_disk_name` makes it.
    pub fn disk_name(&self) -> String {
        let mut index = self.n as i64;
        let mut name = Vec::new();
        loop {
            name.push(b'a' + (index % 26) as u8);
            index = index / 26 - 1;
            if index < 0 {
                break;
            }
        }
        name.reverse();
        format!("vd{}", String::from_utf8(name).unwrap())
    }

    pub fn interface(&self) -> String {
        format!("eth{}", self.n)
    }

    pub fn virtio(&self) -> String {
        format!("{}/virtio{}", self.devpath, self.n)
    }

    pub fn disk_devpath(&self) -> String {
        format!("{}/block/{}", self.virtio(), self.disk_name())
    }

    pub fn net_devpath(&self) -> String {
        format!("{}/net/{}", self.virtio(), self.interface())
    }
}

/// The real datagrams the synthetic ones are made from, without `SEQNUM`.
pub struct Shapes {
    blk_add: Vec<String>,
    blk_remove: Vec<String>,
    net_add: Vec<String>,
}

/// The function, virtio device and disk of the real recording's step 1 (`02/00`, `vda`).
const REAL_FN: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0";
const REAL_NET_FN: &str = "/devices/pci0000:00/0000:00:04.0/0000:05:00.0";

impl Shapes {
    pub fn load() -> Shapes {
        let rec = Recording::read(super::fixture_path("q35-acpi-hotplug")).unwrap();
        let step = |n: u32| -> Vec<String> {
            rec.records
                .iter()
                .filter(|r| r.step == Some(n))
                .map(|r| {
                    let fields: Vec<&[u8]> = r
                        .datagram
                        .split(|&b| b == 0)
                        .filter(|f| !f.is_empty() && !f.starts_with(b"SEQNUM="))
                        .collect();
                    let mut text = String::new();
                    for f in fields {
                        text.push_str(std::str::from_utf8(f).unwrap());
                        text.push('\0');
                    }
                    text
                })
                .collect()
        };
        let (blk_add, blk_remove, net_add) = (step(1), step(8), step(4));
        assert_eq!(
            (blk_add.len(), blk_remove.len()),
            (7, 7),
            "the recording changed"
        );
        assert_eq!(net_add.len(), 8, "the recording changed");
        Shapes {
            blk_add,
            blk_remove,
            net_add,
        }
    }

    fn rewrite(&self, template: &str, real_fn: &str, d: &Device, diskseq: u64) -> Vec<u8> {
        let real_bdf = real_fn.rsplit('/').next().unwrap();
        let mut s = template.replace(real_fn, &d.devpath);
        s = s.replace(
            &format!("PCI_SLOT_NAME={real_bdf}"),
            &format!("PCI_SLOT_NAME={}", d.bdf),
        );
        // virtio0 in the block shapes, virtio3 in the net one.
        let real_virtio = if real_fn == REAL_NET_FN {
            "/virtio3"
        } else {
            "/virtio0"
        };
        s = s.replace(real_virtio, &format!("/virtio{}", d.n));
        s = s.replace("/block/vda", &format!("/block/{}", d.disk_name()));
        s = s.replace("DEVNAME=vda", &format!("DEVNAME={}", d.disk_name()));
        s = s.replace("bdi/254:0", &format!("bdi/254:{}", 16 * d.n));
        s = s.replace("MINOR=0\0", &format!("MINOR={}\0", 16 * d.n));
        s = s.replace("DISKSEQ=1\0", &format!("DISKSEQ={diskseq}\0"));
        s = s.replace("/net/eth0", &format!("/net/{}", d.interface()));
        s = s.replace("INTERFACE=eth0", &format!("INTERFACE={}", d.interface()));
        s = s.replace("IFINDEX=2\0", &format!("IFINDEX={}\0", d.n + 2));
        let real_wakeup = if real_fn == REAL_NET_FN {
            "wakeup18"
        } else {
            "wakeup15"
        };
        s = s.replace(real_wakeup, &format!("wakeup{}", 100 + d.n));
        if d.kind == Kind::Bridge {
            // A bridge's own events: the PCI add and bind, with pcie-root-port IDs.
            s = s.replace("PCI_CLASS=10000", "PCI_CLASS=60400");
            s = s.replace("PCI_ID=1AF4:1042", "PCI_ID=1B36:000C");
            s = s.replace("PCI_SUBSYS_ID=1AF4:1100", "PCI_SUBSYS_ID=1B36:0000");
            s = s.replace("DRIVER=virtio-pci", "DRIVER=pcieport");
        }
        s.into_bytes()
    }

    /// The datagrams the kernel sends when `d` is hot-plugged (a bridge: its PCI add and bind
    /// only), without `SEQNUM`. `diskseq` is the new disk's.
    pub fn add(&self, d: &Device, diskseq: u64) -> Vec<Vec<u8>> {
        match d.kind {
            Kind::Disk => self
                .blk_add
                .iter()
                .map(|t| self.rewrite(t, REAL_FN, d, diskseq))
                .collect(),
            Kind::Net => self
                .net_add
                .iter()
                .map(|t| self.rewrite(t, REAL_NET_FN, d, diskseq))
                .collect(),
            Kind::Bridge => [1, 6]
                .iter()
                .map(|&i| self.rewrite(&self.blk_add[i], REAL_FN, d, diskseq))
                .collect(),
        }
    }

    /// The datagrams the kernel sends when disk device `d` (whose disk has `diskseq`) is
    /// unplugged, without `SEQNUM`.
    pub fn remove(&self, d: &Device, diskseq: u64) -> Vec<Vec<u8>> {
        assert_eq!(d.kind, Kind::Disk, "only disk functions are unplugged here");
        self.blk_remove
            .iter()
            .map(|t| self.rewrite(t, REAL_FN, d, diskseq))
            .collect()
    }
}

/// Whether `datagram` is a block device's `add` (the one a disk's waiter waits for).
pub fn is_block_add(datagram: &[u8]) -> bool {
    datagram.starts_with(b"add@") && datagram.windows(16).any(|w| w == b"SUBSYSTEM=block\0")
}

/// Whether a socket with pciplug's subsystem filter receives `datagram`, one of these shapes
/// injected without `SEQNUM` (the kernel appends it, and the filter's length check counts it).
pub fn kept(datagram: &[u8]) -> bool {
    pciplug::netlink::filter::passes(&with_seqnum(datagram, 1))
}

/// `cycles` hot-plugs and unplugs of the virtio-blk functions of `tree(64, 4, 3)` in turn,
/// 14 datagrams each, without `SEQNUM`: the waiters bench's stream.
pub fn hotplug_cycles(shapes: &Shapes, cycles: usize) -> Vec<Vec<u8>> {
    let devices: Vec<_> = tree(64, 4, 3)
        .into_iter()
        .filter(|d| d.kind == Kind::Disk)
        .collect();
    let mut out = Vec::new();
    for c in 0..cycles {
        let d = &devices[c % devices.len()];
        let seq = c as u64 + 1;
        out.extend(shapes.add(d, seq));
        out.extend(shapes.remove(d, seq));
    }
    out
}

/// A datagram with `SEQNUM=<seqnum>` appended, as the kernel sends it.
pub fn with_seqnum(datagram: &[u8], seqnum: u64) -> Vec<u8> {
    let mut d = datagram.to_vec();
    d.extend_from_slice(format!("SEQNUM={seqnum}\0").as_bytes());
    d
}

/// `count` PCI functions in bridge trees: every bridge has `fanout` children (slots 0, 1,
/// ...), down to `depth` hops; the leaves are endpoints, every fourth a NIC and the rest
/// virtio-blk disks. Trees hang from root slots 1, 2, ... of root complexes `pci0000:00`,
/// `pci0001:00`, ... (a domain has only 256 bus numbers for its bridges). Listed depth first,
/// so a bridge comes before what is behind it.
pub fn tree(count: usize, fanout: usize, depth: usize) -> Vec<Device> {
    tree_in(0, count, fanout, depth)
}

/// [`tree`], starting at PCI domain `first_domain`.
pub fn tree_in(first_domain: u16, count: usize, fanout: usize, depth: usize) -> Vec<Device> {
    let mut out = Vec::with_capacity(count);
    let mut domain = first_domain;
    let mut next_bus = 1u16;
    let mut root_slot = 1u8;
    let mut n = 0usize;
    let mut leaves = 0usize;
    // Bridges per tree: 1 + f + ... + f^(depth-2).
    let bridges_per_tree: usize = (0..depth - 1).map(|i| fanout.pow(i as u32)).sum();
    while out.len() < count {
        if usize::from(next_bus) + bridges_per_tree > 255 || root_slot > 0x1f {
            domain += 1;
            next_bus = 1;
            root_slot = 1;
        }
        let root = format!("/devices/pci{domain:04x}:00");
        let prefix = if domain == 0 {
            String::new()
        } else {
            format!("pci{domain:04x}:00/")
        };
        let mut stack = vec![(
            format!("{root}/{domain:04x}:00:{root_slot:02x}.0"),
            format!("{prefix}{root_slot:02x}"),
            format!("{domain:04x}:00:{root_slot:02x}.0"),
            1usize,
        )];
        root_slot += 1;
        while let Some((devpath, path, bdf, level)) = stack.pop() {
            if out.len() == count {
                break;
            }
            let kind = if level < depth {
                Kind::Bridge
            } else {
                leaves += 1;
                if leaves % 4 == 0 {
                    Kind::Net
                } else {
                    Kind::Disk
                }
            };
            if kind == Kind::Bridge {
                let bus = next_bus;
                next_bus += 1;
                // Pushed in reverse so that slot 0 comes out first.
                for slot in (0..fanout).rev() {
                    stack.push((
                        format!("{devpath}/{domain:04x}:{bus:02x}:{slot:02x}.0"),
                        format!("{path}/{slot:02x}"),
                        format!("{domain:04x}:{bus:02x}:{slot:02x}.0"),
                        level + 1,
                    ));
                }
            }
            out.push(Device {
                devpath,
                path,
                bdf,
                kind,
                n,
            });
            n += 1;
        }
    }
    out
}

/// What a registry holds after every device of `devices` was plugged in once: for the
/// report, counts of functions, disks and interfaces.
pub fn census(devices: &[Device]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for d in devices {
        *m.entry(match d.kind {
            Kind::Bridge => "bridges",
            Kind::Disk => "virtio-blk functions (one disk each)",
            Kind::Net => "virtio-net functions (one interface each)",
        })
        .or_insert(0) += 1;
    }
    m
}
