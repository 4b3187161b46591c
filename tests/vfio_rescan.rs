//! The sysfs writes, on fake sysfs trees (never this machine's): `Monitor::vfio` hands a
//! function's IOMMU group to vfio-pci (each write checked, in order; nothing written when the
//! group or the driver does not allow it; idempotent), the rescan option writes
//! `bus/pci/rescan` when a wait starts and again until it answers (never when off), and a
//! read-only sysfs refuses both with the file and the OS error. The group's node is awaited
//! through vfio's uevent, injected from q35-vfio-bind. The monitors run in a private network
//! namespace, so that this machine's own uevents never reach their registries.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, injectable};
use common::{eventually, skip};
use pciplug::{DriverState, Error, Monitor, PciPath, Recording, VfioError, WaitError};

/// The edu function at 03/00, as in q35-vfio-bind step 3.
const EDU: &str = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0";
const EDU_BDF: &str = "0000:02:00.0";
/// The root port it is behind.
const PORT: &str = "/devices/pci0000:00/0000:00:03.0";

/// A guest's sysfs and `/dev`, both fake.
struct Guest {
    sysfs: FakeSysfs,
    dev: tempfile::TempDir,
}

impl Guest {
    /// edu at 03/00 bound to `driver`, in IOMMU group 5, with the files the kernel offers
    /// for writing (all empty), `vfio-pci` registered.
    fn new(driver: Option<&str>) -> Guest {
        let sysfs = FakeSysfs::new();
        let upper = driver.map(str::to_owned);
        sysfs.pci(EDU, "1234:11E8", "FF00", upper.as_deref());
        sysfs.attr(EDU, "class", "0x00ff00\n");
        sysfs.attr(EDU, "driver_override", "");
        sysfs.attr("/bus/pci", "drivers_probe", "");
        sysfs.attr("/bus/pci", "rescan", "");
        sysfs.attr("/bus/pci/drivers/vfio-pci", "unbind", "");
        if let Some(d) = driver {
            sysfs.attr(&format!("/bus/pci/drivers/{d}"), "unbind", "");
            sysfs.link(&format!("{EDU}/driver"), &format!("bus/pci/drivers/{d}"));
        }
        sysfs.link(&format!("{EDU}/iommu_group"), "kernel/iommu_groups/5");
        sysfs.link(&format!("kernel/iommu_groups/5/devices/{EDU_BDF}"), EDU);
        let dev = tempfile::tempdir().unwrap();
        Guest { sysfs, dev }
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.sysfs.root().join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.file(rel)).unwrap()
    }

    fn node(&self) -> PathBuf {
        self.dev.path().join("vfio/5")
    }

    fn monitor(&self, rescan: bool) -> Monitor {
        Monitor::builder()
            .sysfs_root(self.sysfs.root())
            .dev_root(self.dev.path())
            .rescan(rescan)
            .start()
            .unwrap()
    }

    /// What the kernel does on `drivers_probe` with the override set: vfio-pci binds the
    /// function, vfio creates the group's device (its class entry, then its node) and
    /// announces it (the recorded uevent). Checks that the override and the unbind came first.
    fn kernel_binds_vfio_on_probe(&self, old_driver: &str) -> thread::JoinHandle<()> {
        let probe = self.file("bus/pci/drivers_probe");
        let override_ = self.file(&format!("{EDU}/driver_override"));
        let unbind = self.file(&format!("bus/pci/drivers/{old_driver}/unbind"));
        let link = self.file(&format!("{EDU}/driver"));
        let node = self.node();
        thread::spawn(move || {
            let probed = || fs::read_to_string(&probe).unwrap() == EDU_BDF;
            assert!(eventually(Duration::from_secs(30), probed), "no probe");
            assert_eq!(fs::read_to_string(&override_).unwrap(), "vfio-pci");
            assert_eq!(fs::read_to_string(&unbind).unwrap(), EDU_BDF);
            fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink("../../../../bus/pci/drivers/vfio-pci", &link).unwrap();
            fs::create_dir_all(node.parent().unwrap()).unwrap();
            fs::write(&node, "").unwrap();
            inject_all(&group_uevent("add", 5));
        })
    }
}

