"""The end-to-end scenarios, as data. run.py interprets them.

A scenario is a QEMU machine (its coldplugged bridges and devices), a kernel command
line addition, and steps. Each step says what to do to the virtual hardware and what
the guest must show for it, as precisely as the kernel makes it observable:

* `Plug(device, expect)`: hot-add `device` (a QMP device_add argument dict; `image`
  names a backing image that is blockdev-add'ed first, `netdev` a netdev that is
  netdev_add'ed first, `before` devices that are device_add'ed just before it, such as
  the SCSI HBA of a scsi-hd) and expect the block or net device `expect` to appear.
* `Unplug(qemu_id, gone)`: device_del, wait for QMP DEVICE_DELETED; `gone` must vanish.
* `Present(expect)`: the devices (coldplugged) must already be there.

What "expect" means is given by `Block` / `Net`: the PCI path, the kernel name, and
the sysfs devpath the kernel gives it (`/sys` + devpath is what `readlink -f
/sys/class/block/<name>` shows). The devpaths come from the topology: bus numbers
are assigned depth-first, so a root port at 00:04.0 gets bus 05 when 00:03.0 has
buses 02-04 behind it. They match the recordings in fixtures/real-hotplug/.

In --smoke mode run.py checks these against the guest's sysfs with busybox tools;
otherwise it also checks what `pciplug wait` / `pciplug list --json` print.
"""
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Block:
    """A block device the guest must show for a PCI path."""
    path: str                 # PCI path, e.g. "02/00"
    name: str                 # kernel name, e.g. "vda"; pciplug wait prints /dev/<name>
    devpath: str              # sysfs devpath of the disk (no /sys prefix)
    bdf: str                  # PCI function of the device, as pciplug list prints it
    partitions: Tuple[str, ...] = ()
    # NVMe native multipath: the disk is the subsystem's namespace head under
    # /devices/virtual; `controller` is the controller's devpath under the PCI function
    # and `hidden` the per-path disk that has no /dev node and must never be reported.
    controller: Optional[str] = None
    hidden: Optional[str] = None
    # remember the DISKSEQ under this label / require it to differ from the one remembered
    remember_diskseq: Optional[str] = None
    diskseq_differs_from: Optional[str] = None
    # fields the disk's entry in `list --json` must have, as (key, value) pairs: how it
    # hangs below its PCI function, e.g. (("transport", "scsi"), ("address", "0:0:0:0"))
    listed: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Net:
    """A network interface the guest must show for a PCI path."""
    path: str
    name: str
    devpath: str
    bdf: str


Expect = Union[Block, Net]


@dataclass(frozen=True)
class Plug:
    device: dict                      # QMP device_add arguments (driver, id, bus, addr, ...)
    expect: Expect
    image: Optional[str] = None       # backing image name (see Scenario.images)
    netdev: Optional[dict] = None     # QMP netdev_add arguments
    before: Tuple[dict, ...] = ()     # device_add'ed first, in order (after `pciplug wait` started)


@dataclass(frozen=True)
class Unplug:
    qemu_id: str
    gone: Expect


@dataclass(frozen=True)
class Present:
    expect: Tuple[Expect, ...]


Step = Union[Plug, Unplug, Present]


@dataclass(frozen=True)
class Coldplug:
    """A device given on the QEMU command line (-device), with its backing image."""
    device: dict
    image: Optional[str] = None
    netdev: Optional[str] = None      # -netdev argument string


@dataclass(frozen=True)
class Scenario:
    name: str
    descr: str
    machine: str                      # "q35", "pc", or "virt,acpi=off" for aarch64
    steps: Tuple[Step, ...]
    topology: Tuple[str, ...] = ()    # extra QEMU arguments (bridges, root ports, -global)
    coldplug: Tuple[Coldplug, ...] = ()
    images: Tuple[str, ...] = ()      # 8 MiB sparse raw images, created per run
    partitioned: Tuple[str, ...] = () # those of `images` that get an MBR with 2 partitions
    append: str = ""                  # extra kernel command line
    issue_item: int = 0               # number of the scenario in the project issue
    tags: Tuple[str, ...] = field(default=())
    arch: str = "x86_64"              # the guest's: x86_64 or aarch64 (run.py --arch)
    cpu: str = ""                     # QEMU -cpu, when the machine's default is not wanted


