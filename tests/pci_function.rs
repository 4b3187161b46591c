//! PCI functions and their drivers, from real recordings: `pciplug wait --kind pci` answered
//! from the q35-no-child-device uevents the kernel delivers in a private namespace (a
//! function with no driver, one bound to virtio-pci, a timeout that says what it saw), and
//! the driver of every function after every step of q35-vfio-bind (bind and unbind events)
//! against the guest's own sysfs listing, with the VFIO groups announced. The hand-over to
//! vfio-pci and the rescan, on fake sysfs trees, are `vfio_rescan.rs`'s.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, injectable, wait_until_listening};
use common::pciplug;
use pciplug::recording::Record;
use pciplug::{PciPath, Recording, Registry};

/// A recording of `fixtures/real-hotplug-2/`.
fn recording(name: &str) -> Recording {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/real-hotplug-2")
        .join(format!("{name}.uevents"));
    Recording::read(file).unwrap()
}

/// The records of steps `0..=last`.
fn up_to(recording: &Recording, last: u32) -> Vec<Record> {
    let records: Vec<Record> = recording
        .records
        .iter()
        .filter(|r| r.step.is_some_and(|s| s <= last))
        .cloned()
        .collect();
    assert!(!records.is_empty(), "no records in steps 0..={last}");
    records
}

/// `pciplug wait <args> --kind pci --timeout <timeout>` on an empty fake sysfs, listening
/// before `steps 0..=last` of q35-no-child-device are injected; its exit code and output.
fn wait_pci_after(last: u32, args: &[&str], timeout: &str) -> (i32, String, String) {
    let sysfs = FakeSysfs::new(); // nothing plugged at the start
    let running = pciplug(["wait", "--kind", "pci", "--timeout", timeout])
        .args(args)
        .arg("--sysfs")
        .arg(sysfs.root())
        .spawn();
    wait_until_listening(running.id());
    inject_all(&injectable(&up_to(&recording("q35-no-child-device"), last)));
    let ran = running.finish();
    (ran.code(), ran.stdout, ran.stderr)
}

// q35-no-child-device (read it): step 1 adds virtio-rng at 02/00 and binds it to virtio-pci,
// step 2 adds pci-testdev at 03/00 and step 3 edu at 04/00, neither bound by any driver;
// step 4 removes 02/00 and step 5 03/00.

#[test]
fn a_function_no_driver_binds_is_waited_for_and_its_bdf_printed() {
    in_private_netns(
        "a_function_no_driver_binds_is_waited_for_and_its_bdf_printed",
        || {
            let (code, stdout, stderr) = wait_pci_after(3, &["04/00"], "60s");
            assert_eq!((code, stdout.as_str()), (0, "0000:03:00.0\n"), "{stderr}");
        },
    );
}

#[test]
fn a_function_bound_to_the_named_driver_answers() {
    in_private_netns("a_function_bound_to_the_named_driver_answers", || {
        // Up to step 1 only: 02/00 is removed in step 4.
        let (code, stdout, stderr) =
            wait_pci_after(1, &["02/00", "--driver", "virtio-pci", "--json"], "60s");
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["bdf"], "0000:01:00.0", "{stdout}");
        assert_eq!(v["driver"], "virtio-pci", "{stdout}");
        assert_eq!(v["id"], "1af4:1044", "{stdout}");
        assert_eq!(v["class"], "00ff00", "{stdout}");
        // A fake sysfs with no such function: no iommu_group link, no group.
        assert_eq!(v["iommu_group"], serde_json::Value::Null, "{stdout}");
    });
}

#[test]
fn a_wait_for_a_driver_that_never_binds_times_out_saying_the_function_is_unbound() {
    in_private_netns(
        "a_wait_for_a_driver_that_never_binds_times_out_saying_the_function_is_unbound",
        || {
            // Up to step 3: 03/00 is present and unbound (removed in step 5).
            let (code, stdout, stderr) =
                wait_pci_after(3, &["03/00", "--driver", "vfio-pci"], "2s");
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(stdout.is_empty(), "{stdout}");
            assert!(
                stderr.contains(
                    "no PCI function bound to vfio-pci at 03/00 within 2s: PCI function \
                     0000:02:00.0 present at 03/00 and unbound (no driver)"
                ),
                "{stderr}"
            );
        },
    );
}

#[test]
fn a_wait_for_another_driver_names_the_one_bound_and_unbound_waits_for_none() {
    in_private_netns(
        "a_wait_for_another_driver_names_the_one_bound_and_unbound_waits_for_none",
        || {
            let (code, _, stderr) = wait_pci_after(1, &["02/00", "--driver", "vfio-pci"], "1s");
            assert_eq!(code, 1, "{stderr}");
            assert!(
                stderr.contains("PCI function 0000:01:00.0 present at 02/00, bound to virtio-pci"),
                "{stderr}"
            );
            let (code, stdout, stderr) = wait_pci_after(3, &["04/00", "--unbound"], "60s");
            assert_eq!((code, stdout.as_str()), (0, "0000:03:00.0\n"), "{stderr}");
            let (code, _, stderr) = wait_pci_after(1, &["03/00"], "1s");
            assert_eq!(code, 1, "{stderr}");
            assert!(
                stderr.contains("no PCI function at 03/00 within 1s: no PCI device at 03/00"),
                "{stderr}"
            );
        },
    );
}

