#!/usr/bin/env python3
"""run.py - pciplug end-to-end tests: a real Debian kernel under QEMU (TCG), PCI
devices hot-plugged through QMP, and what the guest shows asserted step by step.

    run.py [--smoke] [options] [SCENARIO ...]     (default: all; names or issue numbers)
    run.py --list
    run.py --arch aarch64 [...]                   the arm64 `virt` scenarios (setup-arm64.sh)

Needs setup.sh (QEMU, kernel) and build-initramfs.sh (the initramfs) first; see
README.md. Only the python3 standard library is used.

Without --smoke every step is checked twice: against the guest's sysfs (the ground
truth, with busybox tools) and against what `pciplug wait` / `pciplug list --json`
print in the guest. --smoke does only the first, so the boot / QMP / channel / retry
machinery can be exercised without the CLI.

A guest that stops answering (a channel command or QMP command without a reply, QEMU
gone, no READY) is booted again from scratch once (TCG guests occasionally hang after
a hot-plug, see fixtures/real-hotplug/README.md, "Known issue"); a failed check is not
retried. Per scenario, OUT/<scenario>/ holds console.log (the kernel console),
channel.log (every command and its answer), qmp.log, qemu.log, result.json and, when a
step failed, dmesg.txt; a first attempt that hung is kept in OUT/<scenario>/attempt1/.
The exit status is 0 only when every scenario passed.
"""
import argparse
import json
import math
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_pci  # noqa: E402  (issue 13: adds scenarios_pci.py's scenarios to scenarios.SCENARIOS)
import scenarios as S  # noqa: E402
import scenarios_storage as ST  # noqa: E402  (issue 12 item 6: disks by their full address)
S.SCENARIOS += ST.SCENARIOS

REPO = os.path.dirname(os.path.dirname(HERE))
E2E_DIR = os.environ.get("PCIPLUG_E2E_DIR") or os.path.join(REPO, "target", "e2e")
KERNEL_CACHE = os.environ.get("PCIPLUG_E2E_KERNEL_CACHE") or os.path.join(E2E_DIR, "kernel")
ARM64_CACHE = os.environ.get("PCIPLUG_E2E_ARM64_CACHE") or "/var/cache/pciplug/e2e-arm64"

# Per guest architecture: the QEMU binary, the serial ports as the guest names them (the
# kernel console, then the command channel), where setup puts the kernel, and the defaults
# of --initrd and --out. A scenario runs only with the --arch of its `arch`.
ARCHES = {
    "x86_64": dict(qemu="qemu-system-x86_64", console="ttyS0", chan="ttyS1",
                   kernel_cache=KERNEL_CACHE, setup="tests/e2e/setup.sh",
                   initrd=os.path.join(E2E_DIR, "initramfs.cpio.gz"), out=os.path.join(E2E_DIR, "runs")),
    # QEMU >= 9.2 virt: a second -serial is a second PL011, ttyAMA1
    "aarch64": dict(qemu="qemu-system-aarch64", console="ttyAMA0", chan="ttyAMA1",
                    kernel_cache=os.path.join(ARM64_CACHE, "kernel"), setup="tests/e2e/setup-arm64.sh",
                    initrd=os.path.join(E2E_DIR, "arm64", "initramfs.cpio.gz"),
                    out=os.path.join(E2E_DIR, "runs-arm64")),
}

# How the harness calls the CLI in the guest; the one place to change if its flags move.
PCIPLUG_WAIT = "pciplug wait {path} --timeout {timeout}s"
PCIPLUG_WAIT_NET = "pciplug wait {path} --kind net --timeout {timeout}s"
PCIPLUG_WAIT_REMOVED = "pciplug wait {path} --removed --timeout {timeout}s"
PCIPLUG_LIST = "pciplug list --json"
# a wait by a disk's full address (`02/00 --scsi 0:1`, `--nsid 2`, `20/02/00`); the line of
# stderr that says why it failed starts with PCIPLUG_ERROR (the rest is the RUST_LOG log)
PCIPLUG_WAIT_ARGS = "pciplug wait {args} --timeout {timeout}s"
PCIPLUG_ERROR = "pciplug: "
# What pciplug warns when the kernel refuses its socket's subsystem filter (src/netlink/mod.rs).
FILTER_REFUSED = "refused the uevent socket's subsystem filter"

# A guest-side wait lasts at most this long per channel command (see Run.poll).
POLL_WINDOW_S = 2


class GuestHang(Exception):
    """The guest or QEMU stopped answering. The scenario is booted again once."""


class CheckFailed(Exception):
    """What the guest shows is not what the scenario expects. Not retried."""


def log(msg):
    print("e2e: " + msg, flush=True)


# ----------------------------------------------------------------------------------
# QMP
# ----------------------------------------------------------------------------------