# ---- topologies -------------------------------------------------------------------

# q35: root ports at 00:02.0 (bus 01) and 00:03.0 (bus 02); behind 00:03.0 a
# pcie-pci-bridge (02:00.0, bus 03) with a pci-bridge in its slot 2 (03:02.0, bus 04);
# root ports at 00:04.0 (bus 05), 00:05.0 (bus 06), 00:06.0 (bus 07).
Q35_TOPOLOGY = (
    "-device", "pcie-root-port,id=rp2,bus=pcie.0,addr=0x2,chassis=2,port=2",
    "-device", "pcie-root-port,id=rp3,bus=pcie.0,addr=0x3,chassis=3,port=3",
    "-device", "pcie-pci-bridge,id=br3,bus=rp3,addr=0x0",
    "-device", "pci-bridge,id=br32,bus=br3,addr=0x2,chassis_nr=32",
    "-device", "pcie-root-port,id=rp4,bus=pcie.0,addr=0x4,chassis=4,port=4",
    "-device", "pcie-root-port,id=rp5,bus=pcie.0,addr=0x5,chassis=5,port=5",
    "-device", "pcie-root-port,id=rp6,bus=pcie.0,addr=0x6,chassis=6,port=6",
)
NATIVE_HOTPLUG = ("-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off")

# pc: a pci-bridge at 00:05.0 (bus 01).
PC_TOPOLOGY = ("-device", "pci-bridge,id=br5,bus=pci.0,addr=0x5,chassis_nr=5")

RP2 = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0"
BR3_1 = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:01.0"
BR32_3 = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:02.0/0000:04:03.0"
RP4 = "/devices/pci0000:00/0000:00:04.0/0000:05:00.0"
RP6 = "/devices/pci0000:00/0000:00:06.0/0000:07:00.0"


def vblk(qemu_id, bus, addr):
    return {"driver": "virtio-blk-pci", "id": qemu_id, "bus": bus, "addr": addr, "serial": qemu_id}


def nvme_head(path, fn, subsys=0, ctrl=0, ns=1):
    name = "nvme%dn%d" % (subsys, ns)
    return Block(path=path, name=name, bdf=fn.rsplit("/", 1)[1],
                 devpath="/devices/virtual/nvme-subsystem/nvme-subsys%d/%s" % (subsys, name),
                 controller="%s/nvme/nvme%d" % (fn, ctrl),
                 hidden="nvme%dc%dn%d" % (subsys, ctrl, ns))


def blk(path, name, fn, virtio, partitions=(), **kw):
    return Block(path=path, name=name, bdf=fn.rsplit("/", 1)[1],
                 devpath="%s/virtio%d/block/%s" % (fn, virtio, name),
                 partitions=tuple(partitions), **kw)


# The q35 hot-plug steps shared by the ACPI and the native-hotplug scenarios.
def q35_bridge_steps(first_virtio):
    v = first_virtio
    return (
        Plug(vblk("vblk2", "br3", "0x1"), image="disk2",
             expect=blk("03/00/01", "vd" + "abc"[v], BR3_1, v,
                        partitions=("vd%s1" % "abc"[v], "vd%s2" % "abc"[v]))),
        Plug(vblk("vblk3", "br32", "0x3"), image="disk3",
             expect=blk("03/00/02/03", "vd" + "abc"[v + 1], BR32_3, v + 1)),
    )


