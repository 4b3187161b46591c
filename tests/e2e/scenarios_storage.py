"""The disk-address scenarios (issue 12, item 6), as data. run.py adds SCENARIOS to
scenarios.SCENARIOS and interprets the two step kinds below.

A PCI function may carry several disks (a virtio-scsi HBA one per LUN, an NVMe controller
one per namespace), and a disk may sit where a plain slot path does not reach it (a
function other than 0, a second PCI root). These scenarios prove in a real guest that
`pciplug wait` finds each disk by its full address, refuses an address that fits several
disks (exit 2, naming each), and never answers early or with another disk:

* `Hotplug(qmp, waits, pending, appear)`: every wait of `waits` and `pending` is started
  in the guest first, and must be listening; then the QMP commands go out in order. Each
  wait of `waits` must then answer (`Wait`), each of `pending` must still be waiting at
  the end of the step. A later step names a pending wait again (same `args`) in its
  `waits`, and it must answer there without being started again. `appear` are the disks
  that must then be in sysfs where the data says.
* `Check(present, waits)`: nothing is plugged; the disks must be there, and each wait (on
  devices already present) answers, is refused, or finds nothing, at once.

After each step `pciplug list --json` must list, at each PCI path, exactly the whole disks
that have appeared there so far, with the devpath, DISKSEQ, SCSI address and NVMe
namespace id the guest's sysfs shows. With --smoke only the sysfs checks run.

The devpaths are the ones of the recordings in fixtures/real-hotplug-2/ (q35-scsi-multi-lun,
q35-nvme-namespaces, q35-virtio-pmem, q35-pxb-pcie, q35-multifunction), with this
harness's QEMU ids and, for the pxb-pcie, root bus 0x20 instead of 0x10.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import scenarios as S


@dataclass(frozen=True)
class Disk(S.Block):
    """A Block with the unit that tells it apart from the other disks of its function."""
    scsi: Optional[str] = None        # H:C:T:L as the guest shows it (in the devpath)
    nsid: Optional[int] = None        # NVMe namespace id (the guest's /sys/class/block/<name>/nsid)


@dataclass(frozen=True)
class Wait:
    """`pciplug wait ARGS --timeout Ns` in the guest and what it must do:
    * `disk`: exit 0, stdout exactly `/dev/<disk.name>`;
    * `refused`: exit 2 at once (within --present-timeout when the devices are present), nothing
      on stdout, and stderr naming every string of `refused` and none of `not_named`;
    * neither: nothing fits, so it must time out: exit 1, nothing on stdout."""
    args: str
    disk: Optional[Disk] = None
    refused: Tuple[str, ...] = ()
    not_named: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Hotplug:
    qmp: Tuple[Tuple[str, dict], ...]  # (command, arguments); a value "@image:NAME" is that image's file
    what: str
    waits: Tuple[Wait, ...] = ()
    pending: Tuple[Wait, ...] = ()
    appear: Tuple[Disk, ...] = ()
    sysfs: Tuple[str, ...] = ()       # other sysfs paths that must appear (an HBA's scsi_host)
    absent: Tuple[str, ...] = ()      # sysfs paths that must not exist `settle_s` after the QMP commands
    settle_s: int = 0
    grow: Tuple[Tuple[str, int], ...] = ()  # (image, bytes): sparse-extend an image first (pmem backends)

    def expects(self):
        return list(self.appear) + [w.disk for w in self.waits + self.pending if w.disk]


@dataclass(frozen=True)
class Check:
    present: Tuple[Disk, ...]
    waits: Tuple[Wait, ...]
    what: str

    def expects(self):
        return list(self.present) + [w.disk for w in self.waits if w.disk]


STEP_TYPES = (Hotplug, Check)


def rp(id_, addr, chassis, bus="pcie.0"):
    return ("-device", "pcie-root-port,id=%s,bus=%s,addr=%s,chassis=%d,port=%d" % (id_, bus, addr, chassis, chassis))


def blockdev(node):
    return ("blockdev-add", {"driver": "raw", "node-name": node,
                             "file": {"driver": "file", "filename": "@image:" + node}})


def device(driver, id_, bus, addr="0x0", **kw):
    d = {"driver": driver, "id": id_, "bus": bus}
    if addr is not None:
        d["addr"] = addr
    d.update(kw)
    return ("device_add", d)


def scsi_hd(id_, hba, target, lun):
    return device("scsi-hd", id_, hba + ".0", addr=None, drive=id_, channel=0, lun=lun, serial=id_,
                  **{"scsi-id": target})


def scsi_disk(path, name, fn, virtio, host, target, lun):
    """.../virtio<N>/host<H>/target<H>:0:<T>/<H>:0:<T>:<L>/block/<name>"""
    hctl = "%d:0:%d:%d" % (host, target, lun)
    return Disk(path=path, name=name, bdf=fn.rsplit("/", 1)[1], scsi=hctl,
                devpath="%s/virtio%d/host%d/target%d:0:%d/%s/block/%s" % (fn, virtio, host, host, target, hctl, name))


def vblk_disk(path, name, fn, virtio):
    return Disk(path=path, name=name, bdf=fn.rsplit("/", 1)[1], devpath="%s/virtio%d/block/%s" % (fn, virtio, name))


ROOT0 = "/devices/pci0000:00"
RP2_FN = ROOT0 + "/0000:00:02.0/0000:01:00.0"
RP3_FN = ROOT0 + "/0000:00:03.0/0000:02:00.0"
TWO_ROOT_PORTS = rp("rp2", "0x2", 2) + rp("rp3", "0x3", 3)
WAIT_ARGS_OK = "abcdefghijklmnopqrstuvwxyz0123456789:/.- "

# ---- 1. two virtio-scsi HBAs ------------------------------------------------------
# HBA vscsi1 on the root port at 00:02.0 (02/00, host0) gets T:L 0:0 and 0:1; HBA vscsi2 on
# 00:03.0 (03/00, host1) gets 1:0 and 0:0, so 0:0 is on both HBAs and `wait --scsi 0:0`
# (no path) must be refused. Disks are named in probe order: sda, sdb, sdc, sdd.
SDA = scsi_disk("02/00", "sda", RP2_FN, 0, 0, 0, 0)
SDB = scsi_disk("02/00", "sdb", RP2_FN, 0, 0, 0, 1)
SDC = scsi_disk("03/00", "sdc", RP3_FN, 1, 1, 1, 0)
SDD = scsi_disk("03/00", "sdd", RP3_FN, 1, 1, 0, 0)
SCSI_1_0 = Wait("--scsi 1:0", disk=SDC)   # Kata's form, no path: started before any HBA has 1:0

SCSI = S.Scenario(
    name="q35-scsi-luns", issue_item=12, machine="q35",
    descr="q35, ACPI hotplug: two virtio-scsi HBAs (02/00: LUNs 0:0, 0:1; 03/00: 1:0, 0:0), each disk "
          "waited for by its address (`02/00 --scsi 0:1`, `--scsi 1:0` with no path, ...); `wait 02/00`, "
          "`wait 03/00` and `wait --scsi 0:0` refused (exit 2, the candidates named)",
    topology=TWO_ROOT_PORTS, images=("sd00", "sd01", "sd10", "sd00b"),
    steps=(
        Hotplug(what="virtio-scsi vscsi1 on 00:02.0 + scsi-hd 0:0 -> 02/00 --scsi 0:0 = sda; "
                     "--scsi 1:0 still waiting",
                qmp=(device("virtio-scsi-pci", "vscsi1", "rp2"), blockdev("sd00"), scsi_hd("sd00", "vscsi1", 0, 0)),
                waits=(Wait("02/00 --scsi 0:0", disk=SDA),), pending=(SCSI_1_0,), appear=(SDA,),
                sysfs=(RP2_FN + "/virtio0/host0/scsi_host/host0",)),
        Hotplug(what="scsi-hd 0:1 on vscsi1 -> 02/00 --scsi 0:1 = sdb; --scsi 1:0 still waiting",
                qmp=(blockdev("sd01"), scsi_hd("sd01", "vscsi1", 0, 1)),
                waits=(Wait("02/00 --scsi 0:1", disk=SDB),), pending=(SCSI_1_0,), appear=(SDB,)),
        Hotplug(what="virtio-scsi vscsi2 on 00:03.0 + scsi-hd 1:0 -> the waiting --scsi 1:0 = sdc, "
                     "and 03/00 --scsi 1:0",
                qmp=(device("virtio-scsi-pci", "vscsi2", "rp3"), blockdev("sd10"), scsi_hd("sd10", "vscsi2", 1, 0)),
                waits=(SCSI_1_0, Wait("03/00 --scsi 1:0", disk=SDC)), appear=(SDC,),
                sysfs=(RP3_FN + "/virtio1/host1/scsi_host/host1",)),
        Hotplug(what="scsi-hd 0:0 on vscsi2 -> 03/00 --scsi 0:0 = sdd",
                qmp=(blockdev("sd00b"), scsi_hd("sd00b", "vscsi2", 0, 0)),
                waits=(Wait("03/00 --scsi 0:0", disk=SDD),), appear=(SDD,)),
        Check(what="all four present: each by its address at once; 02/00, 03/00 and --scsi 0:0 refused",
              present=(SDA, SDB, SDC, SDD),
              waits=(Wait("02/00 --scsi 0:1", disk=SDB),
                     Wait("02/00 --scsi 0:0", disk=SDA),
                     Wait("03/00 --scsi 0:0", disk=SDD),
                     Wait("--scsi 1:0", disk=SDC),
                     Wait("--scsi 0:1", disk=SDB),
                     Wait("02/00", refused=("sda 0:0:0:0", "sdb 0:0:0:1"), not_named=("sdc", "sdd")),
                     Wait("03/00", refused=("sdc 1:0:1:0", "sdd 1:0:0:0"), not_named=("sda", "sdb")),
                     Wait("--scsi 0:0", refused=("02/00", "03/00", "sda", "sdd"), not_named=("sdb", "sdc")),
                     Wait("02/00 --scsi 1:0"))),
    ))

# ---- 2. NVMe, one controller with namespaces 1 and 2 (coldplugged) -------------------
# QEMU cannot hot-plug an nvme-ns (recorded in q35-nvme-namespaces, step 4). Debian's default
# native multipath: the disks are the heads under /devices/virtual/nvme-subsystem, tied to
# 02/00 through the controller nvme0; nvme0c0n1/nvme0c0n2 are the hidden per-path disks.
def nvme_ns_head(name, nsid):
    h = S.nvme_head("02/00", RP2_FN, ns=int(name[-1]))
    return Disk(path=h.path, name=h.name, bdf=h.bdf, devpath=h.devpath, controller=h.controller,
                hidden=h.hidden, nsid=nsid)


NVME_N1 = nvme_ns_head("nvme0n1", 1)
NVME_N2 = nvme_ns_head("nvme0n2", 2)

NVME = S.Scenario(
    name="q35-nvme-namespaces", issue_item=12, machine="q35",
    descr="q35: an NVMe controller on 00:02.0 with namespaces 1 and 2 (coldplugged; native multipath): "
          "`wait 02/00 --nsid 2` = nvme0n2, `--nsid 1` = nvme0n1, `wait 02/00` refused, `--nsid 3` finds nothing",
    topology=TWO_ROOT_PORTS, images=("ns1", "ns2"),
    coldplug=(
        S.Coldplug({"driver": "nvme", "id": "nvme1", "serial": "nvme1", "bus": "rp2", "addr": "0x0"}),
        S.Coldplug({"driver": "nvme-ns", "id": "nvme1ns1", "bus": "nvme1", "nsid": "1"}, image="ns1"),
        S.Coldplug({"driver": "nvme-ns", "id": "nvme1ns2", "bus": "nvme1", "nsid": "2"}, image="ns2"),
    ),
    steps=(
        Check(what="02/00 --nsid 2 = nvme0n2, --nsid 1 = nvme0n1; 02/00 refused; --nsid 3 times out",
              present=(NVME_N1, NVME_N2),
              waits=(Wait("02/00 --nsid 2", disk=NVME_N2),
                     Wait("02/00 --nsid 1", disk=NVME_N1),
                     Wait("02/00", refused=("nvme0n1", "nvme0n2"), not_named=("nvme0c0n",)),
                     Wait("02/00 --nsid 3"))),
    ))

# ---- 3. virtio-pmem ------------------------------------------------------------------
# The machine needs room for memory devices (`-m 512M,slots=4,maxmem=4G` in the recording:
# QEMU merges this second -m with run.py's). The backend is a 128 MiB sparse file.
PMEM0 = Disk(path="02/00", name="pmem0", bdf="0000:01:00.0",
             devpath=RP2_FN + "/virtio0/ndbus0/region0/namespace0.0/block/pmem0")

PMEM = S.Scenario(
    name="q35-virtio-pmem", issue_item=12, machine="q35",
    descr="q35, ACPI hotplug: virtio-pmem-pci (memory-backend-file) hot-added on 00:02.0 -> `wait 02/00` = "
          "/dev/pmem0, under virtio0/ndbus0/region0/namespace0.0",
    topology=("-m", "slots=4,maxmem=4G") + TWO_ROOT_PORTS, images=("pmem1",),
    steps=(
        Hotplug(what="memory-backend-file pmem1mem + virtio-pmem-pci vpmem1 on 00:02.0 -> 02/00 = pmem0",
                grow=(("pmem1", 128 << 20),),
                qmp=(("object-add", {"qom-type": "memory-backend-file", "id": "pmem1mem", "mem-path": "@image:pmem1",
                                     "size": 128 << 20, "share": True}),
                     device("virtio-pmem-pci", "vpmem1", "rp2", memdev="pmem1mem")),
                waits=(Wait("02/00", disk=PMEM0),), appear=(PMEM0,)),
    ))

# ---- 4. a disk behind a pxb-pcie expander (root bus 0x20) ----------------------------
# The pxb-pcie at 00:09.0 opens root bus 0x20 (/devices/pci0000:20); its root port at slot 2
# is 20:02.0 with bus 0x21 behind it. So the disk's path is pci0000:20/02/00, which Kata
# writes 20/02/00. That root port uses native pciehp (the pxb root gets _OSC control). A disk
# on the root port at 00:02.0 has the same slots, 02/00, under the default root. Unlike the
# recording, no NUMA node is given (pxb-pcie does not need one, and the machine's -m stays
# run.py's --mem).
PXB_FN = "/devices/pci0000:20/0000:20:02.0/0000:21:00.0"
PXB_VDA = vblk_disk("pci0000:20/02/00", "vda", PXB_FN, 0)
RP2_VDB = vblk_disk("02/00", "vdb", RP2_FN, 1)
WAIT_02_00 = Wait("02/00", disk=RP2_VDB)

PXB = S.Scenario(
    name="q35-pxb-pcie", issue_item=12, machine="q35",
    descr="q35: virtio-blk behind a pxb-pcie (bus_nr=0x20) root port: `wait pci0000:20/02/00` and Kata's "
          "`wait 20/02/00` = vda while `wait 02/00` goes on waiting; then a disk on 00:02.0 answers it (vdb)",
    topology=("-device", "pxb-pcie,id=pxb1,bus_nr=0x20,bus=pcie.0,addr=0x9")
    + rp("rp2", "0x2", 2) + rp("pxbrp2", "0x2", 34, bus="pxb1"),
    images=("pxbdisk", "rp2disk"),
    steps=(
        Hotplug(what="virtio-blk on the pxb root port 20:02.0 -> pci0000:20/02/00 and 20/02/00 = vda; "
                     "02/00 still waiting",
                qmp=(blockdev("pxbdisk"), device("virtio-blk-pci", "vblk1", "pxbrp2", drive="pxbdisk", serial="vblk1")),
                waits=(Wait("pci0000:20/02/00", disk=PXB_VDA), Wait("20/02/00", disk=PXB_VDA)),
                pending=(WAIT_02_00,), appear=(PXB_VDA,)),
        Hotplug(what="virtio-blk on the root port 00:02.0 -> the waiting 02/00 = vdb",
                qmp=(blockdev("rp2disk"), device("virtio-blk-pci", "vblk2", "rp2", drive="rp2disk", serial="vblk2")),
                waits=(WAIT_02_00, Wait("pci0000:00/02/00", disk=RP2_VDB)), appear=(RP2_VDB,)),
        Check(what="both present: each spelling answers at once",
              present=(PXB_VDA, RP2_VDB),
              waits=(Wait("20/02/00", disk=PXB_VDA), Wait("pci0000:20/02/00", disk=PXB_VDA),
                     Wait("02/00", disk=RP2_VDB))),
    ))

# ---- 5. multifunction: function 1 before function 0 --------------------------------------
# A function other than 0 is invisible to the guest until function 0 arrives (no uevent at
# all, recorded in q35-multifunction); then the slot is scanned: 01:00.0 (vda), 01:00.1 (vdb).
F0_FN = RP2_FN
F1_FN = ROOT0 + "/0000:00:02.0/0000:01:00.1"
F0_VDA = vblk_disk("02/00", "vda", F0_FN, 0)
F1_VDB = vblk_disk("02/00.1", "vdb", F1_FN, 1)
WAIT_F1 = Wait("02/00.1", disk=F1_VDB)
WAIT_F0 = Wait("02/00", disk=F0_VDA)

MULTIFUNCTION = S.Scenario(
    name="q35-multifunction", issue_item=12, machine="q35",
    descr="q35, ACPI hotplug: virtio-blk as function 1 of 00:02.0's slot (addr=00.1) first, then function 0 "
          "(multifunction=on): `wait 02/00.1` and `wait 02/00` wait through the first, then = vdb and vda",
    topology=TWO_ROOT_PORTS, images=("f1disk", "f0disk"),
    steps=(
        Hotplug(what="virtio-blk function 1 (addr=00.1) on 00:02.0 -> nothing for the guest; "
                     "02/00.1 and 02/00 still waiting",
                qmp=(blockdev("f1disk"), device("virtio-blk-pci", "vblk_f1", "rp2", addr="00.1", drive="f1disk",
                                                serial="vblk_f1")),
                pending=(WAIT_F1, WAIT_F0), absent=("/sys/bus/pci/devices/0000:01:00.1",
                                                    "/sys/bus/pci/devices/0000:01:00.0"), settle_s=3),
        Hotplug(what="virtio-blk function 0 (addr=00.0, multifunction=on) -> the waiting 02/00.1 = vdb, 02/00 = vda",
                qmp=(blockdev("f0disk"), device("virtio-blk-pci", "vblk_f0", "rp2", addr="00.0", multifunction=True,
                                                drive="f0disk", serial="vblk_f0")),
                waits=(WAIT_F1, WAIT_F0), appear=(F0_VDA, F1_VDB)),
    ))

# ---- 6. arm64 `virt`: SCSI LUNs by address (issue 16, item 3) ----------------------------
# The device-tree guest of scenarios.py's arm64 section (pciehp, host bridge under
# /devices/platform/...): one virtio-scsi HBA on the root port at 00:04.0 (04/00, host0) with
# LUNs 0:0 and 0:1, the same address rules as on x86.
A64_FN4 = S.arm64_fn(4)
A64_SDA = scsi_disk("04/00", "sda", A64_FN4, 0, 0, 0, 0)
A64_SDB = scsi_disk("04/00", "sdb", A64_FN4, 0, 0, 0, 1)
A64_WAIT_0_1 = Wait("04/00 --scsi 0:1", disk=A64_SDB)

SCSI_ARM64 = S.Scenario(
    name="arm64-virt-scsi-luns", issue_item=16, arch="aarch64", machine=S.ARM64_MACHINE, cpu=S.ARM64_CPU,
    descr="arm64 virt (device tree, pciehp): a virtio-scsi HBA on 00:04.0 (04/00) with LUNs 0:0 and 0:1, "
          "each waited for by its address (`04/00 --scsi 0:1` before it exists, `--scsi 0:0` with no path); "
          "`wait 04/00` refused (exit 2, both named)",
    topology=S.ARM64_TOPOLOGY, images=("a64sd00", "a64sd01"),
    steps=(
        Hotplug(what="virtio-scsi vscsi1 on 00:04.0 + scsi-hd 0:0 -> 04/00 --scsi 0:0 = sda; "
                     "04/00 --scsi 0:1 still waiting",
                qmp=(device("virtio-scsi-pci", "vscsi1", "rp4"), blockdev("a64sd00"),
                     scsi_hd("a64sd00", "vscsi1", 0, 0)),
                waits=(Wait("04/00 --scsi 0:0", disk=A64_SDA),), pending=(A64_WAIT_0_1,), appear=(A64_SDA,),
                sysfs=(A64_FN4 + "/virtio0/host0/scsi_host/host0",)),
        Hotplug(what="scsi-hd 0:1 on vscsi1 -> the waiting 04/00 --scsi 0:1 = sdb",
                qmp=(blockdev("a64sd01"), scsi_hd("a64sd01", "vscsi1", 0, 1)),
                waits=(A64_WAIT_0_1,), appear=(A64_SDB,)),
        Check(what="both present: each by its address at once, Kata's form without a path too; 04/00 refused",
              present=(A64_SDA, A64_SDB),
              waits=(Wait("04/00 --scsi 0:1", disk=A64_SDB),
                     Wait("--scsi 0:0", disk=A64_SDA),
                     Wait("04/00", refused=("sda 0:0:0:0", "sdb 0:0:0:1")),
                     Wait("04/00 --scsi 1:0"))),
    ))

SCENARIOS = (SCSI, NVME, PMEM, PXB, MULTIFUNCTION, SCSI_ARM64)


def image_refs(v):
    """The images named ("@image:NAME") in QMP arguments."""
    if isinstance(v, dict):
        return [n for x in v.values() for n in image_refs(x)]
    return [v[len("@image:"):]] if isinstance(v, str) and v.startswith("@image:") else []


def check_data():
    """Errors in the data above that run.py's devpath checks do not see."""
    errs = []
    for sc in SCENARIOS:
        pending = set()
        for i, st in enumerate(sc.steps, 1):
            if not isinstance(st, STEP_TYPES):
                continue
            for w in st.waits + getattr(st, "pending", ()):
                if set(w.args) - set(WAIT_ARGS_OK):
                    errs.append("%s step %d: wait arguments %r: only [a-z0-9:/.- ]" % (sc.name, i, w.args))
                if w.disk and w.refused:
                    errs.append("%s step %d: wait %r both answers and is refused" % (sc.name, i, w.args))
            if isinstance(st, Check) and pending:
                errs.append("%s step %d: a Check with waits still pending: %s" % (sc.name, i, sorted(pending)))
            if isinstance(st, Hotplug):
                for w in st.waits:
                    pending.discard(w.args)
                for w in st.pending:
                    if w.args in pending:
                        continue
                    pending.add(w.args)
                for _, a in st.qmp:
                    for v in image_refs(a):
                        if v not in sc.images:
                            errs.append("%s step %d: image %s not declared" % (sc.name, i, v))
            for e in st.expects():
                if e.scsi and "/%s/block/%s" % (e.scsi, e.name) not in e.devpath:
                    errs.append("%s: %s: SCSI address %s is not the one of %s" % (sc.name, e.name, e.scsi, e.devpath))
        if pending:
            errs.append("%s: waits never answered: %s" % (sc.name, sorted(pending)))
    return errs