/// q35-vfio-bind's uevent `<action>@/devices/virtual/vfio/<group>`, ready to inject.
fn group_uevent(action: &str, group: u32) -> Vec<Vec<u8>> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/real-hotplug-2/q35-vfio-bind.uevents");
    let header = format!("{action}@/devices/virtual/vfio/{group}\0");
    let records: Vec<_> = Recording::read(file)
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.datagram.starts_with(header.as_bytes()))
        .collect();
    assert_eq!(records.len(), 1, "{header} recorded once");
    injectable(&records)
}

fn p(s: &str) -> PciPath {
    s.parse().unwrap()
}

#[test]
fn vfio_overrides_unbinds_and_probes_then_answers_the_group_node() {
    in_private_netns(
        "vfio_overrides_unbinds_and_probes_then_answers_the_group_node",
        || {
            let guest = Guest::new(Some("virtio-pci"));
            let monitor = guest.monitor(false);
            let kernel = guest.kernel_binds_vfio_on_probe("virtio-pci");
            let group = monitor.vfio(&p("03/00"), Duration::from_secs(30)).unwrap();
            kernel.join().unwrap();
            assert_eq!(group.group, 5);
            assert_eq!(group.devnode, guest.node());
            assert_eq!(group.functions, vec![EDU_BDF.parse().unwrap()]);
            // The rescan option was off: nothing written there.
            assert_eq!(guest.read("bus/pci/rescan"), "");
        },
    );
}

#[test]
fn a_group_already_on_vfio_answers_at_once_and_writes_nothing() {
    in_private_netns(
        "a_group_already_on_vfio_answers_at_once_and_writes_nothing",
        || {
            let guest = Guest::new(Some("vfio-pci"));
            guest.sysfs.vfio_group(5);
            fs::create_dir_all(guest.node().parent().unwrap()).unwrap();
            fs::write(guest.node(), "").unwrap();
            let monitor = guest.monitor(false);
            let group = monitor.vfio(&p("03/00"), Duration::from_secs(30)).unwrap();
            assert_eq!((group.group, group.devnode), (5, guest.node()));
            for f in [
                format!("{EDU}/driver_override"),
                "bus/pci/drivers_probe".into(),
                "bus/pci/drivers/vfio-pci/unbind".into(),
            ] {
                assert_eq!(guest.read(&f), "", "{f} written");
            }
        },
    );
}

#[test]
fn the_group_is_answered_by_its_uevent_not_by_its_node_alone() {
    in_private_netns(
        "the_group_is_answered_by_its_uevent_not_by_its_node_alone",
        || {
            // On vfio-pci, the node there from the start, but the group never announced.
            let guest = Guest::new(Some("vfio-pci"));
            fs::create_dir_all(guest.node().parent().unwrap()).unwrap();
            fs::write(guest.node(), "").unwrap();
            let monitor = guest.monitor(false);
            let e = monitor
                .vfio(&p("03/00"), Duration::from_millis(300))
                .unwrap_err();
            assert!(matches!(e, Error::Vfio(VfioError::NoNode { .. })), "{e:?}");
            assert!(
                e.to_string().ends_with(": 0000:02:00.0 bound to vfio-pci"),
                "{e}"
            );

            let m = monitor.clone();
            let waiter = thread::spawn(move || m.vfio(&p("03/00"), Duration::from_secs(60)));
            let waiting = || monitor.stats().waiters == 1;
            assert!(eventually(Duration::from_secs(30), waiting), "not waiting");
            // Another group's uevent wakes it, but does not answer it.
            inject_all(&group_uevent("add", 4));
            let seen_4 = || monitor.with_registry(|r| r.has_vfio_group(4));
            assert!(
                eventually(Duration::from_secs(30), seen_4),
                "group 4 not applied"
            );
            assert!(!waiter.is_finished(), "answered by group 4");
            assert_eq!(monitor.stats().waiters, 1);
            // Its own does.
            inject_all(&group_uevent("add", 5));
            let group = waiter.join().unwrap().unwrap();
            assert_eq!((group.group, group.devnode), (5, guest.node()));
            // Nothing was written: the function was on vfio-pci already.
            assert_eq!(guest.read(&format!("{EDU}/driver_override")), "");
            assert_eq!(guest.read("bus/pci/drivers_probe"), "");
        },
    );
}