SCENARIOS = (
    Scenario(
        name="q35-root-port", issue_item=1, machine="q35",
        descr="q35, ACPI hotplug: `wait 02/00` started, then virtio-blk hot-added on the "
              "root port at 00:02.0 -> /dev/vda; virtio-net on 00:04.0 -> `wait 04/00 --kind net`",
        topology=Q35_TOPOLOGY, images=("disk1",),
        steps=(
            Plug(vblk("vblk1", "rp2", "0x0"), image="disk1", expect=blk("02/00", "vda", RP2, 0)),
            Plug({"driver": "virtio-net-pci", "id": "vnet1", "netdev": "net1", "bus": "rp4",
                  "addr": "0x0", "mac": "52:54:00:12:34:56", "romfile": ""},
                 netdev={"type": "user", "id": "net1", "restrict": True},
                 expect=Net("04/00", "eth0", RP4 + "/virtio1/net/eth0", "0000:05:00.0")),
        )),
    Scenario(
        name="q35-bridges", issue_item=2, machine="q35",
        descr="q35, ACPI hotplug: virtio-blk (MBR, 2 partitions) on a pcie-pci-bridge behind a "
              "root port (03/00/01), and on a pci-bridge behind that (03/00/02/03)",
        topology=Q35_TOPOLOGY, images=("disk2", "disk3"), partitioned=("disk2",),
        steps=q35_bridge_steps(0)),
    Scenario(
        name="q35-nvme-multipath", issue_item=3, machine="q35",
        descr="q35, ACPI hotplug: NVMe on the root port at 00:06.0 with Debian's default native "
              "multipath: `wait 06/00` -> the namespace head /dev/nvme0n1, never the hidden nvme0c0n1",
        topology=Q35_TOPOLOGY, images=("disk4",),
        steps=(
            Plug({"driver": "nvme", "id": "nvme1", "serial": "nvme1", "bus": "rp6", "addr": "0x0"},
                 image="disk4", expect=nvme_head("06/00", RP6)),
        )),
    Scenario(
        name="q35-coldplug", issue_item=4, machine="q35",
        descr="q35: virtio-blk on 00:02.0, partitioned virtio-blk on the pcie-pci-bridge, NVMe on "
              "00:06.0 and virtio-net on 00:04.0 given on the QEMU command line: listed at their "
              "paths by `list --json`, and `wait` answers at once",
        topology=Q35_TOPOLOGY, images=("disk1", "disk2", "disk4"), partitioned=("disk2",),
        coldplug=(
            Coldplug(vblk("vblk1", "rp2", "0x0"), image="disk1"),
            Coldplug(vblk("vblk2", "br3", "0x1"), image="disk2"),
            Coldplug({"driver": "nvme", "id": "nvme1", "serial": "nvme1", "bus": "rp6", "addr": "0x0"},
                     image="disk4"),
            Coldplug({"driver": "virtio-net-pci", "id": "vnet1", "netdev": "net1", "bus": "rp4",
                      "addr": "0x0", "mac": "52:54:00:12:34:56", "romfile": ""},
                     netdev="user,id=net1,restrict=on"),
        ),
        steps=(
            Present((
                blk("02/00", "vda", RP2, 0),
                blk("03/00/01", "vdb", BR3_1, 1, partitions=("vdb1", "vdb2")),
                nvme_head("06/00", RP6),
                Net("04/00", "eth0", RP4 + "/virtio2/net/eth0", "0000:05:00.0"),
            )),
        )),
    Scenario(
        name="q35-removal", issue_item=5, machine="q35",
        descr="q35, ACPI hotplug: `wait 02/00 --removed` returns after device_del; a new disk on "
              "the same slot gets the same name (vda) but a new DISKSEQ",
        topology=Q35_TOPOLOGY, images=("disk1", "disk5"),
        steps=(
            Plug(vblk("vblk1", "rp2", "0x0"), image="disk1",
                 expect=blk("02/00", "vda", RP2, 0, remember_diskseq="first")),
            Unplug("vblk1", gone=blk("02/00", "vda", RP2, 0)),
            Plug(vblk("vblk5", "rp2", "0x0"), image="disk5",
                 expect=blk("02/00", "vda", RP2, 0, diskseq_differs_from="first")),
        )),
    Scenario(
        name="pc-i440fx", issue_item=6, machine="pc",
        descr="pc (i440fx), ACPI hotplug: virtio-blk on a pci-bridge at 00:05.0 slot 3 (05/03) "
              "and straight on the root bus at slot 6 (06)",
        topology=PC_TOPOLOGY, images=("disk1", "disk2"),
        steps=(
            Plug(vblk("vblk1", "br5", "0x3"), image="disk1",
                 expect=blk("05/03", "vda", "/devices/pci0000:00/0000:00:05.0/0000:01:03.0", 0)),
            Plug(vblk("vblk2", "pci.0", "0x6"), image="disk2",
                 expect=blk("06", "vdb", "/devices/pci0000:00/0000:00:06.0", 1)),
        )),
    Scenario(
        name="q35-native-hotplug", issue_item=7, machine="q35",
        descr="q35 with ACPI hotplug off (native PCIe hotplug on root ports, SHPC on bridges): "
              "the same answers as with ACPI for 02/00, 03/00/01, 03/00/02/03 and a removal",
        topology=Q35_TOPOLOGY + NATIVE_HOTPLUG, images=("disk1", "disk2", "disk3"),
        partitioned=("disk2",),
        steps=(Plug(vblk("vblk1", "rp2", "0x0"), image="disk1", expect=blk("02/00", "vda", RP2, 0)),)
        + q35_bridge_steps(1)
        + (Unplug("vblk1", gone=blk("02/00", "vda", RP2, 0)),)),
)


