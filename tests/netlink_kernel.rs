//! The uevent socket against a real kernel: injected uevents, forged senders, overflow,
//! truncation and stopping, each in a private user + network namespace.
//!
//! Every test re-executes this test binary under `unshare --user --map-root-user --net`
//! (util-linux), filtered to itself, and checks the child's result. In that namespace the
//! process has `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` over the network namespace, which is what
//! injecting and forging need, and because the namespace is owned by a new user namespace the
//! kernel does not send it the machine's own uevents: the tests see only what they inject.
//! Nothing is sent to the machine's udevd, and no device is touched. Where `unshare` is
//! missing or the kernel refuses to create the namespaces, the test says why and passes, or,
//! with `PCIPLUG_REQUIRE_KERNEL=1` (as `.ci/run` sets) or `CI=true`, fails.

mod common;
use common::netns::{in_private_netns, without_seqnum};
use common::{Fixture, field};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pciplug::netlink::{
    Batch, Envelope, Received, RecvBatch, RecvBufferOption, SocketOptions, UeventSocket,
};
use pciplug::testing::Injector;
use pciplug::{Action, Datagram};

/// A receive buffer larger than any uevent (the kernel's limit is 2048 bytes).
const BUF: usize = 8192;

/// Every datagram of recording `name`, in order.
fn fixture(name: &str) -> Vec<Vec<u8>> {
    Fixture::load(name)
        .recording
        .records
        .into_iter()
        .map(|r| r.datagram)
        .collect()
}

/// The recorded hot-add of the virtio-blk PCI function 0000:01:00.0 (step 1).
fn pci_add() -> Vec<u8> {
    let f = Fixture::load("q35-acpi-hotplug");
    let add = f
        .with_field("DEVPATH", "/devices/pci0000:00/0000:00:02.0/0000:01:00.0")
        .find(|r| field(&r.datagram, "ACTION").as_deref() == Some("add"))
        .expect("the PCI add of 0000:01:00.0 in the fixture");
    without_seqnum(&add.datagram)
}

/// A made-up `change` uevent for `devpath`, without `SEQNUM`.
fn synthetic(devpath: &str) -> Vec<u8> {
    format!("change@{devpath}\0ACTION=change\0DEVPATH={devpath}\0SUBSYSTEM=pciplug-test\0")
        .into_bytes()
}

fn machine_seqnum() -> u64 {
    std::fs::read_to_string("/sys/kernel/uevent_seqnum")
        .expect("reading /sys/kernel/uevent_seqnum")
        .trim()
        .parse()
        .expect("a number in /sys/kernel/uevent_seqnum")
}

/// Receives with a generous bound: the kernel queues an injected uevent before `inject` returns.
fn recv(socket: &UeventSocket, buf: &mut [u8]) -> Received {
    socket
        .recv_timeout(buf, Duration::from_secs(10))
        .expect("receiving from the uevent socket")
}

/// Nothing more is queued.
fn assert_empty(socket: &UeventSocket) {
    let mut buf = vec![0u8; BUF];
    assert_eq!(
        socket.recv_timeout(&mut buf, Duration::ZERO).unwrap(),
        Received::TimedOut
    );
}

#[test]
fn injected_uevent_arrives_from_the_kernel_with_a_seqnum() {
    in_private_netns(
        "injected_uevent_arrives_from_the_kernel_with_a_seqnum",
        || {
            let socket = UeventSocket::open().expect("opening the uevent socket");
            println!("default options: {:?}", socket.recv_buffer());
            let payload = pci_add();
            let before = machine_seqnum();
            Injector::new()
                .unwrap()
                .inject(&payload)
                .expect("injecting");
            let after = machine_seqnum();

            let mut buf = vec![0u8; BUF];
            let Received::Datagram(envelope) = recv(&socket, &mut buf) else {
                panic!("no datagram");
            };
            assert!(envelope.is_from_kernel(), "{envelope:?}");
            assert_eq!(envelope.groups, 1);
            assert!(!envelope.truncated);
            let bytes = envelope.bytes(&buf);
            // The kernel appended exactly one field, SEQNUM=<n>\0, from the machine-wide counter.
            let (head, seqnum) = bytes.split_at(payload.len());
            assert_eq!(head, payload.as_slice());
            let seqnum = std::str::from_utf8(seqnum).unwrap();
            println!("kernel appended {seqnum:?}; /sys/kernel/uevent_seqnum {before} -> {after}");
            let n: u64 = seqnum
                .strip_prefix("SEQNUM=")
                .and_then(|s| s.strip_suffix('\0'))
                .expect("SEQNUM=<n>\\0")
                .parse()
                .unwrap();
            assert!(before < n && n <= after, "{before} < {n} <= {after}");

            let Ok(Datagram::Relevant(uevent)) = Datagram::parse(bytes) else {
                panic!("parse rejected {:?}", String::from_utf8_lossy(bytes));
            };
            assert_eq!(uevent.action(), Action::Add);
            assert_eq!(uevent.subsystem(), "pci");
            assert_eq!(uevent.seqnum(), Some(n));
            assert_empty(&socket);
        },
    );
}