class QMP:
    """A QMP client on a unix socket; a reader thread keeps replies and events."""

    def __init__(self, path, logf, timeout, proc):
        self.logf = logf
        self.events = []
        self.replies = {}
        self.closed = False
        self.cv = threading.Condition()
        self.next_id = 0
        self.sock = connect_unix(path, timeout, proc)
        self.rfile = self.sock.makefile("rb")
        greeting = json.loads(self.rfile.readline())
        self._log("<", greeting)
        self.version = greeting["QMP"]["version"]
        threading.Thread(target=self._reader, daemon=True).start()
        self.cmd("qmp_capabilities")

    def _log(self, direction, obj):
        self.logf.write("%.3f %s %s\n" % (time.time(), direction, json.dumps(obj)))
        self.logf.flush()

    def _reader(self):
        while True:
            try:
                line = self.rfile.readline()
            except OSError:  # QEMU went away
                break
            if not line:
                break
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            self._log("<", obj)
            with self.cv:
                if "event" in obj:
                    self.events.append(obj)
                elif "id" in obj:
                    self.replies[obj["id"]] = obj
                self.cv.notify_all()
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def cmd(self, execute, arguments=None, timeout=30):
        """Send a command; return its reply ({"return": ...} or {"error": ...})."""
        with self.cv:
            self.next_id += 1
            i = self.next_id
        msg = {"execute": execute, "id": i}
        if arguments is not None:
            msg["arguments"] = arguments
        self._log(">", msg)
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise GuestHang("QMP %s: %s" % (execute, e))
        deadline = time.monotonic() + timeout
        with self.cv:
            while i not in self.replies:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise GuestHang("QMP %s: no reply within %ss%s" % (
                        execute, timeout, " (QMP socket closed)" if self.closed else ""))
                self.cv.wait(left)
            return self.replies.pop(i)

    def ok(self, execute, arguments=None):
        """A command that must succeed."""
        r = self.cmd(execute, arguments)
        if "error" in r:
            raise CheckFailed("QMP %s %s failed: %s" % (execute, json.dumps(arguments), r["error"].get("desc")))
        return r["return"]

    def event_count(self):
        with self.cv:
            return len(self.events)

    def wait_event(self, name, device, since, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for ev in self.events[since:]:
                    if ev["event"] == name and ev.get("data", {}).get("device") == device:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cv.wait(left)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect_unix(path, timeout, proc=None):
    """Connect to a socket QEMU serves, waiting for it to appear (and QEMU to live)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if proc is not None and proc.poll() is not None:
                raise GuestHang("QEMU exited with status %s" % proc.returncode)
            if time.monotonic() > deadline:
                raise GuestHang("cannot connect to %s within %ss" % (path, timeout))
            time.sleep(0.05)


# ----------------------------------------------------------------------------------
# The command channel (guest ttyS1 or ttyAMA1, see guest-init.sh)
# ----------------------------------------------------------------------------------

class Channel:
    """Line commands to the guest's /init; answers framed by @@<token> BEGIN/END."""

    def __init__(self, sock, logf, token):
        self.sock = sock
        self.logf = logf
        self.mark = ("@@%s" % token).encode()
        self.buf = b""
        self.eof = False
        self.n = 0
        self.cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.logf.write(chunk.replace(b"\r", b""))
            self.logf.flush()
            with self.cv:
                self.buf += chunk
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def wait_for(self, regex, timeout, start=0):
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                m = r.search(self.buf, start)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cv.wait(left)

    def run(self, cmd, timeout=30):
        """Run a shell line in the guest; return (exit status, output)."""
        if "\n" in cmd:
            raise ValueError("one line per command")
        self.n += 1
        n = self.n
        with self.cv:
            start = len(self.buf)
        # "<n> <cmd> #<n>": the trailer (a comment to the guest's shell) lets the guest tell a
        # whole line from a fragment (see guest-init.sh).
        line = ("%d %s #%d\n" % (n, cmd, n)).encode()
        self.logf.write(b">>> " + line)
        self.logf.flush()
        # Either our answer, or an empty line's: when a background job exits while the
        # guest's PID 1 shell is blocked reading the channel, SIGCHLD interrupts that read
        # and the line being received is lost; the shell then runs an empty command
        # ("BEGIN " with no number). Our line never ran, so it is safe to send it again.
        answer = re.escape(self.mark) + rb" (?:END %d rc=(\d+)|BEGIN )\n" % n
        search_from = start
        for resend in range(4):
            try:
                self.sock.sendall(line)
            except OSError as e:
                raise GuestHang("guest channel: %s" % e)
            m = self.wait_for(answer, timeout, search_from)
            if not m:
                raise GuestHang("guest command %r got no answer within %ss%s" % (
                    cmd, timeout, " (channel closed: QEMU exited)" if self.eof else ""))
            if m.group(1) is not None:
                break
            search_from = m.end()
            self.logf.write(b">>> (the guest read an empty line; sending again) " + line)
            self.logf.flush()
        else:
            raise GuestHang("guest command %r was lost on the channel 4 times" % cmd)
        with self.cv:
            text = self.buf[start:m.start()]
        begin = self.mark + b" BEGIN %d\n" % n
        b = text.find(begin)
        out = text[b + len(begin):] if b >= 0 else text
        return int(m.group(1)), out.decode("utf-8", "replace").replace("\r", "")

    def records(self, out, kind):
        """Lines '@@<token> KIND fields...' of an output, as lists of fields."""
        p = self.mark.decode() + " " + kind + " "
        return [l[len(p):].split(" ") for l in out.splitlines() if l.startswith(p)]


# ----------------------------------------------------------------------------------
# The guest: one QEMU process
# ----------------------------------------------------------------------------------

class Guest:
    def __init__(self, sc, args, workdir, images):
        self.sc = sc
        self.args = args
        self.workdir = workdir
        self.token = secrets.token_hex(6)
        self.sockdir = tempfile.mkdtemp(prefix="pciplug-e2e-")  # sun_path is short: not under OUT
        chan_path = os.path.join(self.sockdir, "chan.sock")
        qmp_path = os.path.join(self.sockdir, "qmp.sock")
        ports = ARCHES[sc.arch]
        append = "console=%s panic=-1 pciplug_e2e.token=%s" % (ports["console"], self.token)
        if ports["chan"] != "ttyS1":
            append += " pciplug_e2e.chan=%s" % ports["chan"]
        if not args.verbose_kernel:
            append += " quiet"
        if sc.append:
            append += " " + sc.append
        argv = [args.qemu, "-machine", sc.machine] + (["-cpu", sc.cpu] if sc.cpu else []) + [
                "-accel", args.accel,
                "-m", str(args.mem), "-smp", str(args.smp),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", args.kernel, "-initrd", args.initrd, "-append", append,
                # wait=on: QEMU starts the guest only once the channel is connected
                "-chardev", "socket,id=chan,path=%s,server=on,wait=on" % chan_path,
                "-serial", "file:%s" % os.path.join(workdir, "console.log"),
                "-serial", "chardev:chan",
                "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
        argv += list(sc.topology)
        for c in sc.coldplug:
            dev = dict(c.device)
            if c.image:
                argv += ["-blockdev", "driver=raw,node-name=%s,file.driver=file,file.filename=%s"
                         % (c.image, images[c.image])]
                dev["drive"] = c.image
            if c.netdev:
                argv += ["-netdev", c.netdev]
            argv += ["-device", ",".join([dev.pop("driver")] + ["%s=%s" % kv for kv in dev.items()])]
        self.cmdline = " ".join(shlex.quote(a) for a in argv)
        self.qemu_log = open(os.path.join(workdir, "qemu.log"), "wb")
        self.qmp_log = open(os.path.join(workdir, "qmp.log"), "w")
        self.chan_log = open(os.path.join(workdir, "channel.log"), "wb")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.qemu_log,
                                     stderr=subprocess.STDOUT, cwd=workdir)
        self.qmp = None
        self.chan = None
        try:
            self.chan = Channel(connect_unix(chan_path, 30, self.proc), self.chan_log, self.token)
            self.qmp = QMP(qmp_path, self.qmp_log, 30, self.proc)
        except (GuestHang, OSError, ValueError) as e:
            self.stop()
            raise GuestHang("QEMU did not come up (%s); see qemu.log" % e)

    def wait_ready(self, timeout):
        m = self.chan.wait_for(re.escape(self.chan.mark) + rb" READY ([^\n]*)\n", timeout)
        if not m:
            raise GuestHang("no READY from the guest within %ss%s; see console.log" % (
                timeout, " (QEMU exited)" if self.chan.eof else ""))
        fields = dict(f.split("=", 1) for f in m.group(1).decode().split() if "=" in f)
        fields["boot_s"] = round(time.monotonic() - self.t_start, 2)
        return fields

    def run(self, cmd, timeout=30):
        return self.chan.run(cmd, timeout)

    def diagnose(self):
        """What QEMU says about a guest that stopped answering."""
        d = {"qemu_exit": self.proc.poll()}
        try:
            d["query-status"] = self.qmp.cmd("query-status", timeout=5).get("return")
            for hmp in ("info registers -a", "info pci"):
                d[hmp] = self.qmp.cmd("human-monitor-command", {"command-line": hmp}, timeout=10).get("return")
        except (GuestHang, AttributeError) as e:
            d["error"] = str(e)
        return d

    def stop(self):
        if self.proc.poll() is None and self.qmp is not None and not self.qmp.closed:
            try:
                self.qmp.cmd("quit", timeout=5)
            except GuestHang:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.qmp:
            self.qmp.close()
        if self.chan:
            self.chan.sock.close()
        for f in (self.qemu_log, self.qmp_log, self.chan_log):
            f.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)