# ---- arm64 `virt` (issue 16, item 3) ------------------------------------------------
#
# qemu-system-aarch64 -machine virt,acpi=off -cpu cortex-a57, under TCG, booted with
# -kernel and no firmware, so the guest kernel takes the device tree: the PCIe host bridge
# is the platform device pci-host-ecam-generic, and every PCI devpath starts under
# /devices/platform/4010000000.pcie/. With DT there is no ACPI hot-plug: the root ports
# use native PCIe hot-plug (pciehp, with its 5 s attention-button delay on add and on
# removal). Root ports at 00:02.0 .. 00:07.0 get buses 01 .. 06. The devpaths are the
# ones of the `arm64-virt-dt` recording in fixtures/real-hotplug-2/.
ARM64_MACHINE = "virt,acpi=off"
ARM64_CPU = "cortex-a57"
ARM64_TOPOLOGY = sum((("-device", "pcie-root-port,id=rp%d,bus=pcie.0,addr=0x%x,chassis=%d,port=%d"
                       % (s, s, s, s)) for s in range(2, 8)), ())
ARM64_ROOT = "/devices/platform/4010000000.pcie/pci0000:00"


def arm64_fn(slot):
    """The function behind the root port at 00:<slot>.0 (bus slot - 1)."""
    return "%s/0000:00:%02x.0/0000:%02x:00.0" % (ARM64_ROOT, slot, slot - 1)


def scsi_disk(path, name, fn, virtio, host=0, hctl="0:0:0"):
    """A SCSI disk on a virtio-scsi HBA: .../virtio<N>/host<H>/target<H:C:T>/<H:C:T:L>/block/<name>."""
    c, t, lun = hctl.split(":")
    return Block(path=path, name=name, bdf=fn.rsplit("/", 1)[1],
                 devpath="%s/virtio%d/host%d/target%d:%s:%s/%d:%s:%s:%s/block/%s"
                 % (fn, virtio, host, host, c, t, host, c, t, lun, name),
                 listed=(("transport", "scsi"), ("address", "%d:%s" % (host, hctl))))


def arm64_nvme_head(path, fn):
    """nvme_head(), and `list --json` must say it is a multipath head of nvme-subsys0."""
    return replace(nvme_head(path, fn), listed=(("transport", "nvme-multipath"), ("subsystem", "nvme-subsys0")))


