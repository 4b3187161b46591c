//! Kernel naming rules for devpaths and device names, each written once (pure, no I/O).
//!
//! A devpath is a sysfs path without `/sys` (`/devices/pci0000:00/0000:00:02.0/virtio0/block/vda`).
//! What its components mean (where NVMe multipath heads live, how a SCSI address or a
//! `virtioN` node is spelled, which name is a hidden per-path NVMe disk) is decided here, and
//! the parser, the registry, the sysfs scan and the monitor ask these functions.

/// Where every virtual device lives; of these, only NVMe multipath heads and VFIO groups can
/// concern a PCI registry.
pub(crate) const VIRTUAL_DEVICES: &str = "/devices/virtual/";

/// Where NVMe multipath namespace heads live: `<this><subsystem>/<head>`. The only block
/// devices kept that are not below a PCI function.
pub(crate) const NVME_SUBSYSTEMS: &str = "/devices/virtual/nvme-subsystem/";

/// Where VFIO groups live: `<this><group>`, subsystem `vfio`, one per IOMMU group that has a
/// function bound to `vfio-pci`; its node is `/dev/vfio/<group>` (`DEVNAME=vfio/<group>`).
/// vfio creates the group's device with no parent, so every kernel puts it here (6.1 in
/// `fixtures/real-hotplug-2/q35-vfio-bind.uevents`); the `noiommu-<N>` groups of an unsafe
/// no-IOMMU setup are not IOMMU groups and are not kept.
pub(crate) const VFIO_GROUPS: &str = "/devices/virtual/vfio/";

/// The subsystem of a VFIO group's uevent.
pub(crate) const VFIO_SUBSYSTEM: &str = "vfio";

/// The IOMMU group of a VFIO group's devpath: `/devices/virtual/vfio/4` gives 4; anything
/// else (below it, `noiommu-4`, a number too large) gives `None`.
pub(crate) fn vfio_group(devpath: &[u8]) -> Option<u32> {
    kernel_decimal(devpath.strip_prefix(VFIO_GROUPS.as_bytes())?)
}

/// True if `devname` is the `DEVNAME` of VFIO group `group`'s node (below `/dev`):
/// `vfio/<group>`.
pub(crate) fn is_vfio_group_devname(devname: &str, group: u32) -> bool {
    devname
        .strip_prefix("vfio/")
        .and_then(|n| kernel_decimal(n.as_bytes()))
        == Some(group)
}

/// A number as the kernel's `%d` writes it: digits only, no leading zero (`u32::from_str`
/// also takes `+4` and `04`).
fn kernel_decimal(s: &[u8]) -> Option<u32> {
    let canonical = s.first().is_some_and(u8::is_ascii_digit)
        && (s.len() == 1 || s[0] != b'0')
        && s.iter().all(u8::is_ascii_digit);
    canonical
        .then(|| std::str::from_utf8(s).ok()?.parse().ok())
        .flatten()
}

/// The index of the first `needle` in `b` at or after `from`, or `b.len()` if there is none.
///
/// Eight bytes at a time with the classic zero-byte test. Fields and devpath components are
/// 5 to 100 bytes long, where `memchr`'s vectorised search (or `str::split`'s) spends more on
/// setting up than on searching: this halved the cost of reading a datagram.
pub(crate) fn find_byte(b: &[u8], from: usize, needle: u8) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let spread = LO * u64::from(needle);
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]) ^ spread;
        // Exact for the lowest matching byte, which is the one wanted.
        let hit = w.wrapping_sub(LO) & !w & HI;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b.get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == needle))
        .map_or(b.len(), |p| i + p)
}

/// The non-empty components of `path`, from slash to slash (as `split('/')` without the
/// empty ones, at a third of its cost on these short strings).
pub(crate) fn components(path: &str) -> impl Iterator<Item = &str> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at <= path.len() {
            let end = find_byte(path.as_bytes(), at, b'/');
            let c = &path[at..end];
            at = end + 1;
            if !c.is_empty() {
                return Some(c);
            }
        }
        None
    })
}

/// The last component of a devpath, the kernel's name for the object (`vda`,
/// `0000:01:00.0`, `eth0`); the whole string if it has no slash.
pub(crate) fn last_component(devpath: &str) -> &str {
    // A plain scan back: `rsplit`'s searcher costs more to set up than these few bytes.
    match devpath.bytes().rposition(|b| b == b'/') {
        Some(slash) => &devpath[slash + 1..],
        None => devpath,
    }
}

/// The component before the last one: a partition's disk (`.../block/vdb/vdb1` gives `vdb`).
pub(crate) fn parent_component(devpath: &str) -> Option<&str> {
    let slash = devpath.bytes().rposition(|b| b == b'/')?;
    Some(last_component(&devpath[..slash]))
}