#[test]
fn a_forged_broadcast_carries_the_forgers_port() {
    in_private_netns("a_forged_broadcast_carries_the_forgers_port", || {
        use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_KOBJECT_UEVENT};
        let socket = UeventSocket::open().unwrap();
        // A process with CAP_NET_ADMIN over the namespace sends a complete uevent to group 1.
        let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
        let port = forger.bind_auto().unwrap().port_number();
        let mut forged = pci_add();
        forged.extend_from_slice(b"SEQNUM=1\0");
        forger
            .send_to(&forged, &SocketAddr::new(0, 1), 0)
            .expect("sending to group 1");

        let mut buf = vec![0u8; BUF];
        let Received::Datagram(envelope) = recv(&socket, &mut buf) else {
            panic!("no datagram");
        };
        println!("forged datagram: {envelope:?}, forger's port {port}");
        assert_eq!(envelope.sender_port, port);
        assert!(!envelope.is_from_kernel());
        // The bytes alone would pass: only the sender gives it away.
        assert_eq!(envelope.bytes(&buf), forged.as_slice());
        assert!(matches!(
            Datagram::parse(envelope.bytes(&buf)),
            Ok(Datagram::Relevant(_))
        ));
        assert_empty(&socket);
    });
}

/// Injects 64 datagrams of q35-acpi-hotplug (cycled, without their SEQNUM), far more than
/// the smallest receive buffer holds; returns how many.
fn flood_with_the_recording(injector: &Injector) -> usize {
    let events: Vec<Vec<u8>> = fixture("q35-acpi-hotplug")
        .iter()
        .map(|d| without_seqnum(d))
        .collect();
    let flood = 64;
    for e in events.iter().cycle().take(flood) {
        injector.inject(e).expect("injecting");
    }
    flood
}

#[test]
fn a_flood_into_a_tiny_buffer_is_reported_as_overflow() {
    in_private_netns("a_flood_into_a_tiny_buffer_is_reported_as_overflow", || {
        // 0 asks for the kernel's minimum.
        let socket = SocketOptions::new().recv_buffer(0).open().unwrap();
        let granted = socket.recv_buffer();
        println!("tiny buffer: {granted:?}");
        // Root in a user namespace is not root in the initial one: SO_RCVBUFFORCE is refused.
        assert_eq!(granted.option, RecvBufferOption::RcvBuf);

        let injector = Injector::new().unwrap();
        let flood = flood_with_the_recording(&injector);

        let mut buf = vec![0u8; BUF];
        // The overflow is reported first, before the datagrams queued ahead of it.
        assert_eq!(recv(&socket, &mut buf), Received::Overflow);
        // Until the queue is empty the kernel drops everything new, even with room for it.
        let lost = synthetic("/devices/virtual/pciplug-test/lost");
        injector.inject(&lost).unwrap();
        let mut queued = 0;
        loop {
            match socket.recv_timeout(&mut buf, Duration::ZERO).unwrap() {
                Received::Datagram(e) => {
                    assert!(e.is_from_kernel());
                    assert!(!e.bytes(&buf).starts_with(&lost), "sent while congested");
                    queued += 1;
                }
                Received::TimedOut => break,
                other => panic!("unexpected {other:?} while draining"),
            }
        }
        println!(
            "{flood} injected, {queued} queued before the overflow, the one injected after it lost"
        );
        assert!(queued > 0 && queued < flood, "{queued} of {flood}");

        // Drained: the socket receives again, and reports no new overflow.
        let found = synthetic("/devices/virtual/pciplug-test/found");
        injector.inject(&found).unwrap();
        let Received::Datagram(e) = recv(&socket, &mut buf) else {
            panic!("no datagram after draining");
        };
        assert!(e.bytes(&buf).starts_with(&found));
        assert_empty(&socket);
    });
}

