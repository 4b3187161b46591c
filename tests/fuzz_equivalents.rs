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

/// The real add of eth0 at 04/00, and `move`s of it built as udev's rename makes the kernel
/// send them.
fn eth0_and_a_rename_to(new_name: &str) -> (Vec<u8>, Vec<u8>) {
    let f = Fixture::load("q35-acpi-hotplug");
    let add = f
        .recording
        .records
        .iter()
        .find(|r| common::field(&r.datagram, "INTERFACE").as_deref() == Some("eth0"))
        .unwrap()
        .datagram
        .clone();
    let text = String::from_utf8(add.clone()).unwrap();
    let old = common::field(&add, "DEVPATH").unwrap();
    let new = old.replace("/net/eth0", &format!("/net/{new_name}"));
    let mv = text
        .replace("add@", "move@")
        .replace("ACTION=add", "ACTION=move")
        .replace(
            &format!("DEVPATH={old}"),
            &format!("DEVPATH={new}\0DEVPATH_OLD={old}"),
        )
        .replace(&format!("add@{old}"), &format!("add@{new}"))
        .replace(&format!("move@{old}"), &format!("move@{new}"))
        .replace("INTERFACE=eth0", &format!("INTERFACE={new_name}"));
    (add, mv.into_bytes())
}

/// Gap 1 of `registry_ops::KNOWN_GAPS`, found by the `registry` fuzz target
/// (`fuzz/regressions/registry/net-rename-onto-held-name`).
#[test]
fn a_rename_onto_a_name_already_held_reports_the_old_name_gone() {
    use pciplug::registry::Outcome;
    let (add, mv) = eth0_and_a_rename_to("ens4");
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

/// Gap 2 of `registry_ops::KNOWN_GAPS`, found by the `registry` fuzz target
/// (`fuzz/regressions/registry/block-and-net-names-are-separate-namespaces`).
#[test]
fn an_interface_renamed_like_a_disk_does_not_take_the_disk_away() {
    let f = Fixture::load("q35-acpi-hotplug");
    let upto4: Vec<_> = f
        .recording
        .records
        .iter()
        .filter(|r| r.step.is_some_and(|s| s <= 4))
        .cloned()
        .collect();
    let mut reg = common::replay(&upto4);
    assert_eq!(reg.disk(&common::p("02/00")).unwrap().devnode(), "/dev/vda");
    // `ip link set eth0 name vda`: legal, and the disk /dev/vda is still there.
    let (_, mv) = eth0_and_a_rename_to("vda");
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