/// An absolute devpath whose components are neither empty (no `//`, no trailing `/`) nor
/// `.` or `..`: what the kernel sends, and what is safe to join below a sysfs root.
pub(crate) fn is_canonical(p: &[u8]) -> bool {
    if p.len() < 2 || p[0] != b'/' {
        return false;
    }
    let mut slash = 0;
    loop {
        let next = find_byte(p, slash + 1, b'/');
        let c = &p[slash + 1..next];
        if c.is_empty() || c == b"." || c == b".." {
            return false;
        }
        if next == p.len() {
            return true;
        }
        slash = next;
    }
}

/// The cheap test on a devpath: can the object concern a PCI registry?
///
/// PCI functions and everything below them have a `pciDDDD:BB` root complex component
/// (`/devices/pci0000:00/...`, or `/devices/platform/*.pcie/pci0000:00/...` on arm64); NVMe
/// multipath namespace heads live under [`NVME_SUBSYSTEMS`], VFIO groups under
/// [`VFIO_GROUPS`].
pub(crate) fn may_concern_registry(devpath: &[u8]) -> bool {
    if devpath.starts_with(VIRTUAL_DEVICES.as_bytes()) {
        return devpath.starts_with(NVME_SUBSYSTEMS.as_bytes()) || vfio_group(devpath).is_some();
    }
    // A `/pci` anywhere; from slash to slash (building a substring searcher for every
    // datagram costs more than the search).
    if !devpath.starts_with(b"/devices/") {
        return false;
    }
    if devpath[b"/devices/".len()..].starts_with(b"pci") {
        return true; // nearly every PCI devpath: the walk's second component
    }
    let mut slash = 0;
    while slash < devpath.len() {
        if devpath[slash + 1..].starts_with(b"pci") {
            return true;
        }
        slash = find_byte(devpath, slash + 1, b'/');
    }
    false
}

/// True if `devpath` is at or below [`NVME_SUBSYSTEMS`].
pub(crate) fn is_nvme_subsystem_path(devpath: &str) -> bool {
    devpath.starts_with(NVME_SUBSYSTEMS)
}

/// `/devices/virtual/nvme-subsystem/nvme-subsysN/<something>` gives `nvme-subsysN`.
pub(crate) fn nvme_head_subsystem(devpath: &str) -> Option<&str> {
    let rest = devpath.strip_prefix(NVME_SUBSYSTEMS)?;
    let (sub, below) = rest.split_once('/')?;
    (!below.is_empty()).then_some(sub)
}

/// The number of leading ASCII digits of `s`.
fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// `nvme<N>`: an NVMe controller (its namespaces are `nvme<N>n<M>`).
pub(crate) fn is_nvme_controller_name(name: &str) -> bool {
    name.strip_prefix("nvme")
        .is_some_and(|n| !n.is_empty() && digits(n) == n.len())
}

/// `nvme<subsys>c<ctrl>n<ns>`: the hidden per-path disk behind a multipath head.
pub(crate) fn is_hidden_nvme_path(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nvme") else {
        return false;
    };
    let n = digits(rest);
    if n == 0 {
        return false;
    }
    let Some(rest) = rest[n..].strip_prefix('c') else {
        return false;
    };
    let n = digits(rest);
    n > 0 && rest[n..].starts_with('n')
}

