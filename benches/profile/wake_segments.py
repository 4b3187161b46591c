#!/usr/bin/env python3
"""Split every sample of the wake bench into the segments a kernel trace shows.

Input: `perf script -F comm,tid,cpu,time,event,trace` of a `perf record -a` of
`benches/wake.rs` with the events `wake.sh` asks for. The bench injects one datagram per
sample with `sendto` from its main thread: one probe, then the samples of pciplug, the
Kata-style listener and the floor, one of each per device in turn, each variant in a network
namespace of its own (so only its receiver wakes). A sample's variant is told by its
receiving thread's name (`pciplug-uevents`, `kata-listener`, `wake-floor`).
The warm-up samples the bench does not count are in the trace, and counted here.

For each sample, in trace time (microseconds):
  A. the main thread enters `sendto` -> the receiving thread returns from `poll`
     (the kernel queues the uevent and wakes the receiver);
  B. the receiver returns from `poll` -> it enters the `futex` call that wakes the waiter
     (recvfrom or recvmmsg, then pciplug: parse, apply, wake bookkeeping; the floor: a
     channel send), in two parts:
     B1. out of `poll` -> out of its last receive system call before the wake (the kernel's
         receive, and whatever the thread does before it);
     B2. out of that receive -> into the `futex` wake: the receiver's own work in user space,
         with the page faults and `mprotect` calls it makes meanwhile;
  C. that `futex` call is entered -> the waiter returns from its own `futex` wait
     (the waiter's wake-up, on the receiver's CPU or on the other one).
Each wake-up is split by where the woken thread ran: on the waker's CPU, or on the other one
(an idle vCPU woken by an inter-processor interrupt, through the hypervisor).
The bench's own figure ends when the waiter reads the clock, a few instructions after C.
"""

import re
import sys

