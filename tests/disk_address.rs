//! A disk by its full address over the real kernel path: `pciplug wait PATH --scsi T:L`,
//! `--scsi T:L` alone, `--nsid N`, virtio-pmem; an address that fits several disks refused
//! with every candidate (exit 2); the SCSI scan on request. Real recordings
//! (`fixtures/real-hotplug-2/`) injected in a private namespace.
//!
//! A waiter that listens while the disks arrive answers at the first one that fits: a path
//! alone fits the first LUN of an HBA, which is the only disk there at that moment. The
//! ambiguity tests therefore ask when the disks are all there: the library's waits after the
//! kernel delivered them, and `pciplug wait` on a guest whose sysfs already shows them (laid
//! out from the registry the same recording leads to).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::cli::{Ran, Running};
use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, recording_up_to, wait_until_listening};
use common::{Fixture, eventually, p, pciplug, replay};
use pciplug::{DiskAddress, Monitor, PciPath, Registry, Seen, Unit, WaitError, Wanted};

const SCSI: &str = "q35-scsi-multi-lun";
const NVME: &str = "q35-nvme-namespaces";
const PMEM: &str = "q35-virtio-pmem";

/// `pciplug wait <args> --timeout 60s --sysfs <sysfs>`, started and listening.
fn wait_for(args: &[&str], sysfs: &Path) -> Running {
    let running = pciplug(["wait"])
        .args(args)
        .args(["--timeout", "60s", "--sysfs"])
        .arg(sysfs)
        .spawn();
    wait_until_listening(running.id());
    running
}

/// `pciplug wait <args> --timeout 60s --sysfs <sysfs>`, run to its end: on a guest whose
/// sysfs already shows the answer (it may exit before it could be seen listening).
fn ask(args: &[&str], sysfs: &Path) -> Ran {
    pciplug(["wait"])
        .args(args)
        .args(["--timeout", "60s", "--sysfs"])
        .arg(sysfs)
        .run()
}

#[track_caller]
fn assert_prints(ran: Ran, line: &str) {
    assert_eq!(
        (ran.code(), ran.stdout.as_str()),
        (0, format!("{line}\n").as_str()),
        "{}",
        ran.stderr
    );
}

#[track_caller]
fn assert_ambiguous(ran: Ran, message: &str) {
    assert_eq!((ran.code(), ran.stdout.as_str()), (2, ""), "{}", ran.stderr);
    // The last line; a warning may come before it (a smaller socket buffer, say).
    assert_eq!(
        ran.stderr.lines().last(),
        Some(format!("pciplug: {message}").as_str())
    );
}

fn scsi(unit: &str) -> Unit {
    Unit::Scsi(unit.parse().unwrap())
}

/// A sysfs tree showing what `registry` holds: its PCI functions and their block devices.
fn sysfs_of(registry: &Registry) -> FakeSysfs {
    let t = FakeSysfs::new();
    for d in registry.devices() {
        let ids = d.ids.expect("the recording names the function's IDs");
        let id = format!("{:04X}:{:04X}", ids.id.0, ids.id.1);
        t.pci(
            &d.devpath,
            &id,
            &format!("{:X}", ids.class),
            d.driver.as_deref(),
        );
        for b in &d.block {
            let n = |v: Option<u32>| v.unwrap().to_string();
            let lines = [
                format!("MAJOR={}", n(b.major)),
                format!("MINOR={}", n(b.minor)),
                format!("DEVNAME={}", b.name),
                "DEVTYPE=disk".to_owned(),
                format!("DISKSEQ={}", b.diskseq.unwrap()),
            ];
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            t.class_device("block", &b.devpath, &lines);
        }
    }
    t
}

/// The guest of q35-scsi-multi-lun after step `last`, as its sysfs shows it.
fn scsi_guest_after(last: u32) -> FakeSysfs {
    sysfs_of(&replay(&Fixture::load(SCSI).records_in(..=last)))
}

#[test]
fn a_scsi_unit_at_a_path_picks_its_lun() {
    in_private_netns("a_scsi_unit_at_a_path_picks_its_lun", || {
        let sysfs = FakeSysfs::new(); // nothing plugged yet
        let sdb = wait_for(&["02/00", "--scsi", "0:1"], sysfs.root());
        let sdc = wait_for(&["02/00", "--scsi", "1:0"], sysfs.root());
        // The second HBA's LUN 0:0, not the first's.
        let sdd = wait_for(&["03/00", "--scsi", "0:0"], sysfs.root());
        inject_all(&recording_up_to(SCSI, 5));
        assert_prints(sdb.finish(), "/dev/sdb");
        assert_prints(sdc.finish(), "/dev/sdc");
        assert_prints(sdd.finish(), "/dev/sdd");
    });
}