/// Below a PCI function, `/nvme/<controller>` and nothing more: the controller's own
/// devpath, giving its name.
pub(crate) fn nvme_controller_node(below_function: &str) -> Option<&str> {
    below_function
        .strip_prefix("/nvme/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// What a block device hangs from below its PCI function, by priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Above<'a> {
    /// The NVMe controller after the first `nvme` node ([`nvme_controller_above`]).
    NvmeController(&'a str),
    /// Else the first SCSI address ([`scsi_address_above`]).
    ScsiAddress(&'a str),
    /// Else a leading `virtio<N>` node ([`starts_at_virtio_node`]).
    Virtio,
    /// None of them.
    Other,
}

/// What the path below a PCI function hangs from: the three questions below, in one walk
/// over its components instead of one each (callgrind: three walks cost a block event more
/// than placing it).
pub(crate) fn node_above(below_function: &str) -> Above<'_> {
    let (mut first, mut after_nvme, mut scsi) = (None, false, None);
    for c in components(below_function) {
        if after_nvme {
            return Above::NvmeController(c);
        }
        first = first.or(Some(c));
        after_nvme = c == "nvme";
        if scsi.is_none() && is_scsi_address(c) {
            scsi = Some(c);
        }
    }
    match (scsi, first) {
        (Some(addr), _) => Above::ScsiAddress(addr),
        (None, Some(c)) if is_virtio_node(c) => Above::Virtio,
        _ => Above::Other,
    }
}

/// Below a PCI function, the controller a namespace hangs from (`/nvme/nvme1/nvme1n1` gives
/// `nvme1`).
#[cfg(test)]
fn nvme_controller_above(below_function: &str) -> Option<&str> {
    let mut comps = components(below_function);
    comps.any(|c| c == "nvme").then(|| comps.next()).flatten()
}

/// `H:C:T:L`, four decimal numbers: a SCSI device's address component.
pub(crate) fn is_scsi_address(component: &str) -> bool {
    // Three colons first: every other component (`virtio0`, `block`, `vda`) fails there
    // without `split`'s searcher being set up.
    component.bytes().filter(|&b| b == b':').count() == 3
        && component.split(':').all(|n| n.parse::<u32>().is_ok())
}

/// Below a PCI function, the SCSI address a disk hangs from
/// (`/virtio4/host0/target0:0:0/0:0:0:0/block/sda` gives `0:0:0:0`).
#[cfg(test)]
fn scsi_address_above(below_function: &str) -> Option<&str> {
    components(below_function).find(|c| is_scsi_address(c))
}

/// `virtio<N>`: the virtio device node a virtio driver's children hang from.
pub(crate) fn is_virtio_node(component: &str) -> bool {
    component
        .strip_prefix("virtio")
        .is_some_and(|n| !n.is_empty() && digits(n) == n.len())
}

/// Below a PCI function, a path that starts at a `virtio<N>` node.
#[cfg(test)]
fn starts_at_virtio_node(below_function: &str) -> bool {
    components(below_function)
        .next()
        .is_some_and(is_virtio_node)
}

/// `.../net/<name>` with nothing after the name: a network interface itself, not one of its
/// `queues/rx-0` (another subsystem).
pub(crate) fn is_net_interface(devpath: &str) -> bool {
    parent_component(devpath) == Some("net")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_skip_empty_ones() {
        let got: Vec<&str> = components("//a/bb//c/").collect();
        assert_eq!(got, ["a", "bb", "c"]);
        assert_eq!(components("").count(), 0);
        assert_eq!(components("/").count(), 0);
    }

    #[test]
    fn last_and_parent_components() {
        assert_eq!(last_component("/devices/x/block/vdb/vdb1"), "vdb1");
        assert_eq!(last_component("vda"), "vda");
        assert_eq!(parent_component("/devices/x/block/vdb/vdb1"), Some("vdb"));
        assert_eq!(parent_component("vda"), None);
    }

    #[test]
    fn canonical_devpaths() {
        for ok in ["/devices", "/devices/pci0000:00/0000:00:02.0"] {
            assert!(is_canonical(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "/",
            "devices",
            "/devices/",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a/..",
        ] {
            assert!(!is_canonical(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn what_may_concern_the_registry() {
        for yes in [
            "/devices/pci0000:00/0000:00:02.0",
            "/devices/platform/4010000000.pcie/pci0000:00/0000:00:01.0",
            "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "/devices/virtual/vfio/4",
        ] {
            assert!(may_concern_registry(yes.as_bytes()), "{yes}");
        }
        for no in [
            "/module/virtio",
            "/devices/virtual/misc/vfio",
            "/devices/virtual/vfio/noiommu-0",
            "/devices/virtual/vfio/4/power",
            "/class/vfio",
            "/devices/virtual/bdi/254:0",
            "/devices/virtual/pci-fake/x",
            "/devices/platform/serial8250",
            "/bus/pci",
        ] {
            assert!(!may_concern_registry(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn vfio_groups() {
        assert_eq!(vfio_group(b"/devices/virtual/vfio/4"), Some(4));
        assert_eq!(
            vfio_group(b"/devices/virtual/vfio/4294967295"),
            Some(u32::MAX)
        );
        for no in [
            "/devices/virtual/vfio/",
            "/devices/virtual/vfio/+4",
            "/devices/virtual/vfio/04",
            "/devices/virtual/vfio/4294967296",
            "/devices/virtual/vfio/noiommu-0",
            "/devices/virtual/vfio/4/power",
            "/devices/virtual/vfio",
            "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/vfio-dev/vfio0",
        ] {
            assert_eq!(vfio_group(no.as_bytes()), None, "{no}");
        }
        assert_eq!(vfio_group(b"/devices/virtual/vfio/0"), Some(0));
        assert!(is_vfio_group_devname("vfio/4", 4));
        for bad in [
            "vfio/5",
            "vfio/+4",
            "vfio/04",
            "vfio/4x",
            "4",
            "vfio/../4",
            "x/vfio/4",
        ] {
            assert!(!is_vfio_group_devname(bad, 4), "{bad}");
        }
    }

    #[test]
    fn nvme_names() {
        assert!(is_nvme_controller_name("nvme12"));
        assert!(!is_nvme_controller_name("nvme"));
        assert!(!is_nvme_controller_name("nvme0n1"));
        assert!(!is_nvme_controller_name("nvme-subsys0"));

        assert!(is_hidden_nvme_path("nvme0c0n1"));
        assert!(is_hidden_nvme_path("nvme12c3n45"));
        assert!(!is_hidden_nvme_path("nvme0n1"));
        assert!(!is_hidden_nvme_path("nvme0n1p1"));
        assert!(!is_hidden_nvme_path("nvmec0n1"));
        assert!(!is_hidden_nvme_path("nvme0c"));
    }

    #[test]
    fn nvme_devpaths() {
        let head = "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
        assert!(is_nvme_subsystem_path(head));
        assert_eq!(nvme_head_subsystem(head), Some("nvme-subsys0"));
        assert_eq!(
            nvme_head_subsystem("/devices/virtual/nvme-subsystem/nvme-subsys0/"),
            None
        );
        assert_eq!(
            nvme_head_subsystem("/devices/virtual/nvme-subsystem/nvme-subsys0"),
            None
        );
        assert!(!is_nvme_subsystem_path("/devices/pci0000:00/0000:00:02.0"));
        assert_eq!(nvme_controller_node("/nvme/nvme0"), Some("nvme0"));
        assert_eq!(nvme_controller_node("/nvme/nvme0/nvme0n1"), None);
        assert_eq!(nvme_controller_node("/nvme/"), None);
        assert_eq!(nvme_controller_above("/nvme/nvme1/nvme1n1"), Some("nvme1"));
        assert_eq!(nvme_controller_above("/virtio0/block/vda"), None);
        assert_eq!(nvme_controller_above("/nvme"), None);
    }

    #[test]
    fn transport_nodes() {
        assert!(is_scsi_address("0:0:0:0"));
        assert!(!is_scsi_address("target0:0:0"));
        assert!(!is_scsi_address("0:0:0"));
        assert_eq!(
            scsi_address_above("/virtio4/host0/target0:0:0/0:0:0:0/block/sda"),
            Some("0:0:0:0")
        );
        assert!(is_virtio_node("virtio12"));
        assert!(!is_virtio_node("virtio"));
        assert!(!is_virtio_node("virtio-ports"));
        assert!(starts_at_virtio_node("/virtio0/block/vda"));
        assert!(!starts_at_virtio_node("/ata1/block/sdz"));
    }

    #[test]
    fn net_interfaces_and_not_their_queues() {
        assert!(is_net_interface("/virtio3/net/eth0"));
        assert!(!is_net_interface("/virtio3/net/eth0/queues/rx-0"));
        assert!(!is_net_interface("/virtio3/block/vda"));
    }

    proptest::proptest! {
        #[test]
        fn one_walk_finds_what_the_three_questions_find(
            comps in proptest::collection::vec(proptest::sample::select(vec![
                "nvme", "nvme0", "virtio1", "virtio", "host0", "0:0:1:2", "1:2:3", "block", "", "sda",
            ]), 0..7)
        ) {
            let rest = format!("/{}", comps.join("/"));
            let three = match (nvme_controller_above(&rest), scsi_address_above(&rest)) {
                (Some(c), _) => Above::NvmeController(c),
                (None, Some(a)) => Above::ScsiAddress(a),
                _ if starts_at_virtio_node(&rest) => Above::Virtio,
                _ => Above::Other,
            };
            proptest::prop_assert_eq!(node_above(&rest), three, "{}", rest);
        }

        #[test]
        fn last_and_parent_components_are_rsplit_s(s in "[a/é]{0,12}") {
            proptest::prop_assert_eq!(last_component(&s), s.rsplit('/').next().unwrap_or(&s));
            let mut comps = s.rsplit('/');
            comps.next();
            proptest::prop_assert_eq!(parent_component(&s), comps.next());
        }

        #[test]
        fn find_byte_finds_what_a_plain_search_finds(
            bytes in proptest::collection::vec(proptest::sample::select(vec![0u8, b'/', b'a', 0x80, 0xff, 0x2f ^ 0x80]), 0..70),
            from in 0usize..72,
            needle in proptest::sample::select(vec![0u8, b'/', 0x80]),
        ) {
            let want = bytes
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == needle))
                .map_or(bytes.len(), |p| from + p);
            proptest::prop_assert_eq!(find_byte(&bytes, from, needle), want);
        }
    }
}
