//! The fuzz targets' short deterministic equivalents: the same oracles as `fuzz/` (shared in
//! `tests/common/`), fed by proptest with a fixed seed, and every input a fuzzer ever crashed
//! on (`fuzz/regressions/<target>/`), replayed.

mod common;

use std::path::PathBuf;
use std::sync::LazyLock;

use common::{FIXTURES, Fixture, datagram_oracle, path_oracle, registry_ops};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// The relevant datagrams of the real recordings, the registry interpreter's shapes.
static TEMPLATES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let recordings: Vec<_> = FIXTURES
        .iter()
        .map(|n| Fixture::load(n).recording)
        .collect();
    registry_ops::templates(&recordings)
});

/// Every datagram of every real recording.
static DATAGRAMS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    FIXTURES
        .iter()
        .flat_map(|n| Fixture::load(n).recording.records)
        .map(|r| r.datagram)
        .collect()
});

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0070_6369_706c_7567),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The files under `fuzz/regressions/<target>/`, each an input that once failed.
fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".gitkeep"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_real_datagram_passes_the_datagram_oracle() {
    for d in DATAGRAMS.iter() {
        datagram_oracle::check(d);
    }
}

#[test]
fn the_real_recordings_in_order_pass_the_registry_oracle() {
    // The seed the fuzzer starts from: every shape applied in order, each twice.
    let mut ops = Vec::new();
    for i in 0..TEMPLATES.len() as u16 {
        ops.extend([0, i as u8, (i >> 8) as u8, 6]);
    }
    for chunk in ops.chunks(4 * registry_ops::MAX_OPS / 2) {
        registry_ops::run(&TEMPLATES, chunk);
    }
}

#[test]
fn fuzz_regressions_stay_fixed() {
    for (path, bytes) in regressions("datagram") {
        eprintln!("{}", path.display());
        datagram_oracle::check(&bytes);
    }
    for (path, bytes) in regressions("pci_path") {
        eprintln!("{}", path.display());
        path_oracle::check(&bytes);
    }
    for (path, bytes) in regressions("registry") {
        eprintln!("{}", path.display());
        registry_ops::run(&TEMPLATES, &bytes);
    }
}