LINE = re.compile(r"^\s*(.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
FUTEX_WAKE = "op: 0x00000081"  # FUTEX_WAKE | FUTEX_PRIVATE_FLAG
# The receiving threads' names, by variant.
VARIANTS = {"pciplug-uevents": "pciplug", "kata-listener": "Kata-style", "wake-floor": "floor"}


def load(path):
    events = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, tid, cpu, t, name, trace = m.groups()
                events.append((int(tid), int(cpu), float(t) * 1e6, name, trace, comm))
    return events


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def sample(events, i, main):
    """The segments of the sample whose sendto is events[i], or None if the trace lost some."""
    t0, cpu_main = events[i][2], events[i][1]
    j = i + 1
    receiver = t_poll = t_wake = cpu_r = None
    t_received = None
    mprotect = False
    faults = 0
    while j < len(events):
        tid, cpu, t, name, trace, comm = events[j]
        if receiver is None:
            if name == "syscalls:sys_exit_poll" and tid != main:
                receiver, t_poll, cpu_poll, receiver_comm = tid, t, cpu, comm
        elif t_wake is None:
            if tid == receiver and name == "syscalls:sys_enter_mprotect":
                mprotect = True
            if tid == receiver and name in ("syscalls:sys_exit_recvfrom", "syscalls:sys_exit_recvmmsg"):
                t_received, faults = t, 0
            if tid == receiver and name == "exceptions:page_fault_user":
                faults += 1
            if tid == receiver and name == "syscalls:sys_enter_futex" and FUTEX_WAKE in trace:
                t_wake, cpu_r = t, cpu
        elif name == "syscalls:sys_exit_futex" and tid not in (main, receiver):
            return {
                "variant": VARIANTS.get(receiver_comm, receiver_comm),
                "total": t - t0,
                "A": t_poll - t0,
                "B": t_wake - t_poll,
                "B1": (t_received if t_received is not None else t_poll) - t_poll,
                "B2": t_wake - (t_received if t_received is not None else t_poll),
                "faults": faults,
                "C": t - t_wake,
                "receiver_same_cpu": cpu_poll == cpu_main,
                "same_cpu": cpu == cpu_r,
                "heap_growth": mprotect,
            }
        if name == "syscalls:sys_enter_sendto" and tid == main:
            return None  # the next sample started: this one is incomplete
        j += 1
    return None


def line(label, values):
    if not values:
        return f"   {label:60s}    (none)"
    return (
        f"   {label:60s} p50 {pct(values, 50):6.1f}  p90 {pct(values, 90):6.1f}"
        f"  p99 {pct(values, 99):6.1f} us"
    )


def main():
    events = load(sys.argv[1])
    sends = [i for i, e in enumerate(events) if e[3] == "syscalls:sys_enter_sendto"]
    if not sends:
        sys.exit("no sendto in the trace: was it recorded with wake.sh's events?")
    # The bench's main thread (named after the binary, `wake-<hash>`) injects; other
    # processes of the machine may call sendto too.
    ours = [i for i in sends if events[i][5].startswith("wake-") and events[i][5] != "wake-floor"]
    if not ours:
        sys.exit("no sendto of the wake bench in the trace")
    main_tid = events[ours[0]][0]
    sends = [i for i in sends if events[i][0] == main_tid][1:]  # the first is the probe
    if len(sends) % 3:
        sys.exit(f"{len(sends)} injections after the probe, not three equal shares")
    n = len(sends) // 3
    every = [r for r in (sample(events, i, main_tid) for i in sends) if r]
    for name in ["pciplug", "Kata-style", "floor"]:
        rows = [r for r in every if r["variant"] == name]
        print(f"== {name}: {len(rows)} of {n} samples complete in the trace")
        print(line("total (sendto -> waiter out of futex)", [r["total"] for r in rows]))
        print(line("A  sendto -> receiver out of poll", [r["A"] for r in rows]))
        for same, where in [(True, "on the sender's CPU"), (False, "on the other CPU")]:
            s = [r["A"] for r in rows if r["receiver_same_cpu"] == same]
            share = 100 * len(s) / max(1, len(rows))
            print(line(f"   receiver woke {where} ({share:.0f}%): A", s))
        print(line("B  receiver: out of poll -> futex wake", [r["B"] for r in rows]))
        print(line("   B, samples without heap growth (no mprotect)",
                   [r["B"] for r in rows if not r["heap_growth"]]))
        grew = [r["B"] for r in rows if r["heap_growth"]]
        print(line(f"   B, samples with heap growth ({len(grew)})", grew))
        print(line("   B1 out of poll -> out of the receive", [r["B1"] for r in rows]))
        print(line("   B2 out of the receive -> futex wake (own work)", [r["B2"] for r in rows]))
        quiet = [r for r in rows if not r["heap_growth"] and not r["faults"]]
        print(line(f"   B2, no page fault nor heap growth ({len(quiet)})", [r["B2"] for r in quiet]))
        faulted = [r["B2"] for r in rows if r["faults"]]
        print(line(f"   B2, samples with page faults in it ({len(faulted)})", faulted))
        print(line("C  futex wake -> waiter out of futex", [r["C"] for r in rows]))
        for same, where in [(True, "on the receiver's CPU"), (False, "on the other CPU")]:
            s = [r for r in rows if r["same_cpu"] == same]
            share = 100 * len(s) / max(1, len(rows))
            print(line(f"   waiter woke {where} ({share:.0f}%): C", [r["C"] for r in s]))
        crossings = [
            ("no wake-up crossed CPUs", lambda r: r["receiver_same_cpu"] and r["same_cpu"]),
            ("one crossed", lambda r: r["receiver_same_cpu"] != r["same_cpu"]),
            ("both crossed", lambda r: not r["receiver_same_cpu"] and not r["same_cpu"]),
        ]
        for label, keep in crossings:
            s = [r["total"] for r in rows if keep(r)]
            share = 100 * len(s) / max(1, len(rows))
            print(line(f"   total, {label} ({share:.0f}%)", s))
        # What the slowest 2% (the samples at and above the p98, which set the p99) are made of.
        worst = sorted(rows, key=lambda r: r["total"])[int(len(rows) * 0.98):]
        if worst:
            mean = lambda k: sum(r[k] for r in worst) / len(worst)
            crossed = sum(1 for r in worst if not r["same_cpu"])
            print(
                f"   slowest {len(worst)} samples: total {mean('total'):.1f} = A {mean('A'):.1f}"
                f" + B {mean('B'):.1f} (B1 {mean('B1'):.1f}, B2 {mean('B2'):.1f}) + C {mean('C'):.1f} us"
                f" (means); waiter on the other CPU in {crossed}, heap growth in"
                f" {sum(1 for r in worst if r['heap_growth'])}, page faults in B2 in"
                f" {sum(1 for r in worst if r['faults'])}"
            )


if __name__ == "__main__":
    main()