#[test]
fn an_announced_group_without_its_node_says_so() {
    in_private_netns("an_announced_group_without_its_node_says_so", || {
        let guest = Guest::new(Some("vfio-pci"));
        guest.sysfs.vfio_group(5);
        let e = guest
            .monitor(false)
            .vfio(&p("03/00"), Duration::from_secs(30))
            .unwrap_err();
        assert!(matches!(e, Error::Vfio(VfioError::NoNode { .. })), "{e:?}");
        assert!(
            e.to_string().ends_with(
                ": the group's uevent came, but not the node, 0000:02:00.0 bound to vfio-pci"
            ),
            "{e}"
        );
    });
}

/// The files `vfio` writes, all still empty.
fn assert_nothing_written(guest: &Guest) {
    assert_eq!(guest.read(&format!("{EDU}/driver_override")), "");
    assert_eq!(guest.read("bus/pci/drivers_probe"), "");
    assert_eq!(guest.read("bus/pci/drivers/virtio-pci/unbind"), "");
}

#[test]
fn vfio_refuses_before_writing_anything_what_it_cannot_hand_over() {
    in_private_netns(
        "vfio_refuses_before_writing_anything_what_it_cannot_hand_over",
        || {
            // No IOMMU group.
            let guest = Guest::new(Some("virtio-pci"));
            fs::remove_file(guest.file(&format!("{EDU}/iommu_group"))).unwrap();
            let e = guest
                .monitor(false)
                .vfio(&p("03/00"), Duration::from_secs(30))
                .unwrap_err();
            assert!(
                matches!(e, Error::Vfio(VfioError::NoIommuGroup { .. })),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                "PCI function 0000:02:00.0 at 03/00 has no IOMMU group (no iommu_group link in sysfs)"
            );
            assert_nothing_written(&guest);

            // A bridge (the root port above it) in the same group.
            let guest = Guest::new(Some("virtio-pci"));
            guest
                .sysfs
                .pci(PORT, "1B36:000C", "60400", Some("pcieport"));
            guest.sysfs.attr(PORT, "class", "0x060400\n");
            guest
                .sysfs
                .link("kernel/iommu_groups/5/devices/0000:00:03.0", PORT);
            let e = guest
                .monitor(false)
                .vfio(&p("03/00"), Duration::from_secs(30))
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "IOMMU group 5 of 0000:02:00.0 holds functions that cannot be handed to \
                 vfio-pci: 0000:00:03.0 (a bridge, class 060400)"
            );
            assert_nothing_written(&guest);

            // No vfio-pci driver.
            let guest = Guest::new(Some("virtio-pci"));
            fs::remove_dir_all(guest.file("bus/pci/drivers/vfio-pci")).unwrap();
            let e = guest
                .monitor(false)
                .vfio(&p("03/00"), Duration::from_secs(30))
                .unwrap_err();
            let dir = guest.file("bus/pci/drivers/vfio-pci");
            assert_eq!(
                e.to_string(),
                format!(
                    "vfio-pci is not available: no {} (load the vfio-pci module)",
                    dir.display()
                )
            );
            assert_nothing_written(&guest);

            // A group that does not list the function.
            let guest = Guest::new(Some("virtio-pci"));
            fs::remove_file(guest.file(&format!("kernel/iommu_groups/5/devices/{EDU_BDF}")))
                .unwrap();
            let e = guest
                .monitor(false)
                .vfio(&p("03/00"), Duration::from_secs(30))
                .unwrap_err();
            assert!(e.to_string().ends_with("0000:02:00.0 is not listed"), "{e}");
            assert_nothing_written(&guest);

            // Nothing at the path: the wait's own timeout.
            let e = guest
                .monitor(false)
                .vfio(&p("04/00"), Duration::from_millis(200))
                .unwrap_err();
            assert!(matches!(e, Error::Wait(WaitError::Timeout(_))), "{e:?}");
            assert!(e.to_string().contains("no PCI device at 04/00"), "{e}");
        },
    );
}

