//! Every spelling of a PCI path a host sends waits for the same device as the canonical form:
//! `pciplug wait <spelling>` answered from real recordings the kernel delivers in a private
//! namespace (a `pxb-pcie` expander under QEMU, Cloud Hypervisor's PCI segments).

mod common;

use common::cli::Running;
use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, recording_up_to, wait_until_listening};
use common::pciplug;
use pciplug::PciPath;

/// One `pciplug wait` for each `(spelling, extra args)`, all listening before anything is
/// injected; after the injection each must print `answer`.
fn all_wait_for(datagrams: &[Vec<u8>], cases: &[(&str, &[&str], &str)]) {
    let sysfs = FakeSysfs::new(); // a guest with nothing plugged at the start
    let waiters: Vec<(String, Running)> = cases
        .iter()
        .map(|(spelling, extra, _)| {
            let running = pciplug(["wait", spelling, "--timeout", "60s"])
                .args(*extra)
                .arg("--sysfs")
                .arg(sysfs.root())
                .spawn();
            (spelling.to_string(), running)
        })
        .collect();
    for (_, running) in &waiters {
        wait_until_listening(running.id());
    }
    inject_all(datagrams);
    for ((spelling, running), (_, _, answer)) in waiters.into_iter().zip(cases) {
        let ran = running.finish();
        assert_eq!(
            (ran.code(), ran.stdout.as_str()),
            (0, format!("{answer}\n").as_str()),
            "pciplug wait {spelling}: {}",
            ran.stderr
        );
    }
}

/// Each case's spelling parses to `canonical`: the waits below test spellings, not typos.
fn assert_spellings_of(canonical: &str, spellings: &[&str]) {
    let path: PciPath = canonical.parse().unwrap();
    assert_eq!(path.to_string(), canonical);
    for s in spellings {
        assert_eq!(s.parse::<PciPath>(), Ok(path), "{s}");
    }
}

const NONE: &[&str] = &[];

#[test]
fn one_digit_and_dot_zero_spellings_wait_for_the_disks_on_both_roots_of_a_pxb_guest() {
    // q35-pxb-pcie step 2: vda at 02/00 on pci0000:00, vdb at the same slots behind the pxb
    // (root bus 0x10), so a spelling that lost its root would answer the wrong disk.
    let on_root_0 = ["02/00", "2/0", "02.0/00.0", "2.0/0", "pci0000:00/02/00"];
    let on_pxb = ["pci0000:10/02/00", "pci0000:10/2/0", "pci0000:10/02.0/00.0"];
    assert_spellings_of("02/00", &on_root_0);
    assert_spellings_of("pci0000:10/02/00", &on_pxb);
    let mut cases: Vec<(&str, &[&str], &str)> = Vec::new();
    cases.extend(on_root_0.iter().map(|s| (*s, NONE, "/dev/vda")));
    cases.extend(on_pxb.iter().map(|s| (*s, NONE, "/dev/vdb")));
    in_private_netns(
        "one_digit_and_dot_zero_spellings_wait_for_the_disks_on_both_roots_of_a_pxb_guest",
        || all_wait_for(&recording_up_to("q35-pxb-pcie", 2), &cases),
    );
}

/// The q35-pxb-pcie recording moved from root bus 0x10 to 0x20, the lowest root bus Kata's
/// short expander form can name: every `pci0000:10` root and `0000:10:`/`0000:11:` bus
/// address in the datagrams is renumbered to `pci0000:20` and `0000:20:`/`0000:21:` (equal
/// lengths, nothing else touched). No recording has a `pxb-pcie` at bus 0x20 or above; this is
/// the real one with only its bus numbers changed.
fn pxb_recording_on_root_bus_0x20() -> Vec<Vec<u8>> {
    let swaps: [(&[u8], &[u8]); 3] = [
        (b"pci0000:10", b"pci0000:20"),
        (b"0000:10:", b"0000:20:"),
        (b"0000:11:", b"0000:21:"),
    ];
    let mut renumbered = 0;
    let datagrams = recording_up_to("q35-pxb-pcie", 2)
        .into_iter()
        .map(|mut d| {
            for (from, to) in swaps {
                let mut i = 0;
                while i + from.len() <= d.len() {
                    if &d[i..i + from.len()] == from {
                        d[i..i + from.len()].copy_from_slice(to);
                        renumbered += 1;
                        i += from.len();
                    } else {
                        i += 1;
                    }
                }
            }
            d
        })
        .collect();
    assert!(renumbered > 0, "the recording names root bus 0x10");
    datagrams
}

#[test]
fn kata_expander_form_waits_for_the_disk_behind_a_pxb() {
    let kata = ["20/02/00", "20/2/0", "20/02.0/00.0", "pci0000:20/02/00"];
    assert_spellings_of("pci0000:20/02/00", &kata);
    let mut cases: Vec<(&str, &[&str], &str)> =
        kata.iter().map(|s| (*s, NONE, "/dev/vdb")).collect();
    // The disk on root bus 0 at the same slots is still told apart.
    cases.push(("02/00", NONE, "/dev/vda"));
    let datagrams = pxb_recording_on_root_bus_0x20();
    in_private_netns("kata_expander_form_waits_for_the_disk_behind_a_pxb", || {
        all_wait_for(&datagrams, &cases)
    });
}

#[test]
fn pci_segment_spellings_wait_for_the_device_of_their_segment() {
    // ch-pci-segments up to step 5: slot 05 is taken on all three segments (vdc on segment 0,
    // vdd on segment 1, eth0 on segment 2); step 6 removes vdd and is not injected.
    let seg0 = ["05", "5", "05.0", "pci0000:00/5"];
    let seg1 = ["pci0001:00/05", "pci0001:00/5", "pci0001:00/05.0"];
    let seg2 = ["pci0002:00/05", "pci0002:00/5.0"];
    assert_spellings_of("05", &seg0);
    assert_spellings_of("pci0001:00/05", &seg1);
    assert_spellings_of("pci0002:00/05", &seg2);
    // The root complex is spelt as sysfs names it, in lower case.
    assert!("PCI0001:00/5".parse::<PciPath>().is_err());
    let net: &[&str] = &["--kind", "net"];
    let mut cases: Vec<(&str, &[&str], &str)> = Vec::new();
    cases.extend(seg0.iter().map(|s| (*s, NONE, "/dev/vdc")));
    cases.extend(seg1.iter().map(|s| (*s, NONE, "/dev/vdd")));
    cases.extend(seg2.iter().map(|s| (*s, net, "eth0")));
    in_private_netns(
        "pci_segment_spellings_wait_for_the_device_of_their_segment",
        || all_wait_for(&recording_up_to("ch-pci-segments", 5), &cases),
    );
}

#[test]
fn a_bdf_given_to_wait_is_refused_saying_what_it_is() {
    for bdf in ["0000:01:00.0", "01:00.0"] {
        let ran = pciplug(["wait", bdf, "--timeout", "0s"]).run();
        let stderr = &ran.stderr;
        assert_eq!(ran.code(), 2, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "invalid PCI path {bdf:?}: this is a bus address (BDF), not a PCI path"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("`pciplug list`"), "{stderr}");
    }
}
