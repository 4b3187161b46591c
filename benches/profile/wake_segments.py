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
(an idle vCPU woken by an inter-processor interrupt, through the hypervisor). For each, the
receiver's `futex` wake call itself (enter -> exit), the time until the receiver gives up its
CPU, and how often it gave it up before it was back in `poll` (preempted by its waiter).

Last, pciplug's totals with one segment given the floor's distribution instead (B2, or C
within each placement; each sample keeps its rank in the segment's distribution), against
the floor's measured totals: which segments the gap at p50 and p99 is made of. An estimate:
it takes the segments to be independent, which they are not quite (a slow B2 goes with a
slow wake call: the script prints C's wake call by quartile of B2 for that).
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
                t_wake, cpu_r, j_wake = t, cpu, j
        elif name == "syscalls:sys_exit_futex" and tid not in (main, receiver):
            t_ret, t_off, preempted = after_wake(events, j_wake, receiver)
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
                # The receiver's own time from its wake call to giving up its CPU (None if
                # the trace does not show it within the sample).
                "D": None if t_off is None else t_off - t_wake,
                # The receiver's futex wake call itself.
                "call": None if t_ret is None else t_ret - t_wake,
                "preempted": preempted,
            }
        if name == "syscalls:sys_enter_sendto" and tid == main:
            return None  # the next sample started: this one is incomplete
        j += 1
    return None


def after_wake(events, j, receiver):
    """What the receiver, whose futex wake is events[j], does next: when its wake call
    returns, when it next gives up its CPU, and whether that was before it went back to
    `poll` (preempted, by the waiter it woke when that one runs on its CPU)."""
    t_ret, back_in_poll = None, False
    for tid, cpu, t, name, trace, comm in events[j + 1 : j + 400]:
        if tid == receiver and name == "syscalls:sys_exit_futex" and t_ret is None:
            t_ret = t
        elif tid == receiver and name == "syscalls:sys_enter_poll":
            back_in_poll = True
        elif name == "sched:sched_switch" and f"prev_pid={receiver} " in trace:
            return t_ret, t, not back_in_poll
    return t_ret, None, None


def line(label, values):
    if not values:
        return f"   {label:60s}    (none)"
    return (
        f"   {label:60s} p50 {pct(values, 50):6.1f}  p90 {pct(values, 90):6.1f}"
        f"  p99 {pct(values, 99):6.1f} us"
    )


def quantile_matched(rows, base, key, group=lambda r: True):
    """For each of `rows`, the value of `key` that `base` has at the same rank (its quantile
    within the rows of the same `group`): how that segment would read with base's
    distribution, each sample keeping its place in it."""
    out = {}
    for g in (True, False):
        mine = sorted((r[key], i) for i, r in enumerate(rows) if group(r) == g)
        theirs = sorted(r[key] for r in base if group(r) == g)
        for k, (_, i) in enumerate(mine):
            if theirs:
                out[i] = theirs[min(len(theirs) - 1, k * len(theirs) // max(1, len(mine)))]
            else:
                out[i] = rows[i][key]
    return [out[i] for i in range(len(rows))]


def counterfactuals(rows, floor):
    """pciplug's totals with one segment given the floor's distribution (rank for rank; C
    within each placement), against the floor's measured totals: which segment the gap at
    p50 and p99 is made of."""
    ft = [r["total"] for r in floor]
    f50, f99 = pct(ft, 50), pct(ft, 99)
    b2 = quantile_matched(rows, floor, "B2")
    c = quantile_matched(rows, floor, "C", group=lambda r: r["same_cpu"])
    cases = [
        ("as measured", [r["total"] for r in rows]),
        ("with the floor's B2 (own work)", [r["total"] - r["B2"] + x for r, x in zip(rows, b2)]),
        ("with the floor's C, same placement", [r["total"] - r["C"] + y for r, y in zip(rows, c)]),
        ("with both", [r["total"] - r["B2"] + x - r["C"] + y for r, x, y in zip(rows, b2, c)]),
    ]
    print("== pciplug's wake call, waiter on the receiver's CPU, by quartile of B2 (own work)")
    local = sorted((r for r in rows if r["same_cpu"] and r["call"] is not None), key=lambda r: r["B2"])
    for k in range(4):
        part = local[k * len(local) // 4 : (k + 1) * len(local) // 4]
        if part:
            print(line(f"B2 {part[0]['B2']:.0f}-{part[-1]['B2']:.0f} us ({len(part)}): the wake call",
                       [r["call"] for r in part]))
    print("== pciplug against the floor's totals, one segment at a time given the floor's")
    for label, v in cases:
        print(
            f"   {label:60s} p50 {pct(v, 50):6.1f}  p99 {pct(v, 99):6.1f} us:"
            f" {pct(v, 50) / f50:.2f} / {pct(v, 99) / f99:.2f} x the floor"
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
            print(line(f"   waiter {where}: the wake call", [r["call"] for r in s if r["call"] is not None]))
            print(line(f"   waiter {where}: wake call -> receiver off its CPU",
                       [r["D"] for r in s if r["D"] is not None]))
            pre = sum(1 for r in s if r["preempted"])
            print(f"   waiter {where}: receiver off its CPU before it was back in poll in {pre} of {len(s)}")
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
    counterfactuals(
        [r for r in every if r["variant"] == "pciplug"],
        [r for r in every if r["variant"] == "floor"],
    )


if __name__ == "__main__":
    main()
