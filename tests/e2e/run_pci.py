"""The steps of scenarios_pci.py (issue 13): PCI function waits, VFIO, rescan.

run.py calls run_step(run, step) with its `Run` (the guest, the job helpers and the
block checks). Ground truth comes from the guest's sysfs (busybox tools); without
--smoke, what `pciplug` prints must agree with it. With --smoke the hand-over to
vfio-pci and the rescan are done by hand with the guest's sysfs files (as in the
q35-vfio-bind recording), so the guest side is still proven.
"""
import json
import sys

import scenarios_pci as P
from scenarios_pci import STEPS, describe  # noqa: F401  (run.py's dispatch)

# How these steps call the CLI in the guest; the one place to change if its flags move.
PCIPLUG_WAIT_FN = "pciplug wait {path} --kind pci {args}--timeout {timeout}s"
PCIPLUG_WAIT_FN_JSON = "pciplug wait {path} --kind pci --json --timeout {timeout}s"
PCIPLUG_VFIO = "pciplug vfio {path} --timeout {timeout}s"
PCIPLUG_WAIT_BLK = "pciplug wait {path} --timeout {timeout}s"
PCIPLUG_WAIT_RESCAN = "pciplug wait {path} --rescan --timeout {timeout}s"

# How long a wait for something the function will never be (`refused`) runs.
REFUSED_TIMEOUT_S = 3


def _R():
    # run.py is usually __main__; its CheckFailed must be the one its runner catches
    return sys.modules.get("run") or sys.modules["__main__"]


def fail(msg):
    raise _R().CheckFailed(msg)


def run_step(run, st):
    if isinstance(st, P.PlugFunction):
        return plug_function(run, st)
    if isinstance(st, P.Vfio):
        return vfio(run, st)
    return rescan_plug(run, st)


# ---- guest sysfs --------------------------------------------------------------------

def pci_fn(run, bdf):
    """The function's sysfs state, or None when the guest has no such function."""
    d = "/sys/bus/pci/devices/%s" % bdf
    m = run.g.chan.mark.decode()
    cmd = ("_pf=%s; if [ -e $_pf ]; then echo \"%s PCIFN $(readlink -f $_pf | sed 's#^/sys##') "
           "$(cat $_pf/vendor) $(cat $_pf/device) $(cat $_pf/class) "
           "$(if [ -e $_pf/driver ]; then basename $(readlink $_pf/driver); else echo -; fi) "
           "$(if [ -e $_pf/iommu_group ]; then basename $(readlink $_pf/iommu_group); else echo -; fi) "
           "$(cat $_pf/driver_override)\"; else echo \"%s PCIFN absent\"; fi") % (d, m, m)
    _, out = run.guest(cmd)
    recs = run.g.chan.records(out, "PCIFN")
    if not recs:
        fail("no answer about %s from the guest: %r" % (bdf, out))
    r = recs[0]
    if r == ["absent"]:
        return None
    if len(r) < 7:
        fail("garbled sysfs answer about %s: %r" % (bdf, out))
    return {"devpath": r[0], "ids": "%s:%s" % (r[1][2:], r[2][2:]), "class": r[3][2:],
            "driver": None if r[4] == "-" else r[4], "iommu_group": None if r[5] == "-" else int(r[5]),
            "driver_override": r[6]}


def check_function(run, e, timeout, driver="as expected"):
    """The function is in sysfs where the scenario says, with its ids and driver."""
    ok, _ = run.sysfs_wait("present", "/sys/bus/pci/devices/%s" % e.bdf, timeout)
    info = pci_fn(run, e.bdf) if ok else None
    if info is None:
        fail("%s: no PCI function %s in the guest's sysfs within %ds" % (e.path, e.bdf, timeout))
    if info["devpath"] != e.devpath or info["ids"] != e.ids:
        fail("%s: %s is %s at %s, expected %s at %s" % (e.path, e.bdf, info["ids"], info["devpath"], e.ids, e.devpath))
    want = e.driver if driver == "as expected" else driver
    if want is not None:
        # a driver binds after the PCI add: give it the same time
        ok, _ = run.sysfs_wait("present", "/sys/bus/pci/devices/%s/driver" % e.bdf, timeout)
        info = pci_fn(run, e.bdf)
    if info["driver"] != want:
        fail("%s: %s has driver %s, expected %s" % (e.path, e.bdf, info["driver"], want or "none"))
    return info


def expect_exit(res, what, rc, stdout):
    if not res["done"]:
        fail("`%s` has not returned" % what)
    if res["rc"] != rc or res["stdout"] != stdout:
        fail("`%s`: exit %d, stdout %r; expected exit %d and %r. stderr: %s" % (
            what, res["rc"], res["stdout"], rc, stdout, _R().tail(res["stderr"])))


