#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from fixtures/real-hotplug/ into fuzz/corpus/<target>/.

The corpora are generated, not committed (fuzz/corpus is ignored by git): every datagram of
the real recordings for `datagram`; their devpaths, bus addresses and the README's PCI paths
for `pci_path`; for `registry`, operation strings that replay the recordings' relevant
datagrams in order, with re-sends, forgeries, reshapes and resyncs between them (the
encoding is tests/common/registry_ops.rs's: one operation byte, then its arguments).
"""
import glob
import hashlib
import os

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fixtures = ["q35-acpi-hotplug", "q35-nvme-multipath-off", "q35-coldplug-trigger",
            "pc-i440fx-hotplug", "q35-root-bus-negative"]


def write(target, data):
    d = os.path.join(root, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


datagrams = []
for name in fixtures:
    for line in open(os.path.join(root, "fixtures", "real-hotplug", name + ".uevents")):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pid, hexdata = line.split(" ", 1)
        datagrams.append(bytes.fromhex(hexdata))

for d in datagrams:
    write("datagram", d)
    for field in d.split(b"\0"):
        if field.startswith(b"DEVPATH="):
            devpath = field[len(b"DEVPATH="):]
            write("pci_path", devpath)
            for comp in devpath.split(b"/"):
                write("pci_path", comp)
for p in ["02/00", "03/00/01", "06", "02/00.1", "03/00/02/03", "pci0000:10/02/00",
          "pci0000:00/02/00", "1f/1f.7/00", "02/zz", "02/20", ""]:
    write("pci_path", p.encode())

# registry: replay templates 0..n in order, in windows, with other operations between.
def apply(i):
    return bytes([0, i & 0xFF, i >> 8])

for start in range(0, 200, 40):
    plain = b"".join(apply(i) for i in range(start, start + 60))
    write("registry", plain)
    mixed = b""
    for i in range(start, start + 50):
        mixed += apply(i)
        if i % 3 == 0:
            mixed += bytes([6])                           # the same again
        if i % 5 == 0:
            mixed += bytes([5, i & 0xFF, i >> 8, 7])      # forged, port 8
        if i % 7 == 0:
            mixed += bytes([2, i & 0xFF, i >> 8, i % 6, i & 0xFF, 3, 1])  # reshaped
        if i % 11 == 0:
            mixed += bytes([7, 8, i & 0xFF, i >> 8, 0, 0])  # resync to a small truth
        if i % 13 == 0:
            mixed += bytes([7, 1, 0, 0, 0, 0])             # an NVMe link
    write("registry", mixed)
print({t: len(os.listdir(os.path.join(root, "fuzz", "corpus", t)))
       for t in ["datagram", "pci_path", "registry"]})