#[test]
fn a_scsi_unit_without_a_path_is_the_disk_of_the_only_hba_with_it() {
    in_private_netns(
        "a_scsi_unit_without_a_path_is_the_disk_of_the_only_hba_with_it",
        || {
            // Target 1 LUN 0 is sdc (0:0:1:0) on the HBA at 02/00 only; the HBA at 03/00
            // (host 1) has 1:0:0:0, whose host number is not its target.
            let sysfs = FakeSysfs::new();
            let waiter = wait_for(&["--scsi", "1:0"], sysfs.root());
            inject_all(&recording_up_to(SCSI, 5));
            assert_prints(waiter.finish(), "/dev/sdc");
            // Asked once both HBAs are there, the answer is the same.
            let both = scsi_guest_after(5);
            assert_prints(ask(&["--scsi", "1:0"], both.root()), "/dev/sdc");
        },
    );
}

#[test]
fn a_path_with_three_luns_is_ambiguous_and_each_is_named() {
    in_private_netns(
        "a_path_with_three_luns_is_ambiguous_and_each_is_named",
        || {
            let message = "disk address 02/00 is ambiguous: sda 0:0:0:0, sdb 0:0:0:1, sdc 0:0:1:0";
            // The library, fed by the kernel: once the three LUNs are there.
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            inject_all(&recording_up_to(SCSI, 4));
            assert!(eventually(Duration::from_secs(20), || {
                monitor.with_registry(|r| r.disks(&p("02/00")).len() == 3)
            }));
            let e = monitor
                .wait_block_timeout(&p("02/00"), Duration::from_secs(60))
                .unwrap_err();
            let WaitError::Ambiguous(ambiguous) = &e else {
                panic!("{e:?}")
            };
            // The candidates, as data: each disk with its path and unit.
            let candidates: Vec<(PciPath, &str, Option<&str>)> = ambiguous
                .candidates
                .iter()
                .map(|c| (c.path, &*c.name, c.unit.as_deref()))
                .collect();
            assert_eq!(
                candidates,
                [
                    (p("02/00"), "sda", Some("0:0:0:0")),
                    (p("02/00"), "sdb", Some("0:0:0:1")),
                    (p("02/00"), "sdc", Some("0:0:1:0")),
                ]
            );
            assert_eq!(ambiguous.address, DiskAddress::at(p("02/00")));
            assert_eq!(e.to_string(), message);
            // Answering now, it fails as the wait does.
            let now = monitor.try_block(&p("02/00")).unwrap_err();
            assert!(matches!(now, WaitError::Ambiguous(_)), "{now:?}");
            assert_eq!(now.to_string(), message);
            // A LUN picks one of them.
            let sdb = DiskAddress::with_unit(Some(p("02/00")), scsi("0:1"));
            assert_eq!(&*monitor.try_disk(&sdb).unwrap().unwrap().name, "sdb");
            // The command, on the guest after step 4: exit 2, each candidate named.
            let guest = scsi_guest_after(4);
            assert_ambiguous(ask(&["02/00"], guest.root()), message);
            // After step 6 (sdb removed) two are left: still ambiguous; a LUN still answers.
            let guest = scsi_guest_after(6);
            assert_ambiguous(
                ask(&["02/00"], guest.root()),
                "disk address 02/00 is ambiguous: sda 0:0:0:0, sdc 0:0:1:0",
            );
            assert_prints(ask(&["02/00", "--scsi", "0:0"], guest.root()), "/dev/sda");
        },
    );
}

#[test]
fn a_lun_on_two_hbas_without_a_path_is_ambiguous_naming_both_paths() {
    in_private_netns(
        "a_lun_on_two_hbas_without_a_path_is_ambiguous_naming_both_paths",
        || {
            let message = "disk address scsi 0:0 is ambiguous: \
                           HBAs at 02/00 (sda 0:0:0:0), 03/00 (sdd 1:0:0:0)";
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            inject_all(&recording_up_to(SCSI, 5));
            assert!(eventually(Duration::from_secs(20), || {
                monitor.with_registry(|r| r.get(&p("03/00")).is_some_and(|d| !d.block.is_empty()))
            }));
            let anywhere = DiskAddress::with_unit(None, scsi("0:0"));
            let e = monitor
                .wait_disk_timeout(&anywhere, Duration::from_secs(60))
                .unwrap_err();
            assert_eq!(e.to_string(), message);
            let guest = scsi_guest_after(5);
            assert_ambiguous(ask(&["--scsi", "0:0"], guest.root()), message);
            // After step 7 (the HBA at 02/00 removed) only 03/00 has it.
            let guest = scsi_guest_after(7);
            assert_prints(ask(&["--scsi", "0:0"], guest.root()), "/dev/sdd");
        },
    );
}

