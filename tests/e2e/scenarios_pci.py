"""The issue-13 scenarios, as data: PCI functions with no block or net child, VFIO, rescan.

Importing this module adds them to scenarios.SCENARIOS (run.py imports run_pci, which
imports this); run_pci.py carries out their steps. A
`Function` is what the guest must show for a PCI path: the function's bdf and sysfs
devpath, its vendor:device, and the driver bound to it (None: no driver binds it).

* `PlugFunction(device, expect, wait_args)`: `pciplug wait PATH --kind pci WAIT_ARGS` is
  started, then `device` is hot-added; the wait must print the bdf. `--json` must then
  agree with sysfs (bdf, ids, class, driver, IOMMU group), and each of `refused` (other
  wait arguments the function does not meet, with what the timeout must say was seen)
  must time out with exit 1.
* `Vfio(expect)`: `pciplug vfio PATH` must print `/dev/vfio/<group>` of the function's
  IOMMU group, every function of the group must then be on vfio-pci, the node must
  be the group's and open in the guest; a second call answers the same.
* `RescanPlug(device, image, expect, unseen_s, rescan_started_before)`: a disk hot-added
  where the guest gets no hot-plug notice. With `unseen_s`, a plain `pciplug wait PATH`
  started before device_add must time out (exit 1) and sysfs must not have the function;
  then `pciplug wait PATH --rescan` must find the disk. With `rescan_started_before`, the
  `--rescan` wait is already running (its uevent socket bound) when device_add comes, so
  a rescan it repeats while waiting (every second) finds the disk.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import scenarios as S


@dataclass(frozen=True)
class Function:
    """A PCI function the guest must show for a PCI path."""
    path: str                 # PCI path, e.g. "04/00"
    devpath: str              # sysfs devpath of the function (no /sys prefix)
    bdf: str                  # what `pciplug wait --kind pci` prints
    ids: str                  # vendor:device, lower-case hex, e.g. "1234:11e8"
    driver: Optional[str]     # bound driver after the hot-add; None: no driver binds it


@dataclass(frozen=True)
class PlugFunction:
    device: dict                      # QMP device_add arguments
    expect: Function
    wait_args: str = ""               # e.g. "--driver virtio-pci", "--unbound"
    # (wait arguments that must time out for this function, what the error must say was seen)
    refused: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Vfio:
    expect: Function                  # the function, with its driver before the hand-over


@dataclass(frozen=True)
class RescanPlug:
    device: dict
    image: str
    expect: S.Block
    unseen_s: int = 0                 # > 0: first prove for this long that the guest does not see it
    rescan_started_before: bool = False


STEPS = (PlugFunction, Vfio, RescanPlug)


def describe(st):
    if isinstance(st, PlugFunction):
        d = st.device
        return "plug %s %s on %s -> %s %s, wait --kind pci %s" % (
            d["driver"], d["id"], d["bus"], st.expect.path, st.expect.bdf, st.wait_args or "(present)")
    if isinstance(st, Vfio):
        return "vfio %s (%s, %s) -> /dev/vfio/<group>" % (st.expect.path, st.expect.bdf, st.expect.driver or "no driver")
    d = st.device
    return "plug %s %s on %s unannounced -> %s %s via wait --rescan%s" % (
        d["driver"], d["id"], d["bus"], st.expect.path, st.expect.name,
        " (started before device_add)" if st.rescan_started_before else "")


# ---- topologies -------------------------------------------------------------------

# Root ports at 00:02.0, 00:03.0, 00:04.0 (buses 01, 02, 03), as in the
# q35-no-child-device and q35-vfio-bind recordings of fixtures/real-hotplug-2/.
ROOT_PORTS = (
    "-device", "pcie-root-port,id=rp2,bus=pcie.0,addr=0x2,chassis=2,port=2",
    "-device", "pcie-root-port,id=rp3,bus=pcie.0,addr=0x3,chassis=3,port=3",
    "-device", "pcie-root-port,id=rp4,bus=pcie.0,addr=0x4,chassis=4,port=4",
)
# QEMU's virtual VT-d, before any PCI device. intremap=off: interrupt remapping would
# need x2APIC/EIM (and kernel-irqchip=split under KVM); VFIO in the guest needs only DMA
# remapping for IOMMU groups. The guest must be booted with intel_iommu=on.
INTEL_IOMMU = ("-device", "intel-iommu,intremap=off")


def fn(slot):
    """The function behind the root port at 00:<slot>.0 (bus slot - 1)."""
    return "/devices/pci0000:00/0000:00:%02x.0/0000:%02x:00.0" % (slot, slot - 1)


def function(path, slot, ids, driver):
    f = fn(slot)
    return Function(path=path, devpath=f, bdf=f.rsplit("/", 1)[1], ids=ids, driver=driver)


RNG = "1af4:1044"       # virtio-rng-pci, modern (virtio 1.0) on a PCIe port
TESTDEV = "1b36:0005"   # pci-testdev
EDU = "1234:11e8"       # QEMU's educational device


def dev(driver, qemu_id, bus):
    return {"driver": driver, "id": qemu_id, "bus": bus, "addr": "0x0"}


SCENARIOS = (
    S.Scenario(
        name="q35-pci-function", issue_item=13, machine="q35",
        descr="q35, ACPI hotplug: virtio-rng on 00:02.0 waited bound to virtio-pci (02/00); pci-testdev on "
              "00:03.0 waited unbound (03/00); edu on 00:04.0 waited present (04/00 -> 0000:03:00.0); "
              "`--json` agrees with sysfs; waits the function does not meet time out saying what they saw",
        topology=ROOT_PORTS,
        steps=(
            PlugFunction(dev("virtio-rng-pci", "rng1", "rp2"), function("02/00", 2, RNG, "virtio-pci"),
                         wait_args="--driver virtio-pci", refused=(("--unbound", "0000:01:00.0 present at 02/00, bound to virtio-pci"),)),
            PlugFunction(dev("pci-testdev", "testdev1", "rp3"), function("03/00", 3, TESTDEV, None),
                         wait_args="--unbound", refused=(("--driver vfio-pci", "0000:02:00.0 present at 03/00 and unbound"),)),
            PlugFunction(dev("edu", "edu1", "rp4"), function("04/00", 4, EDU, None)),
        )),
    S.Scenario(
        name="q35-vfio", issue_item=13, machine="q35",
        descr="q35 with intel-iommu (guest intel_iommu=on), ACPI hotplug: an edu on 00:02.0 (no driver) and a "
              "virtio-rng on 00:04.0 (on virtio-pci) handed to vfio-pci by `pciplug vfio`; /dev/vfio/<group> "
              "opened in the guest",
        topology=INTEL_IOMMU + ROOT_PORTS, append="intel_iommu=on",
        steps=(
            PlugFunction(dev("edu", "edu1", "rp2"), function("02/00", 2, EDU, None), wait_args="--unbound"),
            Vfio(function("02/00", 2, EDU, None)),
            PlugFunction(dev("virtio-rng-pci", "rng1", "rp4"), function("04/00", 4, RNG, "virtio-pci"),
                         wait_args="--driver virtio-pci"),
            Vfio(function("04/00", 4, RNG, "virtio-pci")),
        )),
    S.Scenario(
        name="q35-rescan", issue_item=13, machine="q35",
        descr="q35, ACPI hotplug with the guest's acpiphp disabled (acpiphp.disable=1), so a device_add is never "
              "seen: a plain `wait 02/00` times out and sysfs has nothing, `wait 02/00 --rescan` finds vda; a "
              "`wait 03/00 --rescan` already running when the disk is added finds vdb (a later rescan)",
        topology=ROOT_PORTS, append="acpiphp.disable=1", images=("disk1", "disk2"),
        steps=(
            RescanPlug(S.vblk("vblk1", "rp2", "0x0"), image="disk1", expect=S.blk("02/00", "vda", fn(2), 0),
                       unseen_s=8),
            RescanPlug(S.vblk("vblk2", "rp3", "0x0"), image="disk2", expect=S.blk("03/00", "vdb", fn(3), 1),
                       rescan_started_before=True),
        )),
)

# run.py lists and runs scenarios.SCENARIOS: these join them (once: modules import once)
S.SCENARIOS += SCENARIOS