#[test]
fn a_node_that_never_appears_is_a_timeout_naming_each_functions_driver() {
    in_private_netns(
        "a_node_that_never_appears_is_a_timeout_naming_each_functions_driver",
        || {
            // Nobody binds on probe here: the driver stays virtio-pci.
            let guest = Guest::new(Some("virtio-pci"));
            let e = guest
                .monitor(false)
                .vfio(&p("03/00"), Duration::from_millis(300))
                .unwrap_err();
            let shown = e.to_string();
            let head = format!("no {} for IOMMU group 5 within ", guest.node().display());
            assert!(shown.starts_with(&head), "{shown}");
            assert!(
                shown.ends_with(": 0000:02:00.0 bound to virtio-pci"),
                "{shown}"
            );
            // It did write: the override, the unbind, the probe.
            assert_eq!(guest.read(&format!("{EDU}/driver_override")), "vfio-pci");
            assert_eq!(guest.read("bus/pci/drivers/virtio-pci/unbind"), EDU_BDF);
            assert_eq!(guest.read("bus/pci/drivers_probe"), EDU_BDF);
        },
    );
}

#[test]
fn a_refused_write_names_the_file_and_the_os_error() {
    in_private_netns("a_refused_write_names_the_file_and_the_os_error", || {
        let guest = Guest::new(Some("virtio-pci"));
        // Refused even to root: a directory where the attribute should be.
        let file = guest.file(&format!("{EDU}/driver_override"));
        fs::remove_file(&file).unwrap();
        fs::create_dir(&file).unwrap();
        let e = guest
            .monitor(false)
            .vfio(&p("03/00"), Duration::from_secs(30))
            .unwrap_err();
        let Error::SysfsWrite(w) = &e else {
            panic!("{e:?}")
        };
        let link_path = guest.file(&format!("bus/pci/devices/{EDU_BDF}/driver_override"));
        assert_eq!((w.file(), w.value()), (link_path.as_path(), "vfio-pci"));
        assert!(
            e.to_string().starts_with(&format!(
                "writing \"vfio-pci\" to {}: ",
                link_path.display()
            )),
            "{e}"
        );
        // Nothing after the refused write.
        assert_eq!(guest.read("bus/pci/drivers_probe"), "");
    });
}

/// q35-no-child-device up to step 3 (edu at 04/00, unbound), ready to inject.
fn edu_plugged() -> Vec<Vec<u8>> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/real-hotplug-2/q35-no-child-device.uevents");
    let rec = Recording::read(file).unwrap();
    let records: Vec<_> = rec
        .records
        .into_iter()
        .filter(|r| r.step.is_some_and(|s| s <= 3))
        .collect();
    injectable(&records)
}