#[test]
fn a_datagram_longer_than_the_buffer_is_reported_truncated() {
    in_private_netns(
        "a_datagram_longer_than_the_buffer_is_reported_truncated",
        || {
            let socket = UeventSocket::open().unwrap();
            let injector = Injector::new().unwrap();
            let payload = pci_add();
            injector.inject(&payload).unwrap();

            let mut small = [0u8; 32];
            let Received::Datagram(e) = recv(&socket, &mut small) else {
                panic!("no datagram");
            };
            println!("truncated: {e:?}");
            assert!(e.truncated);
            assert!(e.len > payload.len(), "full length, SEQNUM included");
            assert_eq!(e.bytes(&small), &payload[..32]);
            // The tail is gone, not left for the next read.
            assert_empty(&socket);

            // An exact fit is not truncated.
            injector.inject(&payload).unwrap();
            let mut big = vec![0u8; BUF];
            let Received::Datagram(full) = recv(&socket, &mut big) else {
                panic!("no datagram");
            };
            injector.inject(&payload).unwrap();
            let mut exact = vec![0u8; full.len];
            let Received::Datagram(e) = recv(&socket, &mut exact) else {
                panic!("no datagram");
            };
            assert!(!e.truncated);
            assert_eq!(e.len, exact.len());
        },
    );
}

#[test]
fn a_blocked_receive_returns_when_stopped() {
    in_private_netns("a_blocked_receive_returns_when_stopped", || {
        let socket = UeventSocket::open().unwrap();
        let stopper = socket.stopper();
        let (done, finished) = mpsc::channel();
        let receiver = thread::spawn(move || {
            let mut buf = vec![0u8; BUF];
            // Nothing is ever sent in this namespace: only the stop can end this receive.
            let r = socket.recv(&mut buf).unwrap();
            done.send(r).unwrap();
            socket
        });
        // Give the receiver time to block (not needed for correctness: a stop is permanent).
        thread::sleep(Duration::from_millis(50));
        stopper.stop();
        let r = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the stopped receive returned");
        assert_eq!(r, Received::Stopped);
        let socket = receiver.join().unwrap();

        // A stop wins over queued datagrams, and lasts.
        Injector::new().unwrap().inject(&pci_add()).unwrap();
        let mut buf = vec![0u8; BUF];
        assert_eq!(socket.recv(&mut buf).unwrap(), Received::Stopped);
    });
}

#[test]
fn a_receive_with_a_timeout_times_out_on_silence() {
    in_private_netns("a_receive_with_a_timeout_times_out_on_silence", || {
        let socket = UeventSocket::open().unwrap();
        let mut buf = vec![0u8; BUF];
        assert_eq!(
            socket
                .recv_timeout(&mut buf, Duration::from_millis(20))
                .unwrap(),
            Received::TimedOut
        );
        assert_eq!(
            socket.recv_timeout(&mut buf, Duration::ZERO).unwrap(),
            Received::TimedOut
        );
    });
}

#[test]
fn the_kernel_refuses_oversized_uevents() {
    in_private_netns("the_kernel_refuses_oversized_uevents", || {
        let socket = UeventSocket::open().unwrap();
        let injector = Injector::new().unwrap();
        // 16 (netlink header) + payload + "SEQNUM=<n>\0" must fit in 2048 bytes.
        let mut payload = b"change@/devices/virtual/x\0ACTION=change\0X=".to_vec();
        payload.resize(2048 - 16, b'x');
        payload.push(0);
        let err = injector.inject(&payload).unwrap_err();
        println!("oversized: {err}");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_empty(&socket);
    });
}

/// Every datagram queued, received in batches of `batch`'s capacity until none is left, as
/// `(envelope, bytes)`; each batch at most the capacity.
fn drain_batches(socket: &UeventSocket, batch: &mut RecvBatch) -> Vec<(Envelope, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        match socket.try_recv_batch(batch).unwrap() {
            Batch::Datagrams(n) => {
                assert!(n >= 1 && n <= batch.capacity(), "{n} in a batch");
                assert_eq!(batch.len(), n);
                out.extend(batch.iter().map(|(e, b)| (e, b.to_vec())));
            }
            Batch::TimedOut => return out,
            other => panic!("unexpected {other:?} while draining"),
        }
    }
}