# ----------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------

PCI_FN = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:([0-9a-f]{2})\.([0-7])$")
PCI_ROOT = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")


def pci_path_of(devpath):
    """The PCI path of a sysfs devpath: the slot of every PCI function on it, with `.F` for a
    function other than 0, after the root complex's name when that is not pci0000:00."""
    parts = devpath.split("/")
    hops = [m.group(1) + ("" if m.group(2) == "0" else "." + m.group(2))
            for m in (PCI_FN.match(c) for c in parts) if m]
    roots = [c for c in parts if PCI_ROOT.match(c) and c != "pci0000:00"]
    return "/".join(roots[:1] + hops) if hops else None


def check_scenario_data():
    """Catch typos in scenarios.py: every devpath must lie on its PCI path."""
    errs = []
    names = set()
    for sc in S.SCENARIOS:
        if sc.name in names:
            errs.append("%s: duplicate scenario name" % sc.name)
        names.add(sc.name)
        exps = []
        for st in sc.steps:
            if isinstance(st, ST.STEP_TYPES):
                exps += st.expects()
                continue
            exps += list(st.expect) if isinstance(st, S.Present) else [getattr(st, "expect", None) or st.gone]
        for e in exps:
            on_pci = e.controller if isinstance(e, S.Block) and e.controller else e.devpath
            if pci_path_of(on_pci) != e.path:
                errs.append("%s: %s: devpath %s is on PCI path %s" % (sc.name, e.path, on_pci, pci_path_of(on_pci)))
            listed = dict(e.listed) if isinstance(e, S.Block) else {}
            if listed.get("transport") == "scsi" and "/%s/block/" % listed.get("address") not in e.devpath:
                errs.append("%s: %s: SCSI address %s is not the one of %s" % (
                    sc.name, e.path, listed.get("address"), e.devpath))
            fns = [c for c in on_pci.split("/") if PCI_FN.match(c)]
            if fns[-1:] != [e.bdf]:
                errs.append("%s: %s: bdf %s is not the last PCI function of %s" % (sc.name, e.path, e.bdf, on_pci))
        for st in sc.steps:
            if isinstance(st, S.Plug) and st.image and st.image not in sc.images:
                errs.append("%s: image %s not declared" % (sc.name, st.image))
    return errs + ST.check_data()