/// The `pci` lines of the "guest sysfs after step N" listings: path -> driver, by step.
fn pci_drivers_after_each_step(file: &str) -> BTreeMap<u32, BTreeMap<String, Option<String>>> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out: BTreeMap<u32, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let mut step = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# guest sysfs after step ") {
            let n = rest.split(' ').next().unwrap().parse().unwrap();
            out.entry(n).or_default();
            step = Some(n);
        } else if let (Some(n), Some(rest)) = (step, line.strip_prefix("#   pci   ")) {
            // <bdf> <id> class=.. driver=<name|-> <devpath>  (PCI path <p>)
            let f: Vec<&str> = rest.split_whitespace().collect();
            let driver = f[3].strip_prefix("driver=").unwrap();
            let path = f[7].trim_end_matches(')');
            let driver = (driver != "-").then(|| driver.to_owned());
            out.get_mut(&n).unwrap().insert(path.to_owned(), driver);
        } else if !line.starts_with("#   ") {
            step = None;
        }
    }
    out
}

#[test]
fn bind_and_unbind_events_keep_each_functions_driver_as_the_guest_saw_it() {
    let rec = recording("q35-vfio-bind");
    let listings = pci_drivers_after_each_step(&rec.file.to_string_lossy());
    // Steps 2 (bound to vfio-pci at its add), 3 (unbound), 4 (bound after the fact), 5
    // (removed), 6: every one with a listing.
    assert!(listings.len() >= 5, "{listings:?}");
    let mut checked_bound = 0;
    for (step, listing) in &listings {
        let registry = common::replay(&up_to(&rec, *step));
        for (path, driver) in listing {
            let path: PciPath = path.parse().unwrap();
            // The machine's own ICH9 functions (1f.*) were never announced by a uevent.
            if path.to_string().starts_with("1f") {
                assert!(registry.get(&path).is_none(), "step {step}: {path}");
                continue;
            }
            let dev = registry
                .get(&path)
                .unwrap_or_else(|| panic!("step {step}: {path}"));
            assert_eq!(
                dev.driver.as_deref(),
                driver.as_deref(),
                "step {step}: {path}"
            );
            checked_bound += usize::from(driver.is_some());
        }
        let announced = |r: &Registry| {
            r.devices()
                .filter(|d| !d.path.to_string().starts_with("1f"))
                .count()
        };
        let listed = listing.keys().filter(|p| !p.starts_with("1f")).count();
        assert_eq!(announced(&registry), listed, "step {step}");
    }
    assert!(checked_bound >= 4, "{checked_bound}");

    // Between step 5's PCI unbind and its remove, 02/00 is present with no driver.
    let records = up_to(&rec, 5);
    let unbind = records
        .iter()
        .position(|r| r.step == Some(5) && r.datagram.starts_with(b"unbind@/devices/pci"))
        .expect("step 5 unbinds the function");
    let registry = common::replay(&records[..=unbind]);
    let dev = registry
        .get(&"02/00".parse().unwrap())
        .expect("02/00 until its remove");
    assert_eq!(dev.driver, None);
    let before = common::replay(&records[..unbind]);
    assert_eq!(
        before.get(&dev.path).unwrap().driver.as_deref(),
        Some("vfio-pci")
    );
}

#[test]
fn the_vfio_groups_announced_follow_the_functions_on_vfio_pci_step_by_step() {
    let rec = recording("q35-vfio-bind");
    let listings = pci_drivers_after_each_step(&rec.file.to_string_lossy());
    // The groups of the fixture README's step table (`add /devices/virtual/vfio/4` at step 2,
    // `/vfio/5` at step 4, `remove .../vfio/4` at step 5; step 6 lists group 5, /dev/vfio/5).
    let want: BTreeMap<u32, Vec<u32>> = BTreeMap::from([
        (1, vec![]),
        (2, vec![4]),
        (3, vec![4]),
        (4, vec![4, 5]),
        (5, vec![5]),
        (6, vec![5]),
    ]);
    assert_eq!(
        listings.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (step, listing) in &listings {
        let registry = common::replay(&up_to(&rec, *step));
        let groups: Vec<u32> = registry.vfio_groups().collect();
        assert_eq!(groups, want[step], "step {step}");
        // Each function of this guest is alone in its IOMMU group: as many groups as the
        // guest's own listing shows functions on vfio-pci.
        let on_vfio = listing
            .values()
            .filter(|d| d.as_deref() == Some("vfio-pci"))
            .count();
        assert_eq!(groups.len(), on_vfio, "step {step}");
    }
    // Each group came and went once, with a change tied to no path.
    let mut registry = Registry::new();
    let mut seen = Vec::new();
    for r in &rec.records {
        if let pciplug::registry::Outcome::Applied(changes) =
            registry.apply_datagram(0, &r.datagram)
        {
            seen.extend(
                changes
                    .iter()
                    .filter(|c| c.to_string().contains("vfio-group"))
                    .map(|c| (c.path(), c.to_string())),
            );
        }
    }
    let want = [
        "- add vfio-group 4",
        "- add vfio-group 5",
        "- remove vfio-group 4",
    ];
    assert_eq!(
        seen,
        want.map(|w| (None, w.to_owned())).to_vec(),
        "{seen:?}"
    );
}