#[test]
fn a_batched_receive_drains_what_is_queued_in_order() {
    in_private_netns("a_batched_receive_drains_what_is_queued_in_order", || {
        let socket = UeventSocket::open().unwrap();
        let injector = Injector::new().unwrap();
        let mut batch = RecvBatch::new(8);
        assert_eq!(socket.try_recv_batch(&mut batch).unwrap(), Batch::TimedOut);
        let sent: Vec<Vec<u8>> = (0..20)
            .map(|i| synthetic(&format!("/devices/virtual/pciplug-test/b{i}")))
            .collect();
        for d in &sent {
            injector.inject(d).unwrap();
        }
        // All 20 are queued before the first read: the first batch is full.
        assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Datagrams(8));
        let mut got: Vec<(Envelope, Vec<u8>)> =
            batch.iter().map(|(e, b)| (e, b.to_vec())).collect();
        got.extend(drain_batches(&socket, &mut batch));
        assert_eq!(got.len(), sent.len());
        let mut last_seqnum = 0;
        for ((e, bytes), want) in got.iter().zip(&sent) {
            assert!(e.is_from_kernel() && e.groups == 1 && !e.truncated, "{e:?}");
            assert_eq!(e.len, bytes.len());
            assert!(bytes.starts_with(want), "in the order sent");
            let seqnum: u64 = field(bytes, "SEQNUM").unwrap().parse().unwrap();
            assert!(seqnum > last_seqnum);
            last_seqnum = seqnum;
        }
        assert!(
            batch.is_empty(),
            "a receive that found nothing empties the batch"
        );
        assert_empty(&socket);
        // A blocked batched receive on silence times out.
        assert_eq!(
            socket
                .recv_batch_timeout(&mut batch, Duration::from_millis(20))
                .unwrap(),
            Batch::TimedOut
        );
    });
}

#[test]
fn a_batched_receive_keeps_truncation_and_the_sender() {
    in_private_netns("a_batched_receive_keeps_truncation_and_the_sender", || {
        use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_KOBJECT_UEVENT};
        let socket = UeventSocket::open().unwrap();
        let payload = pci_add();
        Injector::new().unwrap().inject(&payload).unwrap();
        let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
        let port = forger.bind_auto().unwrap().port_number();
        let short = synthetic("/devices/virtual/pciplug-test/forged");
        forger.send_to(&short, &SocketAddr::new(0, 1), 0).unwrap();

        let mut batch = RecvBatch::with_datagram_len(4, 32);
        assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Datagrams(2));
        let (e, bytes) = batch.get(0).unwrap();
        assert!(e.truncated && e.is_from_kernel(), "{e:?}");
        assert!(e.len > payload.len(), "full length, SEQNUM included");
        assert_eq!(bytes, &payload[..32]);
        let (e, bytes) = batch.get(1).unwrap();
        assert_eq!(e.sender_port, port);
        assert!(!e.is_from_kernel());
        assert_eq!(bytes.len(), 32);
        assert!(e.truncated && e.len == short.len());
        assert!(batch.get(2).is_none());
        assert_empty(&socket);
    });
}

#[test]
fn a_flood_into_a_tiny_buffer_is_reported_as_overflow_in_a_batch() {
    in_private_netns(
        "a_flood_into_a_tiny_buffer_is_reported_as_overflow_in_a_batch",
        || {
            let socket = SocketOptions::new().recv_buffer(0).open().unwrap();
            let injector = Injector::new().unwrap();
            let flood = flood_with_the_recording(&injector);
            let mut batch = RecvBatch::new(4);
            // The overflow first, as with single receives, then what was queued before it.
            assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Overflow);
            assert!(batch.is_empty());
            let queued = drain_batches(&socket, &mut batch);
            assert!(
                !queued.is_empty() && queued.len() < flood,
                "{} of {flood}",
                queued.len()
            );
            assert!(queued.iter().all(|(e, _)| e.is_from_kernel()));
            let found = synthetic("/devices/virtual/pciplug-test/found");
            injector.inject(&found).unwrap();
            assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Datagrams(1));
            assert!(batch.get(0).unwrap().1.starts_with(&found));
        },
    );
}

#[test]
fn a_stop_wins_over_a_flood_of_batches() {
    in_private_netns("a_stop_wins_over_a_flood_of_batches", || {
        let socket = UeventSocket::open().unwrap();
        let stopper = socket.stopper();
        let (done, finished) = mpsc::channel();
        let receiver = thread::spawn(move || {
            let mut batch = RecvBatch::new(4);
            // Nothing is sent yet: only the stop can end this receive.
            done.send(socket.recv_batch(&mut batch).unwrap()).unwrap();
            (socket, batch)
        });
        thread::sleep(Duration::from_millis(50));
        stopper.stop();
        let r = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the stopped receive returned");
        assert_eq!(r, Batch::Stopped);
        let (socket, mut batch) = receiver.join().unwrap();
        let injector = Injector::new().unwrap();
        for i in 0..16 {
            injector
                .inject(&synthetic(&format!("/devices/virtual/pciplug-test/s{i}")))
                .unwrap();
        }
        // Sixteen queued, and every batched receive says stopped.
        assert_eq!(socket.try_recv_batch(&mut batch).unwrap(), Batch::Stopped);
        assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Stopped);
        assert!(batch.is_empty());
    });
}