/// A real datagram with a few bytes overwritten, cut or extended.
fn mutated_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(which, edits, cut, tail)| {
            let mut d = which.get(&DATAGRAMS).clone();
            for (at, b) in edits {
                let i = at.index(d.len());
                d[i] = b;
            }
            d.truncate(cut.index(d.len() + 1));
            d.extend(tail);
            d
        })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn any_datagram_passes_the_datagram_oracle(d in prop::collection::vec(any::<u8>(), 0..300)) {
        datagram_oracle::check(&d);
    }

    #[test]
    fn mutated_real_datagrams_pass_the_datagram_oracle(d in mutated_datagram()) {
        datagram_oracle::check(&d);
    }

    #[test]
    fn any_string_passes_the_path_oracle(s in "(pci[0-9a-fA-F:]{0,8}/)?([0-9a-fA-F]{1,3}(\\.[0-9x]{1,2})?/){0,17}[0-9a-fA-F]{0,3}") {
        path_oracle::check(s.as_bytes());
    }

    #[test]
    fn any_devpath_passes_the_path_oracle(s in "(/(devices|pci0000:0[0-9]|0000:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-9]|virtio[0-9]|block|vda|\\.\\.|)){0,20}") {
        path_oracle::check(s.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn operation_strings_pass_the_registry_oracle(ops in prop::collection::vec(any::<u8>(), 0..1200)) {
        registry_ops::run(&TEMPLATES, &ops);
    }
}

/// Replays one input, to read a crash: `PCIPLUG_FUZZ_REPLAY=registry:fuzz/artifacts/registry/crash-...
/// PCIPLUG_OPS_TRACE=1 cargo test --test fuzz_equivalents replay_one_input -- --ignored --nocapture`.
#[test]
#[ignore = "a tool: replays the input named by PCIPLUG_FUZZ_REPLAY"]
fn replay_one_input() {
    let spec = std::env::var("PCIPLUG_FUZZ_REPLAY").expect("PCIPLUG_FUZZ_REPLAY=<target>:<file>");
    let (target, file) = spec.split_once(':').expect("<target>:<file>");
    let bytes = std::fs::read(file).unwrap();
    match target {
        "datagram" => datagram_oracle::check(&bytes),
        "pci_path" => path_oracle::check(&bytes),
        "registry" => registry_ops::run(&TEMPLATES, &bytes),
        other => panic!("no target {other}"),
    }
}

/// Gap 1 of the three the `registry` fuzz target found (`common::registry_ops::FOUND`),
/// input `fuzz/regressions/registry/net-rename-onto-held-name`.
#[test]
fn a_rename_onto_a_name_already_held_reports_the_old_name_gone() {
    use pciplug::Outcome;
    let (add, mv) = common::eth0_add_and_rename_to("ens4");
    let mut reg = pciplug::Registry::new();
    reg.apply_datagram(0, &add);
    reg.apply_datagram(0, &mv); // eth0 is now ens4
    reg.apply_datagram(0, &add); // a late (or replayed) add of eth0: both are held
    let Outcome::Applied(changes) = reg.apply_datagram(0, &mv) else {
        panic!("the rename was not applied");
    };
    let names = common::net_names(&reg, "04/00");
    assert_eq!(names, ["ens4"]);
    // A watcher, or a waiter woken by the changes, must learn that eth0 went.
    assert!(
        changes.iter().any(|c| matches!(c,
            pciplug::Change::NetRenamed { old, .. } if &**old == "eth0")
            || matches!(c, pciplug::Change::NetRemoved { net, .. } if &*net.name == "eth0")),
        "eth0 vanished silently: {changes:?}"
    );
}

/// Gap 2 of the three the `registry` fuzz target found (`common::registry_ops::FOUND`),
/// input `fuzz/regressions/registry/block-and-net-names-are-separate-namespaces`.
#[test]
fn an_interface_renamed_like_a_disk_does_not_take_the_disk_away() {
    let f = Fixture::load("q35-acpi-hotplug");
    let mut reg = common::replay(&f.records_in(..=4));
    assert_eq!(reg.disk(&common::p("02/00")).unwrap().devnode(), "/dev/vda");
    // `ip link set eth0 name vda`: legal, and the disk /dev/vda is still there.
    let (_, mv) = common::eth0_add_and_rename_to("vda");
    reg.apply_datagram(0, &mv);
    assert_eq!(&*reg.net(&common::p("04/00")).unwrap().name, "vda");
    assert_eq!(
        reg.disk(&common::p("02/00"))
            .map(|d| d.devnode())
            .as_deref(),
        Some("/dev/vda"),
        "the disk was taken away by an interface's rename"
    );
}

/// Gap 3 of the three the `registry` fuzz target found (`common::registry_ops::FOUND`), input
/// `fuzz/regressions/registry/two-nvme-controllers-in-one-function`, written out: a PCI
/// function with two NVMe controllers (no real device has that, but nothing forbids it) both
/// in one subsystem. Relinking one of them to another subsystem must not unlink the function
/// from the first while the other controller still reaches it, nor report its head gone.
#[test]
fn a_function_stays_linked_to_a_subsystem_while_one_of_its_two_controllers_reaches_it() {
    use common::registry_ops::{check, state};
    use pciplug::Change;
    let f = Fixture::load("q35-acpi-hotplug");
    // After step 7: the NVMe function at 06/00 with controller nvme0, and the multipath head
    // nvme0n1 under nvme-subsys0, which no uevent ties to a controller.
    let mut reg = common::replay(&f.records_in(..=7));
    let at = common::p("06/00");
    assert!(reg.disk(&at).is_none());
    // A second controller, nvme1, in the same function: the real add of nvme0, renamed.
    let nvme0 = f
        .with_field("SUBSYSTEM", "nvme")
        .find(|r| common::field(&r.datagram, "ACTION").as_deref() == Some("add"))
        .unwrap();
    let nvme1 = String::from_utf8(nvme0.datagram.clone())
        .unwrap()
        .replace("/nvme/nvme0", "/nvme/nvme1")
        .replace("DEVNAME=nvme0", "DEVNAME=nvme1")
        .replace("MINOR=0", "MINOR=1");
    reg.apply_datagram(0, nvme1.as_bytes());
    let controllers: Vec<String> = reg
        .get(&at)
        .unwrap()
        .nvme
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(controllers, ["nvme0", "nvme1"]);
    let head = |reg: &pciplug::Registry| reg.disk(&at).map(|d| d.name.to_string());
    let head_removed = |changes: &[Change]| {
        changes.iter().any(
            |c| matches!(c, Change::BlockRemoved { path: Some(p), block } if *p == at && &*block.name == "nvme0n1"),
        )
    };

    // Both controllers join nvme-subsys0, as sysfs would show: the head is at 06/00.
    let changes = reg.link_nvme_controller(&at, "nvme0", "nvme-subsys0");
    assert!(
        changes.iter().any(|c| matches!(c, Change::BlockAdded { path: Some(p), block } if *p == at && &*block.name == "nvme0n1")),
        "{changes:?}"
    );
    assert!(
        reg.link_nvme_controller(&at, "nvme1", "nvme-subsys0")
            .is_empty()
    );
    assert_eq!(head(&reg).as_deref(), Some("nvme0n1"));
    check(&reg);

    // nvme1 moves to nvme-subsys1: nvme0 still reaches nvme-subsys0, so its head stays.
    let before = state(&reg);
    let changes = reg.link_nvme_controller(&at, "nvme1", "nvme-subsys1");
    assert!(
        !head_removed(&changes),
        "the head reported gone: {changes:?}"
    );
    assert_eq!(head(&reg).as_deref(), Some("nvme0n1"));
    assert_eq!(state(&reg), before);
    assert_eq!(reg.unresolved_nvme_heads().count(), 0);
    check(&reg);

    // nvme0 moves too: now nothing of 06/00 reaches nvme-subsys0, and the head goes.
    let changes = reg.link_nvme_controller(&at, "nvme0", "nvme-subsys1");
    assert!(head_removed(&changes), "{changes:?}");
    assert_eq!(head(&reg), None);
    assert!(
        reg.unresolved_nvme_heads()
            .any(|(_, h)| &*h.name == "nvme0n1")
    );
    check(&reg);
}