#[test]
fn a_wait_for_a_unit_without_a_path_wakes_on_any_path_and_times_out_saying_what_it_saw() {
    in_private_netns(
        "a_wait_for_a_unit_without_a_path_wakes_on_any_path_and_times_out_saying_what_it_saw",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            // No deadline: only a wake-up for a change at 03/00 can answer it.
            let m = monitor.clone();
            let sdd =
                thread::spawn(move || m.wait_disk(&DiskAddress::with_unit(None, scsi("0:0"))));
            assert!(eventually(Duration::from_secs(20), || monitor
                .stats()
                .waiters
                == 1));
            // Only the second HBA's step: sdd at 03/00 is the only disk with 0:0.
            let step5 = Fixture::load(SCSI).records_in(5..=5);
            inject_all(&common::netns::injectable(&step5));
            assert!(
                eventually(Duration::from_secs(60), || sdd.is_finished()),
                "the waiter was never woken"
            );
            assert_eq!(&*sdd.join().unwrap().unwrap().name, "sdd");
            let e = monitor
                .wait_disk_timeout(
                    &DiskAddress::with_unit(None, scsi("3:0")),
                    Duration::from_millis(50),
                )
                .unwrap_err();
            let text = e.to_string();
            let WaitError::Timeout(t) = &e else {
                panic!("{e:?}")
            };
            // A unit anywhere: no path; what was seen is the disks with a unit, and where.
            let anywhere = DiskAddress::with_unit(None, scsi("3:0"));
            assert_eq!((&t.wanted, t.path), (&Wanted::Disk(anywhere), None));
            let Seen::Units(units) = &t.seen else {
                panic!("{:?}", t.seen)
            };
            let units: Vec<_> = units.iter().map(|c| (c.path, &*c.name)).collect();
            assert_eq!(units, [(p("03/00"), "sdd")]);
            assert!(
                text.starts_with("no block disk scsi 3:0 at any PCI path within ")
                    && text.ends_with(": disks present: sdd 1:0:0:0 at 03/00"),
                "{text}"
            );
            assert_eq!(monitor.stats().waiters, 0, "no waiter left behind");
        },
    );
}

#[test]
fn an_nvme_namespace_is_picked_by_its_id_read_from_sysfs() {
    in_private_netns(
        "an_nvme_namespace_is_picked_by_its_id_read_from_sysfs",
        || {
            // What sysfs has and no uevent carries: the subsystem's link to its controller and
            // each head's `nsid` (q35-nvme-namespaces: nvme0n1 is namespace 1, nvme0n2 is 2).
            let sysfs = FakeSysfs::new();
            let ctrl = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/nvme/nvme0";
            let subsys = "/devices/virtual/nvme-subsystem/nvme-subsys0";
            sysfs.attr(ctrl, "dev", "241:0\n");
            sysfs.link("class/nvme-subsystem/nvme-subsys0", subsys);
            sysfs.link(&format!("{subsys}/nvme0"), ctrl);
            for n in ["1", "2"] {
                let head = format!("{subsys}/nvme0n{n}");
                sysfs.attr(&head, "nsid", &format!("{n}\n"));
                sysfs.link(&format!("class/block/nvme0n{n}"), &head);
            }
            let ns2 = wait_for(&["02/00", "--nsid", "2"], sysfs.root());
            let ns1 = wait_for(&["02/00", "--nsid", "1"], sysfs.root());
            let anywhere = wait_for(&["--nsid", "2"], sysfs.root());
            inject_all(&recording_up_to(NVME, 0));
            assert_prints(ns2.finish(), "/dev/nvme0n2");
            assert_prints(ns1.finish(), "/dev/nvme0n1");
            assert_prints(anywhere.finish(), "/dev/nvme0n2");
        },
    );
}

#[test]
fn a_virtio_pmem_device_is_the_disk_of_its_function() {
    in_private_netns("a_virtio_pmem_device_is_the_disk_of_its_function", || {
        // .../virtio0/ndbus0/region0/namespace0.0/block/pmem0, five nodes below the function.
        let sysfs = FakeSysfs::new();
        let pmem0 = wait_for(&["02/00"], sysfs.root());
        let pmem1 = wait_for(&["03/00"], sysfs.root());
        inject_all(&recording_up_to(PMEM, 2));
        assert_prints(pmem0.finish(), "/dev/pmem0");
        assert_prints(pmem1.finish(), "/dev/pmem1");
    });
}

