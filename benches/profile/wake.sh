#!/usr/bin/env bash
# Profile of bench 3 (wake latency): records the scheduler and system-call tracepoints of the
# whole machine while `benches/wake.rs` runs, then splits every sample into kernel delivery,
# the receiving thread's own work and the waiter's wake-up (wake_segments.py).
#
# Needs root (perf record -a on tracepoints) and perf (Debian: apt-get install linux-perf).
# The tracepoints slow every system call a little, so the totals here run above the bench's
# own figures; compare the segments with each other, not with BENCHMARKS.md's table.
#
#   bash benches/profile/wake.sh            # trace kept in target/profile/wake.data
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 2; }
out="${CARGO_TARGET_DIR:-target}/profile"
mkdir -p "$out"

exe=$(cargo bench --bench wake --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "wake" and m.get("executable"):
        print(m["executable"])')
[ -n "$exe" ] || { echo "could not build the wake bench" >&2; exit 1; }

events=sched:sched_switch,sched:sched_wakeup,exceptions:page_fault_user
for sc in sendto recvfrom recvmmsg poll futex mprotect; do
    events+=",syscalls:sys_enter_$sc,syscalls:sys_exit_$sc"
done
perf record -q -a -o "$out/wake.data" -e "$events" -- "$exe" --bench | grep -E "RESULT|SKIPPED" || true
perf script -i "$out/wake.data" -F comm,tid,cpu,time,event,trace 2>/dev/null >"$out/wake.txt"
python3 benches/profile/wake_segments.py "$out/wake.txt"