def expect_said(res, what, seen):
    """A timed-out wait says what it saw at the path."""
    if seen not in res["stderr"]:
        fail("`%s` timed out without saying %r: %s" % (what, seen, _R().tail(res["stderr"])))


def run_job(run, what, timeout):
    """Start a guest job and wait for it to end (it must, within `timeout`)."""
    res = run.job_result(run.job(what), timeout + 15)
    if not res["done"]:
        fail("`%s` did not end within %ds" % (what, timeout + 15))
    return res


# ---- steps --------------------------------------------------------------------------

def plug_function(run, st):
    e = st.expect
    t = run.args.wait_timeout
    args = st.wait_args + " " if st.wait_args else ""
    what = PCIPLUG_WAIT_FN.format(path=e.path, args=args, timeout=t)
    if not run.args.smoke:
        jid = run.job(what)
        run.job_listening(jid, what)
    run.g.qmp.ok("device_add", dict(st.device))
    detail = {"device_add": st.device}
    if not run.args.smoke:
        res = run.job_result(jid, t + 15)
        detail["pciplug_wait"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
        expect_exit(res, what, 0, e.bdf + "\n")
    info = check_function(run, e, t)
    detail["sysfs"] = info
    if run.args.smoke:
        return detail
    # the whole value, now that the function is there: it must answer at once
    what = PCIPLUG_WAIT_FN_JSON.format(path=e.path, timeout=run.args.present_timeout)
    res = run_job(run, what, run.args.present_timeout)
    if res["rc"] != 0:
        fail("`%s`: exit %d: %s" % (what, res["rc"], _R().tail(res["stderr"])))
    try:
        got = json.loads(res["stdout"])
    except ValueError as err:
        fail("`%s` printed no JSON (%s): %r" % (what, err, res["stdout"]))
    want = {"path": e.path, "bdf": e.bdf, "devpath": e.devpath, "id": e.ids, "class": info["class"],
            "driver": info["driver"], "iommu_group": info["iommu_group"]}
    diff = {k: (got.get(k) if isinstance(got, dict) else None, v) for k, v in want.items()
            if not isinstance(got, dict) or got.get(k) != v}
    if diff:
        fail("`%s` disagrees with sysfs (field: (printed, sysfs)): %s; printed %s" % (what, diff, res["stdout"].strip()))
    detail["pciplug_json"] = got
    for refused, seen in st.refused:
        what = PCIPLUG_WAIT_FN.format(path=e.path, args=refused + " ", timeout=REFUSED_TIMEOUT_S)
        res = run_job(run, what, REFUSED_TIMEOUT_S)
        expect_exit(res, what, 1, "")
        expect_said(res, what, seen)
        detail.setdefault("refused", {})[refused] = res["stderr"].strip().splitlines()[-1:]
    return detail


def vfio(run, st):
    e = st.expect
    t = run.args.wait_timeout
    before = check_function(run, e, 10)
    group = before["iommu_group"]
    if group is None:
        fail("%s: %s has no iommu_group link: the guest has no IOMMU (intel-iommu, intel_iommu=on?)" % (e.path, e.bdf))
    node = "/dev/vfio/%d" % group
    detail = {"iommu_group": group, "driver_before": before["driver"]}
    members = group_members(run, group)
    detail["group"] = members
    if not run.args.smoke:
        what = PCIPLUG_VFIO.format(path=e.path, timeout=t)
        res = run_job(run, what, t)
        detail["pciplug_vfio"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
        expect_exit(res, what, 0, node + "\n")
    else:
        # by hand, as fixtures/real-hotplug-2/q35-vfio-bind did it
        for bdf in members:
            d = "/sys/bus/pci/devices/%s" % bdf
            run.guest("echo vfio-pci > %s/driver_override; if [ -e %s/driver ]; then echo %s > %s/driver/unbind; fi; "
                      "echo %s > /sys/bus/pci/drivers_probe" % (d, d, bdf, d, bdf))
    for bdf in members:
        fn = pci_fn(run, bdf)
        if fn is None or fn["driver"] != "vfio-pci":
            fail("%s: after the hand-over, %s of IOMMU group %d has driver %s, not vfio-pci" % (
                e.path, bdf, group, fn and fn["driver"]))
    # /dev/vfio/<group> is the group's node: a char device with the numbers of /sys/class/vfio/<group>
    ok, _ = run.sysfs_wait("present", node, 10)
    m = run.g.chan.mark.decode()
    _, out = run.guest("echo \"%s VFIONODE $(cat /sys/class/vfio/%d/dev) $(stat -c '%%F %%t %%T' %s)\"" % (m, group, node))
    rec = run.g.chan.records(out, "VFIONODE")
    if not ok or not rec or len(rec[0]) < 6:
        fail("%s: no %s in the guest: %r" % (e.path, node, out))
    major, minor = rec[0][0].split(":")
    if rec[0][1:4] != ["character", "special", "file"] or \
            (int(rec[0][4], 16), int(rec[0][5], 16)) != (int(major), int(minor)):
        fail("%s: %s is not the char device %s of /sys/class/vfio/%d: %r" % (e.path, node, rec[0][0], group, out))
    # open it read-write, as a VMM would; a group opens once, so a second open is refused meanwhile
    _, out = run.guest("( exec 4<>%s && echo \"%s VFIOOPEN $(readlink /proc/self/fd/4)\" && "
                       "{ ( exec 5<>%s ) 2>/dev/null && echo \"%s VFIOOPEN twice\" || echo \"%s VFIOOPEN busy\"; } )"
                       % (node, m, node, m, m))
    opened = [r[0] for r in run.g.chan.records(out, "VFIOOPEN")]
    if opened != [node, "busy"]:
        fail("%s: opening %s in the guest: %r" % (e.path, node, out))
    detail["opened"] = node
    if not run.args.smoke:
        # idempotent: a function already on vfio-pci answers at once, the same
        what = PCIPLUG_VFIO.format(path=e.path, timeout=run.args.present_timeout)
        res = run_job(run, what, run.args.present_timeout)
        expect_exit(res, what, 0, node + "\n")
        detail["again_guest_s"] = res.get("guest_s")
    return detail


def group_members(run, group):
    m = run.g.chan.mark.decode()
    _, out = run.guest("for _pf in /sys/kernel/iommu_groups/%d/devices/*; do echo \"%s MEMBER $(basename $_pf)\"; done"
                       % (group, m))
    members = [r[0] for r in run.g.chan.records(out, "MEMBER") if r[0] != "*"]
    if not members:
        fail("IOMMU group %d has no devices in sysfs: %r" % (group, out))
    return members


def rescan_plug(run, st):
    e = st.expect
    q = run.g.qmp
    t = run.args.wait_timeout
    q.ok("blockdev-add", {"driver": "raw", "node-name": st.image,
                          "file": {"driver": "file", "filename": run.images[st.image]}})
    dev = dict(st.device, drive=st.image)
    detail = {"device_add": dev}
    jid = None
    if st.unseen_s:
        if not run.args.smoke:
            what = PCIPLUG_WAIT_BLK.format(path=e.path, timeout=st.unseen_s)
            jid = run.job(what)
            run.job_listening(jid, what)
        q.ok("device_add", dev)
        if not run.args.smoke:
            res = run.job_result(jid, st.unseen_s + 15)
            detail["pciplug_wait_plain"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
            expect_exit(res, what, 1, "")
            expect_said(res, what, "no PCI device at %s" % e.path)
            detail["plain_wait_stderr"] = res["stderr"].strip().splitlines()[-1:]
        else:
            ok, _ = run.sysfs_wait("present", "/sys/bus/pci/devices/%s" % e.bdf, st.unseen_s)
        if pci_fn(run, e.bdf) is not None:
            fail("%s: the guest found %s without a rescan: the hot-plug driver was not kept from acting" % (
                e.path, e.bdf))
        jid = None
    rescan = PCIPLUG_WAIT_RESCAN.format(path=e.path, timeout=t)
    if not run.args.smoke:
        jid = run.job(rescan)
        if st.rescan_started_before:
            run.job_listening(jid, rescan)
    if not st.unseen_s:
        q.ok("device_add", dev)
    if run.args.smoke:
        run.guest("echo 1 > /sys/bus/pci/rescan")
    else:
        res = run.job_result(jid, t + 15)
        detail["pciplug_wait_rescan"] = {k: res.get(k) for k in ("rc", "stdout", "guest_s")}
        expect_exit(res, rescan, 0, "/dev/%s\n" % e.name)
    info = run.check_sysfs(e, t)
    detail["sysfs"] = info
    if not run.args.smoke:
        listed = run.check_list_entry(run.pciplug_list(), e)
        if str(listed) != info["diskseq"]:
            fail("`pciplug list --json`: %s has diskseq %r, sysfs says %s" % (e.name, listed, info["diskseq"]))
    detail["diskseq"] = run.check_diskseq(e, info["diskseq"])
    return detail
