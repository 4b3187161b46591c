//! `examples/agent.rs`, the device steps of a Kata-style agent, sync and async, answered by
//! real recordings the kernel delivers in a private namespace (block, SCSI LUN, NIC, a
//! function bound to vfio-pci), each guest's on an empty fake sysfs.

mod common;

#[path = "../examples/agent.rs"]
#[allow(dead_code)] // its `main`: the test calls `run` as `main` does
mod agent;

use std::thread;

use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, recording_up_to, wait_until_listening};

/// Runs the agent (`--async` or not) on requests, injects the recording up to `last` once it
/// listens, and checks its answers.
fn serve(is_async: bool, recording: &str, last: u32, requests: &[&str], want: &[&str]) {
    let sysfs = FakeSysfs::new();
    let mut args: Vec<String> = Vec::new();
    if is_async {
        args.push("--async".into());
    }
    args.extend(["--sysfs".into(), sysfs.root().display().to_string()]);
    args.extend(requests.iter().map(|r| r.to_string()));
    let agent = thread::spawn(move || agent::run(args.into_iter()));
    // Only this agent's monitor listens in this process now (the last one's was dropped).
    wait_until_listening(std::process::id());
    inject_all(&recording_up_to(recording, last));
    let answers = agent.join().unwrap().unwrap();
    let answers: Vec<String> = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|e| panic!("{recording}: {e}")))
        .collect();
    assert_eq!(answers, want, "{recording}, async: {is_async}");
}

/// Every step, sync and async, on the guest that has its device.
fn serve_every_step(is_async: bool) {
    // q35-acpi-hotplug: vdb at 03/00/01 (step 2), eth0 at 04/00 (step 4).
    serve(
        is_async,
        "q35-acpi-hotplug",
        4,
        &["block:03/00/01", "net:04/00"],
        &["block 03/00/01 /dev/vdb", "net 04/00 eth0"],
    );
    // q35-scsi-multi-lun: LUNs 0:0 and 0:1 on the HBA at 02/00 (steps 2, 3).
    serve(
        is_async,
        "q35-scsi-multi-lun",
        3,
        &["scsi:02/00:0:1", "scsi:02/00:0:0"],
        &["scsi 02/00 0:1 /dev/sdb", "scsi 02/00 0:0 /dev/sda"],
    );
    // q35-vfio-bind: edu at 03/00 bound to vfio-pci in step 4 (unbound in step 3).
    serve(
        is_async,
        "q35-vfio-bind",
        4,
        &["vfio:03/00"],
        &["vfio 03/00 0000:02:00.0"],
    );
}

#[test]
fn the_agent_serves_block_scsi_net_and_vfio_steps_with_sync_waits() {
    in_private_netns(
        "the_agent_serves_block_scsi_net_and_vfio_steps_with_sync_waits",
        || serve_every_step(false),
    );
}

#[test]
fn the_agent_serves_block_scsi_net_and_vfio_steps_with_async_waits() {
    in_private_netns(
        "the_agent_serves_block_scsi_net_and_vfio_steps_with_async_waits",
        || serve_every_step(true),
    );
}

#[test]
fn the_agent_refuses_a_bad_request() {
    let err = agent::run(["net:zz".to_string()].into_iter()).unwrap_err();
    assert!(err.starts_with("bad request \"net:zz\": "), "{err}");
    let err = agent::run(["scsi:02/00".to_string()].into_iter()).unwrap_err();
    assert_eq!(err, "bad request \"scsi:02/00\": no T:L");
}