class Run:
    """One attempt at one scenario: the guest, the step log, what was remembered."""

    def __init__(self, sc, args, guest, images):
        self.sc = sc
        self.args = args
        self.g = guest
        self.images = images  # image name -> file
        self.diskseq = {}     # label -> DISKSEQ remembered by a step (Block.remember_diskseq)
        self.jobs = 0
        self.pending = {}     # wait arguments -> (job id, command): waits a later step must see answer
        self.disks = {}       # kernel name -> (Disk, DISKSEQ) of the disks that appeared (scenarios_storage)

    # -- guest helpers --

    def guest(self, cmd, timeout=None):
        return self.g.run(cmd, timeout or self.args.answer_timeout)

    def block_info(self, name):
        """blockinfo in the guest -> dict, or None when there is no such block device."""
        rc, out = self.guest("blockinfo %s" % name)
        recs = self.g.chan.records(out, "BLOCK")
        if rc != 0 or not recs or len(recs[0]) < 6:
            return None
        r = recs[0]
        return {"name": r[0], "devpath": r[1], "devtype": r[2], "diskseq": r[3], "hidden": r[4],
                "dev_node": r[5] == "dev=yes"}

    def guest_devices(self):
        """A one-line picture of what the guest has, for failure messages."""
        _, out = self.guest("links /sys/class/block; links /sys/class/net")
        return "; ".join("%s -> %s" % (r[0], r[1]) for r in self.g.chan.records(out, "LINK")
                         if "/virtual/net/" not in r[1])

    def poll(self, command, timeout, finished):
        """Run command(window) in the guest, a wait of at most `window` s, until
        finished(rc, output) or `timeout` s have passed; return the last (rc, output).
        Short windows catch a guest that stops answering after --answer-timeout s
        instead of after the whole timeout."""
        deadline = time.monotonic() + timeout
        while True:
            window = max(1, min(POLL_WINDOW_S, math.ceil(deadline - time.monotonic())))
            rc, out = self.guest(command(window), window + self.args.answer_timeout)
            if finished(rc, out) or time.monotonic() >= deadline:
                return rc, out

    def sysfs_wait(self, state, path, timeout):
        rc, out = self.poll(lambda w: "sysfs_wait %s %s %d" % (state, path, w), timeout,
                            lambda rc, out: rc == 0)
        recs = self.g.chan.records(out, "SYSFS")
        return rc == 0, (recs[0][1] if recs and len(recs[0]) > 1 else None)

    def job(self, argv_line):
        """Start a command in the guest in the background; return its job id."""
        self.jobs += 1
        jid = "j%d" % self.jobs
        prefix = "env RUST_LOG=%s " % shlex.quote(self.args.guest_rust_log) if self.args.guest_rust_log else ""
        rc, out = self.guest("job_start %s %s%s" % (jid, prefix, argv_line))
        if rc != 0:
            raise CheckFailed("could not start %r in the guest: %s" % (argv_line, out.strip()))
        return jid

    def job_listening(self, jid, what, timeout=20):
        rc, out = self.poll(lambda w: "job_listening %s %d" % (jid, w), timeout, lambda rc, out: rc != 1)
        state = out.strip().splitlines()[-1] if out.strip() else "?"
        if rc != 0:
            res = self.job_result(jid, 1)
            raise CheckFailed("`%s` was to wait for an event, but before it: %s (stdout %r, stderr %r)" % (
                what, state, res["stdout"], tail(res["stderr"])))

    def job_result(self, jid, timeout):
        mark = self.g.chan.mark.decode()
        rc, out = self.poll(lambda w: "job_wait %s %d" % (jid, w), timeout,
                            lambda rc, out: rc != 0 or (mark + " JOB %s done" % jid) in out)
        head = self.g.chan.records(out, "JOB")
        if rc != 0 or not head:
            raise CheckFailed("job_wait %s: %s" % (jid, out.strip()))
        h = head[0]
        res = {"done": h[1] == "done"}
        for f in h[2:]:
            k, _, v = f.partition("=")
            res[k] = v
        try:
            body = out.split(mark + " STDOUT\n", 1)[1]
            res["stdout"], rest = body.split(mark + " STDERR\n", 1)
            res["stderr"] = rest.split(mark + " JOBEND", 1)[0]
        except (IndexError, ValueError):
            raise CheckFailed("job_wait %s: garbled answer %r" % (jid, out))
        # Every pciplug that listens attaches the socket's subsystem filter; the guest's kernel
        # must take it (pciplug warns, and receives everything, where it does not).
        if FILTER_REFUSED in res["stderr"]:
            raise CheckFailed("job %s: the guest's kernel refused the subsystem filter: %s" % (
                jid, tail(res["stderr"])))
        if res["done"]:
            res["rc"] = int(res["rc"])
            res["guest_s"] = round(float(res["t1"]) - float(res["t0"]), 2)
        return res

    def pciplug_list(self):
        jid = self.job(PCIPLUG_LIST)
        res = self.job_result(jid, 30)
        if not res["done"]:
            self.guest("job_kill %s" % jid)
            raise CheckFailed("`%s` did not end within 30s" % PCIPLUG_LIST)
        if res["rc"] != 0:
            raise CheckFailed("`%s` exited %d: %s" % (PCIPLUG_LIST, res["rc"], tail(res["stderr"])))
        entries = []
        for i, line in enumerate(res["stdout"].splitlines(), 1):
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise CheckFailed("`%s` line %d is not JSON (%s): %r" % (PCIPLUG_LIST, i, e, line))
            if not isinstance(obj, dict) or "path" not in obj:
                raise CheckFailed("`%s` line %d has no \"path\": %r" % (PCIPLUG_LIST, i, line))
            entries.append(obj)
        # One entry per PCI function: functions of one multifunction device (00:1f.0,
        # 00:1f.2, 00:1f.3 on q35) share a path, but never a bdf.
        bdfs = [e.get("bdf") for e in entries]
        if len(set(bdfs)) != len(bdfs):
            raise CheckFailed("`%s` lists a bdf twice: %s" % (PCIPLUG_LIST, bdfs))
        return entries

    # -- what a device must look like --

    def check_sysfs(self, e, timeout):
        """Ground truth: the device is in the guest's sysfs where the scenario says."""
        cls = "block" if isinstance(e, S.Block) else "net"
        ok, resolved = self.sysfs_wait("present", "/sys/class/%s/%s" % (cls, e.name), timeout)
        if not ok:
            raise CheckFailed("%s: /sys/class/%s/%s did not appear within %ds; the guest has: %s" % (
                e.path, cls, e.name, timeout, self.guest_devices()))
        if resolved != e.devpath:
            hint = ""
            if e.controller and resolved and resolved.startswith(e.controller + "/"):
                hint = (" (no NVMe multipath head: this QEMU's nvme device does not report a multi-controller"
                        " subsystem, as 7.2 does not and 10.0 does; setup.sh takes QEMU from backports)")
            raise CheckFailed("%s: %s is at %s, expected %s%s" % (e.path, e.name, resolved, e.devpath, hint))
        if isinstance(e, S.Net):
            return {"devpath": resolved}
        info = self.block_info(e.name)
        if not info or info["devtype"] != "disk" or not info["dev_node"] or info["hidden"] not in ("0", "-"):
            raise CheckFailed("%s: %s is not a visible disk with a /dev node: %s" % (e.path, e.name, info))
        for p in e.partitions:
            ok, resolved = self.sysfs_wait("present", "/sys/class/block/%s" % p, 10)
            pinfo = self.block_info(p)
            want = "%s/%s" % (e.devpath, p)
            if not ok or not pinfo or pinfo["devpath"] != want or pinfo["devtype"] != "partition":
                raise CheckFailed("%s: partition %s: expected a partition at %s, found %s" % (e.path, p, want, pinfo))
        if e.controller:
            # NVMe multipath: the head is under /devices/virtual; it belongs to the PCI
            # path through the subsystem's link to the controller.
            subsys = os.path.dirname(e.devpath)
            ctrl = os.path.basename(e.controller)
            _, out = self.guest("links /sys%s" % subsys)
            links = {r[0]: r[1] for r in self.g.chan.records(out, "LINK") if len(r) > 1}
            if links.get(ctrl) != e.controller:
                raise CheckFailed("%s: /sys%s/%s -> %s, expected %s" % (e.path, subsys, ctrl, links.get(ctrl), e.controller))
            h = self.block_info(e.hidden)
            want = "%s/%s" % (e.controller, e.hidden)
            if not h or h["devpath"] != want or h["hidden"] != "1" or h["dev_node"]:
                raise CheckFailed("%s: expected the hidden path disk %s at %s (hidden=1, no /dev node), found %s" % (
                    e.path, e.hidden, want, h))
        return info

    def check_list_entry(self, entries, e):
        """pciplug list --json has the device at its path; returns the disk's diskseq."""
        at_path = [x for x in entries if x["path"] == e.path]
        if [x.get("bdf") for x in at_path] != [e.bdf]:
            raise CheckFailed("`%s`: expected one entry for %s, with bdf %s; it has %s (all: %s)" % (
                PCIPLUG_LIST, e.path, e.bdf, [x.get("bdf") for x in at_path],
                ", ".join("%s=%s" % (x["path"], x.get("bdf")) for x in entries)))
        x = at_path[0]
        if isinstance(e, S.Net):
            names = [n.get("name") for n in x.get("net", [])]
            if e.name not in names:
                raise CheckFailed("`%s`: %s has net %s, expected %s" % (PCIPLUG_LIST, e.path, names, e.name))
            return None
        blocks = {b.get("name"): b for b in x.get("block", [])}
        want = {e.name: "disk"}
        want.update({p: "partition" for p in e.partitions})
        got = {n: b.get("devtype") for n, b in blocks.items()}
        if got != want:
            raise CheckFailed("`%s`: %s has block devices %s, expected %s" % (PCIPLUG_LIST, e.path, got, want))
        # a "devpath" is optional in the output; when it is there it must be the kernel's
        want_dp = {e.name: e.devpath}
        want_dp.update({p: "%s/%s" % (e.devpath, p) for p in e.partitions})
        for n, b in blocks.items():
            if "devpath" in b and b["devpath"] != want_dp[n]:
                raise CheckFailed("`%s`: %s has devpath %s, the kernel's is %s" % (PCIPLUG_LIST, n, b["devpath"], want_dp[n]))
        for k, v in e.listed:
            if str(blocks[e.name].get(k)) != v:
                raise CheckFailed("`%s`: %s has %s %r, expected %r" % (PCIPLUG_LIST, e.name, k, blocks[e.name].get(k), v))
        if e.hidden:
            everywhere = [b.get("name") for y in entries for b in y.get("block", [])]
            if e.hidden in everywhere:
                raise CheckFailed("`%s` reports the hidden NVMe path disk %s" % (PCIPLUG_LIST, e.hidden))
        return blocks[e.name].get("diskseq")

    def check_diskseq(self, e, diskseq):
        if diskseq in (None, "-", ""):
            raise CheckFailed("%s: %s has no DISKSEQ" % (e.path, e.name))
        diskseq = int(diskseq)
        if e.remember_diskseq:
            self.diskseq[e.remember_diskseq] = diskseq
        if e.diskseq_differs_from:
            old = self.diskseq[e.diskseq_differs_from]
            if diskseq == old:
                raise CheckFailed("%s: the new %s has DISKSEQ %d, the same as the disk it replaced" % (e.path, e.name, diskseq))
        return diskseq

    def expect_wait_output(self, e, res, what):
        want = "/dev/%s" % e.name if isinstance(e, S.Block) else e.name
        if not res["done"]:
            raise CheckFailed("`%s` has not returned" % what)
        if res["rc"] != 0 or res["stdout"].splitlines() != [want]:
            raise CheckFailed("`%s`: exit %d, stdout %r; expected exit 0 and %r. stderr: %s" % (
                what, res["rc"], res["stdout"], want + "\n", tail(res["stderr"])))

    # -- steps --

    def plug(self, st):
        e = st.expect
        q = self.g.qmp
        if st.image:
            q.ok("blockdev-add", {"driver": "raw", "node-name": st.image,
                                  "file": {"driver": "file", "filename": self.images[st.image]}})
        if st.netdev:
            q.ok("netdev_add", st.netdev)
        dev = dict(st.device)
        if st.image:
            dev["drive"] = st.image
        t = self.args.wait_timeout
        res = None
        if not self.args.smoke:
            what = (PCIPLUG_WAIT_NET if isinstance(e, S.Net) else PCIPLUG_WAIT).format(path=e.path, timeout=t)
            jid = self.job(what)
            self.job_listening(jid, what)
        t0 = time.monotonic()
        for b in st.before:
            q.ok("device_add", b)
        q.ok("device_add", dev)
        detail = {"device_add": dev}
        if st.before:
            detail["device_add_before"] = list(st.before)
        if not self.args.smoke:
            res = self.job_result(jid, t + 15)
            detail["pciplug_wait"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
            detail["pciplug_wait_host_s"] = round(time.monotonic() - t0, 2)
            try:
                self.expect_wait_output(e, res, what)
            except CheckFailed as err:  # say whether the kernel has the device or not
                try:
                    self.check_sysfs(e, 5)
                    note = "the guest's sysfs does have %s at %s" % (e.name, e.devpath)
                except CheckFailed as serr:
                    note = "the guest's sysfs does not have it either: %s" % serr
                raise CheckFailed("%s; %s" % (err, note))
        info = self.check_sysfs(e, t)
        detail["sysfs"] = info
        detail["appeared_host_s"] = round(time.monotonic() - t0, 2)
        if isinstance(e, S.Block):
            diskseq = info["diskseq"]
            if not self.args.smoke:
                listed = self.check_list_entry(self.pciplug_list(), e)
                if str(listed) != diskseq:
                    raise CheckFailed("`%s`: %s has diskseq %r, sysfs says %s" % (PCIPLUG_LIST, e.name, listed, diskseq))
            detail["diskseq"] = self.check_diskseq(e, diskseq)
        return detail

    def unplug(self, st):
        e = st.gone
        q = self.g.qmp
        t = self.args.wait_timeout
        if not self.args.smoke:
            what = PCIPLUG_WAIT_REMOVED.format(path=e.path, timeout=t)
            jid = self.job(what)
            # the device is still there, so the wait must still be waiting
            self.job_listening(jid, what)
        since = q.event_count()
        t0 = time.monotonic()
        q.ok("device_del", {"id": st.qemu_id})
        # wait for the guest to eject it, making sure between waits that the guest still answers
        deadline = time.monotonic() + t
        while q.wait_event("DEVICE_DELETED", st.qemu_id, since, POLL_WINDOW_S) is None:
            self.guest(":")
            if time.monotonic() >= deadline:
                break
        if q.wait_event("DEVICE_DELETED", st.qemu_id, since, 0) is None:
            raise CheckFailed("no DEVICE_DELETED for %s within %ds (the guest did not eject it)" % (st.qemu_id, t))
        detail = {"device_deleted_host_s": round(time.monotonic() - t0, 2)}
        if not self.args.smoke:
            res = self.job_result(jid, t + 15)
            detail["pciplug_wait_removed"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
            if not res["done"] or res["rc"] != 0:
                raise CheckFailed("`%s` after device_del: %s, stdout %r, stderr %s" % (
                    what, "exit %d" % res["rc"] if res["done"] else "still waiting", res["stdout"], tail(res["stderr"])))
        cls = "block" if isinstance(e, S.Block) else "net"
        ok, _ = self.sysfs_wait("absent", "/sys/class/%s/%s" % (cls, e.name), 10)
        if not ok:
            raise CheckFailed("%s: %s is still in sysfs after DEVICE_DELETED" % (e.path, e.name))
        if not self.args.smoke:
            left = [x for x in self.pciplug_list() if x["path"] == e.path or x.get("bdf") == e.bdf]
            if left:
                raise CheckFailed("`%s` still lists %s after its removal: %s" % (PCIPLUG_LIST, e.path, left))
        return detail

    def present(self, st):
        detail = {}
        for e in st.expect:
            info = self.check_sysfs(e, 10)
            if isinstance(e, S.Block):
                detail[e.path] = {"name": e.name, "diskseq": self.check_diskseq(e, info["diskseq"])}
        if not self.args.smoke:
            entries = self.pciplug_list()
            detail["list"] = entries
            for e in st.expect:
                listed = self.check_list_entry(entries, e)
                if isinstance(e, S.Block) and str(listed) != str(detail[e.path]["diskseq"]):
                    raise CheckFailed("`%s`: %s has diskseq %r, sysfs says %s" % (
                        PCIPLUG_LIST, e.name, listed, detail[e.path]["diskseq"]))
            # nothing is being plugged now, so only the coldplug scan can answer these
            t = self.args.present_timeout
            for e in st.expect:
                what = (PCIPLUG_WAIT_NET if isinstance(e, S.Net) else PCIPLUG_WAIT).format(path=e.path, timeout=t)
                res = self.job_result(self.job(what), t + 10)
                self.expect_wait_output(e, res, what)
                detail.setdefault("wait_guest_s", {})[e.path] = res["guest_s"]
        return detail

    # -- disks by their full address (scenarios_storage.py, issue 12 item 6) --

    def storage_step(self, st):
        detail = self.hotplug(st) if isinstance(st, ST.Hotplug) else self.check_present(st)
        if not self.args.smoke:
            detail["list"] = self.check_listed()
        return detail

    def address_job(self, w, timeout):
        """Start `pciplug wait <w.args>` in the guest; return (job id, its command line)."""
        what = PCIPLUG_WAIT_ARGS.format(args=w.args, timeout=timeout)
        return self.job(what), what

    def expect_address_wait(self, w, res, what):
        """The wait answered w.disk, or was refused naming w.refused, or found nothing."""
        if w.disk:
            try:
                return self.expect_wait_output(w.disk, res, what)
            except CheckFailed as err:  # say whether the kernel has the disk or not
                try:
                    self.check_sysfs(w.disk, 5)
                    note = "the guest's sysfs does have %s at %s" % (w.disk.name, w.disk.devpath)
                except CheckFailed as serr:
                    note = "the guest's sysfs does not have it either: %s" % serr
                raise CheckFailed("%s; %s" % (err, note))
        if not res["done"]:
            raise CheckFailed("`%s` has not returned" % what)
        said = " | ".join(l[len(PCIPLUG_ERROR):] for l in res["stderr"].splitlines() if l.startswith(PCIPLUG_ERROR))
        if w.refused:
            missing = [s for s in w.refused if s not in said]
            wrong = [s for s in w.not_named if s in said]
            if res["rc"] != 2 or res["stdout"] or missing or wrong:
                raise CheckFailed("`%s`: exit %d, stdout %r, error %r; expected exit 2, nothing on stdout and an "
                                  "error naming %s%s. stderr: %s" % (
                                      what, res["rc"], res["stdout"], said, ", ".join(w.refused),
                                      " but not %s" % ", ".join(w.not_named) if w.not_named else "",
                                      tail(res["stderr"])))
        elif res["rc"] != 1 or res["stdout"]:
            raise CheckFailed("`%s`: exit %d, stdout %r; no disk has this address, so it must time out (exit 1) "
                              "and print nothing. stderr: %s" % (what, res["rc"], res["stdout"], tail(res["stderr"])))

    def check_disk(self, e, timeout):
        """Ground truth for a Disk: where sysfs has it (check_sysfs), its NVMe namespace id, its
        DISKSEQ. Remembered for check_listed."""
        info = self.check_sysfs(e, timeout)
        if e.nsid is not None:
            rc, out = self.guest("cat /sys/class/block/%s/nsid" % e.name)
            if rc != 0 or out.strip() != str(e.nsid):
                raise CheckFailed("%s: %s has nsid %r in sysfs, expected %d" % (e.path, e.name, out.strip(), e.nsid))
        diskseq = self.check_diskseq(e, info["diskseq"])
        self.disks[e.name] = (e, diskseq)
        return {"devpath": info["devpath"], "diskseq": diskseq}

    def hotplug(self, st):
        q = self.g.qmp
        t = self.args.wait_timeout
        started = {}
        if not self.args.smoke:
            for w in st.waits + st.pending:
                if w.args in started:
                    continue
                if w.args in self.pending:  # started by an earlier step, still waiting
                    started[w.args] = self.pending.pop(w.args)
                    continue
                # a wait that must outlast this step gets the time of a few
                jid, what = self.address_job(w, t * 3 if w in st.pending else t)
                self.job_listening(jid, what)
                started[w.args] = (jid, what)
        for name, size in st.grow:
            os.truncate(self.images[name], size)
        t0 = time.monotonic()
        sent = []
        def files(v):  # "@image:NAME" -> that image's file, in nested arguments too
            if isinstance(v, dict):
                return {k: files(x) for k, x in v.items()}
            return self.images[v[len("@image:"):]] if isinstance(v, str) and v.startswith("@image:") else v
        for cmd, a in st.qmp:
            a = files(a)
            q.ok(cmd, a)
            sent.append([cmd, a])
        detail = {"qmp": sent}
        if not self.args.smoke:
            for w in st.waits:
                jid, what = started[w.args]
                res = self.job_result(jid, t * 3 + 15)
                detail.setdefault("waits", {})[w.args] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
                self.expect_address_wait(w, res, what)
        for e in st.appear:
            detail.setdefault("disks", {})[e.name] = self.check_disk(e, t)
        for p in st.sysfs:
            ok, _ = self.sysfs_wait("present", "/sys" + p, t)
            if not ok:
                raise CheckFailed("/sys%s did not appear within %ds; the guest has: %s" % (p, t, self.guest_devices()))
        detail["appeared_host_s"] = round(time.monotonic() - t0, 2)
        if st.settle_s:
            time.sleep(st.settle_s)  # give the guest time to show what it must not show
        for p in st.absent:
            rc, _ = self.guest("[ ! -e %s ]" % shlex.quote(p))
            if rc != 0:
                raise CheckFailed("%s exists %ds after `%s`, and must not" % (p, st.settle_s, st.what))
        if not self.args.smoke:
            for w in st.pending:
                jid, what = started[w.args]
                res = self.job_result(jid, 1)
                if res["done"]:
                    raise CheckFailed("`%s` returned before its disk was plugged: exit %d, stdout %r. stderr: %s" % (
                        what, res["rc"], res["stdout"], tail(res["stderr"])))
                self.pending[w.args] = (jid, what)
        return detail

    def check_present(self, st):
        detail = {"disks": {e.name: self.check_disk(e, 10) for e in st.present}}
        if not self.args.smoke:
            # all at once: those that must time out then do it side by side
            t = self.args.present_timeout
            jobs = [(w,) + self.address_job(w, t) for w in st.waits]
            for w, jid, what in jobs:
                res = self.job_result(jid, t + 10)
                detail.setdefault("waits", {})[w.args] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
                self.expect_address_wait(w, res, what)
        return detail

    def check_listed(self):
        """`list --json` has, at each PCI path where disks appeared, exactly those whole disks, with
        the devpath, DISKSEQ, SCSI address and NVMe namespace id sysfs has; never a hidden path disk."""
        entries = self.pciplug_list()
        by_path = {}
        for e, seq in self.disks.values():
            by_path.setdefault(e.path, []).append((e, seq))
        for path, disks in sorted(by_path.items()):
            at = [x for x in entries if x["path"] == path]
            want_bdf = sorted({e.bdf for e, _ in disks})
            if [x.get("bdf") for x in at] != want_bdf:
                raise CheckFailed("`%s`: expected one entry for %s, with bdf %s; it has %s (all: %s)" % (
                    PCIPLUG_LIST, path, want_bdf[0], [x.get("bdf") for x in at],
                    ", ".join("%s=%s" % (x["path"], x.get("bdf")) for x in entries)))
            whole = {b.get("name"): b for b in at[0].get("block", []) if b.get("devtype") == "disk"}
            if sorted(whole) != sorted(e.name for e, _ in disks):
                raise CheckFailed("`%s`: %s has the disks %s, expected %s" % (
                    PCIPLUG_LIST, path, sorted(whole), sorted(e.name for e, _ in disks)))
            for e, seq in disks:
                b = whole[e.name]
                want = {"devpath": e.devpath, "diskseq": seq}
                if e.scsi:
                    want.update(transport="scsi", address=e.scsi)
                if e.controller:
                    want["transport"] = "nvme-multipath"
                if e.nsid is not None:
                    want["nsid"] = e.nsid
                got = {k: b.get(k) for k in want}
                if got != want:
                    raise CheckFailed("`%s`: %s at %s is %s, sysfs says %s" % (PCIPLUG_LIST, e.name, path, got, want))
        hidden = {e.hidden for e, _ in self.disks.values() if e.hidden}
        shown = hidden & {b.get("name") for x in entries for b in x.get("block", [])}
        if shown:
            raise CheckFailed("`%s` reports the hidden NVMe path disks %s" % (PCIPLUG_LIST, sorted(shown)))
        return {p: sorted(e.name for e, _ in d) for p, d in by_path.items()}


def tail(text, n=6):
    lines = text.strip().splitlines()
    return " | ".join(lines[-n:]) if lines else "(empty)"


def describe(st):
    if isinstance(st, ST.STEP_TYPES):
        return st.what
    if isinstance(st, S.Plug):
        d = st.device
        return "plug %s%s %s on %s addr %s -> %s %s" % (
            "".join("%s %s + " % (b["driver"], b["id"]) for b in st.before),
            d["driver"], d["id"], d["bus"], d.get("addr"), st.expect.path, st.expect.name)
    if isinstance(st, S.Unplug):
        return "unplug %s (%s %s)" % (st.qemu_id, st.gone.path, st.gone.name)
    if isinstance(st, run_pci.STEPS):
        return run_pci.describe(st)
    return "present: " + ", ".join("%s %s" % (e.path, e.name) for e in st.expect)


# ----------------------------------------------------------------------------------
# Scenario runner
# ----------------------------------------------------------------------------------

def make_mbr(path, size_mib):
    """A DOS partition table with two Linux partitions (1-3 MiB, 3 MiB-end)."""
    total = size_mib * 2048
    mbr = bytearray(512)
    mbr[440:444] = (0x7063692e).to_bytes(4, "little")
    for i, (start, count) in enumerate([(2048, 4096), (6144, total - 6144)]):
        e = bytearray(16)
        e[1:4] = e[5:8] = b"\xfe\xff\xff"
        e[4] = 0x83
        e[8:12] = start.to_bytes(4, "little")
        e[12:16] = count.to_bytes(4, "little")
        mbr[446 + 16 * i:462 + 16 * i] = e
    mbr[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(mbr)


def attempt(sc, args, workdir, attempt_no):
    """Boot and run every step once; return the result dict."""
    os.makedirs(workdir, exist_ok=True)
    images = {}
    for name in sc.images:
        p = os.path.join(workdir, name + ".img")
        with open(p, "wb") as f:
            f.truncate(8 << 20)
        if name in sc.partitioned:
            make_mbr(p, 8)
        images[name] = p
    result = {"scenario": sc.name, "issue_item": sc.issue_item, "descr": sc.descr,
              "mode": "smoke" if args.smoke else "pciplug", "steps": []}
    try:
        g = Guest(sc, args, workdir, images)
    except GuestHang as e:
        for p in images.values():
            os.unlink(p)
        result.update(ok=False, hang=True, error=str(e), total_s=0.0)
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        return result
    result["cmdline"] = g.cmdline
    run = Run(sc, args, g, images)
    t0 = time.monotonic()
    try:
        ready = g.wait_ready(args.boot_timeout)
        v = g.qmp.version["qemu"]
        result["qemu"] = "%d.%d.%d %s" % (v["major"], v["minor"], v["micro"], g.qmp.version.get("package", ""))
        result["ready"] = ready
        log("%s: guest ready after %.1fs (kernel %s)" % (sc.name, ready["boot_s"], ready.get("kernel")))
        if not args.smoke and "pciplug" not in ready:
            raise CheckFailed("the initramfs has no /bin/pciplug: build it with build-initramfs.sh BINARY, or use --smoke")
        for i, st in enumerate(sc.steps, 1):
            ts = time.monotonic()
            srec = {"step": i, "what": describe(st)}
            result["steps"].append(srec)
            if args.simulate_hang == "%s:%d" % (sc.name, i) and attempt_no == 1:
                log("%s: --simulate-hang: pausing the guest's CPUs before step %d" % (sc.name, i))
                g.qmp.ok("stop")
            try:
                if isinstance(st, run_pci.STEPS):
                    srec.update(run_pci.run_step(run, st))
                elif isinstance(st, S.Plug):
                    srec.update(run.plug(st))
                elif isinstance(st, S.Unplug):
                    srec.update(run.unplug(st))
                elif isinstance(st, ST.STEP_TYPES):
                    srec.update(run.storage_step(st))
                else:
                    srec.update(run.present(st))
            finally:
                srec["duration_s"] = round(time.monotonic() - ts, 2)
            srec["ok"] = True
            log("%s: step %d ok in %.1fs: %s" % (sc.name, i, srec["duration_s"], srec["what"]))
        result["ok"] = True
    except CheckFailed as e:
        result["ok"] = False
        result["error"] = str(e)
        try:  # keep the kernel log and every job's output; a guest that does not answer now has hung
            for name, cmd in (("dmesg.txt", "dmesg"),
                              ("jobs.txt", "for f in /run/job/*.out /run/job/*.err /run/job/*.rc; do "
                                           "[ -e $f ] && { echo \"== $f\"; cat $f; }; done")):
                _, out = g.run(cmd, args.answer_timeout)
                with open(os.path.join(workdir, name), "w") as f:
                    f.write(out)
        except GuestHang as h:
            result["error"] += "; then the guest stopped answering: " + str(h)
            result["hang"] = True
            result["diagnosis"] = g.diagnose()
    except GuestHang as e:
        result["ok"] = False
        result["error"] = str(e)
        result["hang"] = True
        result["diagnosis"] = g.diagnose()
    except Exception as e:  # a bug in the harness: fail this scenario, go on with the next
        result["ok"] = False
        result["error"] = "harness error: %s: %s" % (type(e).__name__, e)
        result["traceback"] = traceback.format_exc()
        print(result["traceback"], file=sys.stderr)
    finally:
        result["steps_s"] = round(time.monotonic() - t0, 2)
        g.stop()
        result["total_s"] = round(time.monotonic() - g.t_start, 2)
        for p in images.values():
            os.unlink(p)
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
    return result


def run_scenario(sc, args):
    workdir = os.path.join(args.out, sc.name)
    shutil.rmtree(workdir, ignore_errors=True)
    tries = []
    for n in range(1, args.retries + 2):
        r = attempt(sc, args, workdir, n)
        tries.append(r)
        if r["ok"] or not r.get("hang") or n == args.retries + 1:
            break
        log("%s: the guest hung (%s); booting it again" % (sc.name, r["error"]))
        keep = os.path.join(workdir, "attempt%d" % n)
        os.makedirs(keep)
        for f in os.listdir(workdir):
            if not f.startswith("attempt"):
                shutil.move(os.path.join(workdir, f), keep)
    r = tries[-1]
    r["attempts"] = len(tries)
    r["total_s_all_attempts"] = round(sum(t["total_s"] for t in tries), 2)
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(r, f, indent=1)
    return r


def load_kernel_env(arch):
    env = {}
    path = os.path.join(ARCHES[arch]["kernel_cache"], "kernel.env")
    try:
        with open(path) as f:
            for line in f:
                k, eq, v = line.strip().partition("=")
                if eq and not k.startswith("#"):
                    env[k] = v
    except FileNotFoundError:
        pass
    return env


def select(names, arch):
    mine = [sc for sc in S.SCENARIOS if sc.arch == arch]
    if not names or names == ["all"]:
        return mine
    out = []
    for n in names:
        m = [sc for sc in mine if sc.name == n or str(sc.issue_item) == n]
        if not m:
            raise SystemExit("unknown scenario %r for --arch %s (see --list)" % (n, arch))
        out += m
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help="scenario names or issue numbers (default: all)")
    ap.add_argument("--arch", choices=sorted(ARCHES), default="x86_64",
                    help="the guest architecture, and so which scenarios (default: %(default)s)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--smoke", action="store_true", help="check sysfs only, do not run pciplug")
    ap.add_argument("--kernel", help="default: from the kernel.env of setup.sh (setup-arm64.sh for aarch64)")
    ap.add_argument("--initrd", help="default: %s (x86_64), %s (aarch64)" % (
        ARCHES["x86_64"]["initrd"], ARCHES["aarch64"]["initrd"]))
    ap.add_argument("--out", help="artifacts (default: %s, or %s for aarch64)" % (
        ARCHES["x86_64"]["out"], ARCHES["aarch64"]["out"]))
    ap.add_argument("--qemu", help="default: qemu-system-x86_64, or qemu-system-aarch64 for aarch64")
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--mem", type=int, default=512, help="MiB")
    ap.add_argument("--boot-timeout", type=int, default=60, help="s from QEMU start to READY (default 60; ~6 here)")
    ap.add_argument("--wait-timeout", type=int, default=60, help="s for a device to appear or go")
    ap.add_argument("--present-timeout", type=int, default=5,
                    help="--timeout of the `pciplug wait` on coldplugged devices (they must answer at once)")
    ap.add_argument("--retries", type=int, default=1, help="boots again after a hang (default 1)")
    ap.add_argument("--budget", type=int, default=0,
                    help="s: start no scenario after this much time; those left count as failed (default: none)")
    ap.add_argument("--answer-timeout", type=int, default=15,
                    help="s a guest command may take beyond its own wait before the guest counts as hung")
    ap.add_argument("--guest-rust-log", default="debug", help="RUST_LOG for pciplug in the guest ('' for none)")
    ap.add_argument("--verbose-kernel", action="store_true", help="boot without 'quiet'")
    ap.add_argument("--simulate-hang", metavar="SCENARIO:STEP",
                    help="test the retry: pause the guest (QMP stop) before STEP of the first attempt")
    args = ap.parse_args()
    kenv = load_kernel_env(args.arch)
    arch = ARCHES[args.arch]
    args.kernel = args.kernel or kenv.get("VMLINUZ")
    args.initrd = args.initrd or arch["initrd"]
    args.out = args.out or arch["out"]
    args.qemu = args.qemu or arch["qemu"]

    errs = check_scenario_data()
    if errs:
        for e in errs:
            print("scenarios.py: " + e, file=sys.stderr)
        return 2
    if args.list:
        for sc in select([], args.arch):
            print("%d  %-20s %s" % (sc.issue_item, sc.name, sc.descr))
        return 0
    for what, p in (("kernel", args.kernel), ("initramfs", args.initrd)):
        if not p or not os.path.isfile(p):
            print("e2e: no %s (%s): run %s and tests/e2e/build-initramfs.sh first" % (what, p, arch["setup"]),
                  file=sys.stderr)
            return 2
    if shutil.which(args.qemu) is None and not os.path.isfile(args.qemu):
        print("e2e: %s not found: run %s" % (args.qemu, arch["setup"]), file=sys.stderr)
        return 2
    args.kernel = os.path.abspath(args.kernel)
    args.initrd = os.path.abspath(args.initrd)
    args.out = os.path.abspath(args.out)
    chosen = select(args.scenarios, args.arch)
    log("%d scenario(s), mode %s, kernel %s (%s), accel %s, -smp %d, artifacts in %s" % (
        len(chosen), "smoke" if args.smoke else "pciplug", os.path.basename(args.kernel),
        kenv.get("KERNEL_PKG", "?") + " " + kenv.get("KERNEL_PKG_VERSION", ""), args.accel, args.smp, args.out))
    t0 = time.monotonic()
    results = []
    for sc in chosen:
        if args.budget and time.monotonic() - t0 > args.budget:
            r = {"scenario": sc.name, "ok": False, "attempts": 0, "total_s_all_attempts": 0.0,
                 "error": "not run: the --budget of %ds was used up" % args.budget}
            results.append(r)
            log("%s: FAIL: %s" % (sc.name, r["error"]))
            continue
        r = run_scenario(sc, args)
        results.append(r)
        log("%s: %s in %.1fs%s%s" % (sc.name, "PASS" if r["ok"] else "FAIL", r["total_s_all_attempts"],
                                    " (after %d attempts)" % r["attempts"] if r["attempts"] > 1 else "",
                                    "" if r["ok"] else ": " + r["error"]))
        if not r["ok"]:
            log("%s: artifacts in %s" % (sc.name, os.path.join(args.out, sc.name)))
    passed = sum(1 for r in results if r["ok"])
    summary = {"mode": "smoke" if args.smoke else "pciplug", "kernel": kenv, "wall_s": round(time.monotonic() - t0, 1),
               "scenarios": [{k: r.get(k) for k in ("scenario", "ok", "attempts", "total_s_all_attempts", "error")}
                             for r in results]}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log("total %.1fs" % (time.monotonic() - t0))
    print("e2e: %d passed, %d failed" % (passed, len(results) - passed), flush=True)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
