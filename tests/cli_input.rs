//! Bad command lines and unreadable inputs: exit 2 for usage errors, 1 for runtime ones,
//! each with a message that says what was wrong; never a panic (exit 101), not even with
//! stdout or stderr closed.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::fake_sysfs::q35;
use common::{fixture_path, pciplug};

#[track_caller]
fn expect(args: &[&[u8]], code: i32, message: &str) {
    let args: Vec<&OsStr> = args.iter().map(|a| OsStr::from_bytes(a)).collect();
    let ran = pciplug(&args).run();
    let (got, out, err) = (ran.code(), &ran.stdout, &ran.stderr);
    assert_eq!(
        got, code,
        "{args:?}: exit {got}\nstdout: {out}\nstderr: {err}"
    );
    assert!(err.contains(message), "{args:?}: {err:?} lacks {message:?}");
    if code != 0 {
        assert!(out.is_empty(), "{args:?}: data on stdout: {out}");
    }
}

#[test]
fn bad_arguments_are_usage_errors_that_say_what_was_wrong() {
    let cases: &[(&[&[u8]], &str)] = &[
        (&[], "Usage: pciplug <COMMAND>"),
        (&[b"frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&[b"list", b"--frob"], "unexpected argument '--frob'"),
        (
            &[b"list", b"--sysfs"],
            "a value is required for '--sysfs <DIR>'",
        ),
        (
            &[b"wait"],
            "the following required arguments were not provided",
        ),
        (
            &[b"wait", b"zz"],
            r#"invalid PCI path "zz": hop 1 "zz" is not a two-digit hex slot"#,
        ),
        (
            &[b"wait", b"02/zz"],
            r#"invalid value '02/zz' for '[PATH]': invalid PCI path "02/zz": hop 2 "zz" is not a two-digit hex slot"#,
        ),
        (&[b"wait", b"02/20"], r#"hop 2 "20" has a slot above 1f"#),
        (
            &[b"wait", b"02/00.8"],
            "has a function that is not one digit 0-7",
        ),
        (
            &[b"wait", b"02//00"],
            r#"hop 2 "" is not a two-digit hex slot"#,
        ),
        (&[b"wait", b""], r#"invalid PCI path "": empty"#),
        (&[b"wait", b"pci0000/02"], "is not of the form pciDDDD:BB"),
        (
            &[
                b"wait",
                b"00/00/00/00/00/00/00/00/00/00/00/00/00/00/00/00/00",
            ],
            "more than 16 hops",
        ),
        (&[b"wait", b"\xff\xfe"], "invalid UTF-8"),
        (
            &[b"wait", b"02/00", b"--timeout", b"3parsecs"],
            r#"invalid value '3parsecs' for '--timeout <TIMEOUT>': invalid duration "3parsecs""#,
        ),
        (
            &[b"wait", b"02/00", b"--timeout=-1s"],
            r#"invalid duration "-1s""#,
        ),
        (
            &[b"wait", b"02/00", b"--timeout", b""],
            r#"invalid duration """#,
        ),
        (
            &[b"wait", b"02/00", b"--timeout", b"3"],
            r#"invalid duration "3""#,
        ),
        (
            &[b"wait", b"02/00", b"--timeout", b"99999999999999999999999s"],
            "invalid duration",
        ),
        (
            &[b"wait", b"02/00", b"--kind", b"disk"],
            "invalid value 'disk' for '--kind",
        ),
        (
            &[b"wait", b"02/00", b"--removed=yes"],
            "unexpected value 'yes' for '--removed'",
        ),
        (
            &[b"wait", b"02/00", b"--scsi", b"0:x"],
            r#"invalid value '0:x' for '--scsi <T:L>': invalid SCSI unit "0:x": LUN "x" is not a decimal number"#,
        ),
        (
            &[b"wait", b"--scsi", b"0:0:0:1"],
            "the host number H is the guest's own",
        ),
        (
            &[b"wait", b"06/00", b"--nsid", b"0"],
            r#"invalid NVMe namespace id "0": namespace ids run from 1 to 4294967294"#,
        ),
        (
            &[b"wait", b"02/00", b"--scsi", b"0:1", b"--nsid", b"1"],
            "'--scsi <T:L>' cannot be used with '--nsid <N>'",
        ),
        (
            &[b"wait", b"02/00", b"--scan"],
            "the following required arguments were not provided:\n  --scsi <T:L>",
        ),
        (
            &[b"wait", b"02/00", b"--scsi", b"0:1", b"--kind", b"net"],
            "--scsi and --nsid address a disk: they go with --kind block only",
        ),
        (
            &[b"wait"],
            "the following required arguments were not provided:\n  <PATH>",
        ),
        (
            &[b"watch", b"--stats=1"],
            "unexpected value '1' for '--stats'",
        ),
        (
            &[b"replay"],
            "the following required arguments were not provided",
        ),
        (
            &[b"replay", b"--bogus", b"x"],
            "unexpected argument '--bogus'",
        ),
    ];
    for (args, message) in cases {
        expect(args, 2, message);
    }
    expect(&[b"--help"], 0, "");
    expect(&[b"--version"], 0, "");
}

#[test]
fn unreadable_inputs_are_runtime_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let not_utf8 = dir.path().join("binary.uevents");
    std::fs::write(&not_utf8, b"0 61\xff\n").unwrap();
    let bad_line = dir.path().join("bad.uevents");
    std::fs::write(&bad_line, "# ok\n0 6161\n0 6g\n").unwrap();
    let huge_pid = dir.path().join("pid.uevents");
    std::fs::write(&huge_pid, "99999999999 6100\n").unwrap();
    let garbage = dir.path().join("garbage.uevents");
    std::fs::write(&garbage, "# a comment\n0 6164644000\ngarbage\n").unwrap();
    let d = dir.path().as_os_str().as_bytes();
    let p = |f: &std::path::Path| f.as_os_str().as_bytes().to_vec();
    let (nu, bl, hp, gb) = (p(&not_utf8), p(&bad_line), p(&huge_pid), p(&garbage));
    let good = p(&fixture_path("q35-acpi-hotplug"));
    let cases: Vec<(Vec<&[u8]>, String)> = vec![
        (
            vec![b"replay", b"/nonexistent.uevents"],
            "reading recording /nonexistent.uevents: No such file or directory".into(),
        ),
        (
            vec![b"replay", d],
            format!("reading recording {}: Is a directory", dir.path().display()),
        ),
        (
            vec![b"replay", &nu],
            format!(
                "reading recording {}: stream did not contain valid UTF-8",
                not_utf8.display()
            ),
        ),
        (
            vec![b"replay", &bl],
            format!(
                "{}:3: datagram hex has a non-hex character 'g'",
                bad_line.display()
            ),
        ),
        (
            vec![b"replay", &hp],
            format!(
                "{}:1: sender port id \"99999999999\" is not a decimal u32",
                huge_pid.display()
            ),
        ),
        (
            vec![b"replay", &gb],
            format!(
                "{}:3: expected '<nl_pid> <hex>', found \"garbage\"",
                garbage.display()
            ),
        ),
        // A good file before a bad one: nothing is printed.
        (
            vec![b"replay", &good, b"/nonexistent"],
            "reading recording /nonexistent: No such file".into(),
        ),
        (
            vec![b"list", b"--sysfs", b"/nonexistent"],
            "reading /nonexistent/bus/pci/devices: No such file or directory".into(),
        ),
        (
            vec![b"wait", b"02/00", b"--sysfs", b"/nonexistent"],
            "reading /nonexistent/bus/pci/devices: No such file or directory".into(),
        ),
        (
            vec![b"watch", b"--sysfs", b"/nonexistent"],
            "reading /nonexistent/bus/pci/devices: No such file or directory".into(),
        ),
    ];
    for (args, message) in &cases {
        let ran = pciplug(args.iter().map(|a| OsStr::from_bytes(a))).run();
        let (code, out, err) = (ran.code(), &ran.stdout, &ran.stderr);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.starts_with("pciplug: ") && err.contains(message.as_str()),
            "{err:?} lacks {message:?}"
        );
        assert!(out.is_empty(), "{out}");
    }
}

/// A pipe whose reading end is closed: writing to it fails with EPIPE. The reading end was
/// `true`'s stdin, closed when it exited (`std::io::pipe` needs rustc 1.87).
fn closed_pipe() -> std::process::ChildStdin {
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let writer = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    writer
}

#[test]
fn a_closed_stdout_or_stderr_is_an_error_not_a_panic() {
    let sysfs = q35();
    let root = sysfs.root().as_os_str();
    let fixture = fixture_path("q35-acpi-hotplug");
    // Each prints data to a stdout nobody reads.
    let commands: [Vec<&OsStr>; 3] = [
        vec!["replay".as_ref(), fixture.as_os_str()],
        vec!["list".as_ref(), "--sysfs".as_ref(), root],
        // The disk is there at once (coldplug): the answer is ready to print.
        vec!["wait".as_ref(), "02/00".as_ref(), "--sysfs".as_ref(), root],
    ];
    for args in &commands {
        let ran = pciplug(args).stdout(closed_pipe()).run();
        let (code, err) = (ran.code(), &ran.stderr);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("writing to stdout: Broken pipe"),
            "{args:?}: {err}"
        );
    }
    // An error to report on a stderr nobody reads.
    let ran = pciplug(["list", "--sysfs", "/nonexistent"])
        .stderr(closed_pipe())
        .run();
    assert_eq!(ran.code(), 1);
    let ran = pciplug(["wait", "zz"]).stderr(closed_pipe()).run();
    assert_eq!(ran.code(), 2);
}