SCENARIOS += (
    Scenario(
        name="arm64-virt-hotplug", issue_item=16, arch="aarch64", machine=ARM64_MACHINE, cpu=ARM64_CPU,
        descr="arm64 virt (device tree, pciehp): virtio-blk on the root port at 00:02.0 (02/00 vda), "
              "virtio-net on 00:03.0 (03/00 eth0), virtio-scsi + scsi-hd 0:0:0 on 00:04.0 (04/00 sda), "
              "NVMe on 00:05.0 (05/00 -> the multipath head nvme0n1, never the hidden nvme0c0n1)",
        topology=ARM64_TOPOLOGY, images=("disk1", "disk3", "disk4"),
        steps=(
            Plug(vblk("vblk1", "rp2", "0x0"), image="disk1", expect=blk("02/00", "vda", arm64_fn(2), 0)),
            Plug({"driver": "virtio-net-pci", "id": "vnet1", "netdev": "net1", "bus": "rp3",
                  "addr": "0x0", "mac": "52:54:00:12:34:03", "romfile": ""},
                 netdev={"type": "user", "id": "net1", "restrict": True},
                 expect=Net("03/00", "eth0", arm64_fn(3) + "/virtio1/net/eth0", "0000:02:00.0")),
            Plug({"driver": "scsi-hd", "id": "sd1", "bus": "vscsi1.0", "channel": 0, "scsi-id": 0,
                  "lun": 0, "serial": "sd1"}, image="disk3",
                 before=({"driver": "virtio-scsi-pci", "id": "vscsi1", "bus": "rp4", "addr": "0x0"},),
                 expect=scsi_disk("04/00", "sda", arm64_fn(4), 2)),
            Plug({"driver": "nvme", "id": "nvme1", "serial": "nvme1", "bus": "rp5", "addr": "0x0"},
                 image="disk4", expect=arm64_nvme_head("05/00", arm64_fn(5))),
        )),
    Scenario(
        name="arm64-virt-coldplug", issue_item=16, arch="aarch64", machine=ARM64_MACHINE, cpu=ARM64_CPU,
        descr="arm64 virt (device tree): virtio-blk on 00:02.0, virtio-net on 00:03.0, virtio-scsi + "
              "scsi-hd on 00:04.0 and NVMe on 00:05.0 given on the QEMU command line: listed at their "
              "paths by `list --json`, and `wait` answers at once",
        topology=ARM64_TOPOLOGY, images=("disk1", "disk3", "disk4"),
        coldplug=(
            Coldplug(vblk("vblk1", "rp2", "0x0"), image="disk1"),
            Coldplug({"driver": "virtio-net-pci", "id": "vnet1", "netdev": "net1", "bus": "rp3",
                      "addr": "0x0", "mac": "52:54:00:12:34:03", "romfile": ""},
                     netdev="user,id=net1,restrict=on"),
            Coldplug({"driver": "virtio-scsi-pci", "id": "vscsi1", "bus": "rp4", "addr": "0x0"}),
            Coldplug({"driver": "scsi-hd", "id": "sd1", "bus": "vscsi1.0", "channel": 0, "scsi-id": 0,
                      "lun": 0, "serial": "sd1"}, image="disk3"),
            Coldplug({"driver": "nvme", "id": "nvme1", "serial": "nvme1", "bus": "rp5", "addr": "0x0"},
                     image="disk4"),
        ),
        steps=(
            Present((
                blk("02/00", "vda", arm64_fn(2), 0),
                Net("03/00", "eth0", arm64_fn(3) + "/virtio1/net/eth0", "0000:02:00.0"),
                scsi_disk("04/00", "sda", arm64_fn(4), 2),
                arm64_nvme_head("05/00", arm64_fn(5)),
            )),
        )),
    Scenario(
        name="arm64-virt-removal", issue_item=16, arch="aarch64", machine=ARM64_MACHINE, cpu=ARM64_CPU,
        descr="arm64 virt (device tree, pciehp): virtio-blk (MBR, 2 partitions) on 00:02.0 is 02/00 vda; "
              "`wait 02/00 --removed` returns after device_del; a new disk on the same slot is vda again "
              "with a new DISKSEQ",
        topology=ARM64_TOPOLOGY, images=("disk1", "disk5"), partitioned=("disk1",),
        steps=(
            Plug(vblk("vblk1", "rp2", "0x0"), image="disk1",
                 expect=blk("02/00", "vda", arm64_fn(2), 0, partitions=("vda1", "vda2"),
                            remember_diskseq="first")),
            Unplug("vblk1", gone=blk("02/00", "vda", arm64_fn(2), 0)),
            Plug(vblk("vblk5", "rp2", "0x0"), image="disk5",
                 expect=blk("02/00", "vda", arm64_fn(2), 0, diskseq_differs_from="first")),
        )),
)