const HBA1: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/host0";
const HBA2: &str = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/virtio1/host1";

/// A guest with two virtio-scsi HBAs and no disk: the `scan` files of their SCSI hosts.
fn two_empty_hbas() -> (FakeSysfs, [std::path::PathBuf; 2]) {
    let t = FakeSysfs::new();
    t.scsi_host(HBA1);
    t.scsi_host(HBA2);
    let scan = |hba: &str| {
        let host = hba.rsplit('/').next().unwrap();
        t.root()
            .join(hba.trim_start_matches('/'))
            .join(format!("scsi_host/{host}/scan"))
    };
    let files = [scan(HBA1), scan(HBA2)];
    (t, files)
}

#[test]
fn scan_asks_the_hba_at_the_path_for_the_lun_before_waiting() {
    let (sysfs, [host0, host1]) = two_empty_hbas();
    let ran = pciplug([
        "wait",
        "03/00",
        "--scsi",
        "0:1",
        "--scan",
        "--timeout",
        "10ms",
    ])
    .arg("--sysfs")
    .arg(sysfs.root())
    .run();
    // No disk comes (nothing is plugged): a timeout, after the scan was asked for.
    assert_eq!(ran.code(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no block disk scsi 0:1 at 03/00"),
        "{}",
        ran.stderr
    );
    assert_eq!(fs::read_to_string(&host1).unwrap(), "0 0 1");
    assert_eq!(
        fs::read_to_string(&host0).unwrap(),
        "",
        "only the HBA at the path"
    );
    // Off by default.
    fs::write(&host1, "").unwrap();
    let ran = pciplug(["wait", "03/00", "--scsi", "0:1", "--timeout", "10ms"])
        .arg("--sysfs")
        .arg(sysfs.root())
        .run();
    assert_eq!(ran.code(), 1, "{}", ran.stderr);
    assert_eq!(fs::read_to_string(&host1).unwrap(), "");
    // Without a path, every HBA.
    let ran = pciplug(["wait", "--scsi", "2:3", "--scan", "--timeout", "10ms"])
        .arg("--sysfs")
        .arg(sysfs.root())
        .run();
    assert_eq!(ran.code(), 1, "{}", ran.stderr);
    assert_eq!(fs::read_to_string(&host0).unwrap(), "0 2 3");
    assert_eq!(fs::read_to_string(&host1).unwrap(), "0 2 3");
}

#[test]
fn a_scan_file_that_refuses_the_write_is_an_error_naming_it() {
    let (sysfs, [host0, _]) = two_empty_hbas();
    let mut perms = fs::metadata(&host0).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    fs::set_permissions(&host0, perms).unwrap();
    let args = [
        "wait",
        "02/00",
        "--scsi",
        "0:1",
        "--scan",
        "--timeout",
        "10s",
    ];
    // Root (CAP_DAC_OVERRIDE) writes a read-only file anyway: then run the command without
    // its capabilities.
    let can_write_anyway = fs::OpenOptions::new().write(true).open(&host0).is_ok();
    let mut command = if can_write_anyway {
        let mut c = Command::new("setpriv");
        c.args(["--inh-caps=-all", "--bounding-set=-all", "--"])
            .arg(env!("CARGO_BIN_EXE_pciplug"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_pciplug"))
    };
    let out = command
        .args(args)
        .arg("--sysfs")
        .arg(sysfs.root())
        .output()
        .expect("running pciplug (setpriv from util-linux when root)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = sysfs.root().join("class/scsi_host/host0/scan");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "pciplug: writing \"0 0 1\" to {}: Permission denied (os error 13)",
            file.display()
        )
    );
    assert_eq!(fs::read_to_string(&host0).unwrap(), "");
}

#[test]
fn list_shows_the_namespace_id_sysfs_has() {
    // The q35 fake tree: nvme0n1 under 06/00 has `nsid` 1.
    let sysfs = common::fake_sysfs::q35();
    let ran = pciplug(["list", "--json", "--sysfs"])
        .arg(sysfs.root())
        .run();
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    let nvme: serde_json::Value = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["path"] == "06/00")
        .expect("06/00 listed");
    assert_eq!(nvme["block"][0]["name"], "nvme0n1");
    assert_eq!(nvme["block"][0]["nsid"], 1);
    let ran = pciplug(["list", "--sysfs"]).arg(sysfs.root()).run();
    assert!(
        ran.stdout
            .contains("nvme0n1 (disk, multipath nvme-subsys0, nsid 1, diskseq 6)"),
        "{}",
        ran.stdout
    );
}