#[test]
fn a_rescanning_wait_rescans_at_start_and_again_until_the_device_appears() {
    in_private_netns(
        "a_rescanning_wait_rescans_at_start_and_again_until_the_device_appears",
        || {
            let guest = Guest::new(None);
            let rescan = guest.file("bus/pci/rescan");
            let monitor = guest.monitor(true);
            let m = monitor.clone();
            let waiter = thread::spawn(move || {
                m.wait_function_timeout(&p("04/00"), &DriverState::Any, Duration::from_secs(60))
            });
            let written = || fs::read_to_string(&rescan).unwrap() == "1";
            assert!(eventually(Duration::from_secs(30), written), "no rescan");
            // Taken away: the next slice of the wait writes it again.
            fs::write(&rescan, "").unwrap();
            assert!(
                eventually(Duration::from_secs(30), written),
                "no rescan again"
            );
            // The device the rescan "found": the wait, still going, answers.
            inject_all(&edu_plugged());
            let f = waiter.join().unwrap().unwrap();
            assert_eq!(f.bdf.to_string(), "0000:03:00.0");
        },
    );
}

#[test]
fn a_rescanning_wait_that_times_out_reports_the_whole_wait_and_without_it_nothing_is_written() {
    in_private_netns(
        "a_rescanning_wait_that_times_out_reports_the_whole_wait_and_without_it_nothing_is_written",
        || {
            let guest = Guest::new(None);
            // Over a rescan interval: the error is the whole wait's, not its last slice's.
            let e = guest
                .monitor(true)
                .wait_function_timeout(&p("04/00"), &DriverState::Any, Duration::from_millis(1500))
                .unwrap_err();
            let WaitError::Timeout(t) = e else {
                panic!("{e:?}")
            };
            let waited = t.timeout;
            assert_eq!(waited, Duration::from_millis(1500), "the timeout asked for");
            assert_eq!(guest.read("bus/pci/rescan"), "1");

            let guest = Guest::new(None);
            let e = guest
                .monitor(false)
                .wait_function_timeout(&p("04/00"), &DriverState::Any, Duration::from_millis(300))
                .unwrap_err();
            assert!(matches!(e, WaitError::Timeout(_)), "{e:?}");
            assert_eq!(guest.read("bus/pci/rescan"), "", "written with rescan off");
        },
    );
}

/// `pciplug <args>` with `root` mounted read-only over itself, in a private user and mount
/// namespace; `None` where this machine cannot make one (the caller skips).
fn on_read_only(root: &Path, args: &[&str]) -> Option<(i32, String)> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg(r#"root=$1; shift; mount --bind -o ro "$root" "$root" || exit 99; exec "$@""#)
        .arg("sh")
        .arg(root)
        .arg(env!("CARGO_BIN_EXE_pciplug"))
        .args(args)
        .output()
        .ok()?;
    let code = out.status.code()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if code == 99 || stderr.starts_with("unshare:") {
        return None;
    }
    Some((code, stderr))
}

#[test]
fn a_read_only_sysfs_refuses_the_rescan_and_the_override() {
    let test = "a_read_only_sysfs_refuses_the_rescan_and_the_override";
    let guest = Guest::new(Some("virtio-pci"));
    let root = guest.sysfs.root().to_str().unwrap().to_owned();
    let dev = guest.dev.path().to_str().unwrap().to_owned();
    let rescan = [
        "wait", "04/00", "--kind", "pci", "--rescan", "--sysfs", &root,
    ];
    let Some((code, stderr)) = on_read_only(guest.sysfs.root(), &rescan) else {
        return skip(
            test,
            "no private user + mount namespace (unshare -Urm) here",
        );
    };
    assert_eq!(code, 1, "{stderr}");
    let want = format!("pciplug: writing \"1\" to {root}/bus/pci/rescan: Read-only file system");
    assert!(stderr.lines().any(|l| l.starts_with(&want)), "{stderr}");

    let vfio = ["vfio", "03/00", "--sysfs", &root, "--dev", &dev];
    let (code, stderr) = on_read_only(guest.sysfs.root(), &vfio).unwrap();
    assert_eq!(code, 1, "{stderr}");
    let want = format!(
        "pciplug: writing \"vfio-pci\" to {root}/bus/pci/devices/{EDU_BDF}/driver_override: \
         Read-only file system"
    );
    assert!(stderr.lines().any(|l| l.starts_with(&want)), "{stderr}");
}
