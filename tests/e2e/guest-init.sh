#!/bin/busybox sh
# /init of the pciplug end-to-end initramfs (build-initramfs.sh puts it there).
#
# Two serial ports, so that kernel messages never mix with test output:
#   ttyS0  the kernel console (the host keeps it as console.log)
#   ttyS1  the command channel (on arm64 virt: ttyAMA0 and ttyAMA1; the kernel command line
#          names the channel's port as pciplug_e2e.chan=ttyAMA1): run.py writes one shell line per command ("<n> <cmd> #<n>"),
#          "<n> <shell words>"; the line is eval'ed with stdin from /dev/null
#          and its output is framed as
#              @@<token> BEGIN <n>
#              ...output (stdout and stderr)...
#              @@<token> END <n> rc=<exit status>
#          <token> comes from the kernel command line (pciplug_e2e.token=), so a
#          frame cannot be confused with what a command prints.
# Long-running commands (a `pciplug wait` started before a hot-plug) run as jobs:
# see job_start / job_listening / job_wait below.
export PATH=/bin
# a busybox that build-initramfs.sh could not run (another architecture): make its links here
if [ -e /etc/busybox-install ]; then
	/bin/busybox --install -s /bin
	/bin/busybox rm -f /bin/modprobe   # nothing should load modules behind the test's back
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/job

TOKEN=x
CH=/dev/ttyS1
for w in $(cat /proc/cmdline); do
	case $w in
	pciplug_e2e.token=*) TOKEN=${w#*=} ;;
	pciplug_e2e.chan=*) CH=/dev/${w#*=} ;;
	esac
done
M="@@$TOKEN"
say() { echo "$M $*"; }   # to the console until the channel is open

# busybox insmod does not read the kernel command line as modprobe does, so pass
# "<module>.<param>=<value>" words (e.g. nvme_core.multipath=N) on by hand.
modargs() {
	for w in $(cat /proc/cmdline); do
		case $w in "$1".*=*) printf '%s ' "${w#"$1".}" ;; esac
	done
}
for m in $(cat /etc/modules.order); do
	# shellcheck disable=SC2046
	insmod "/lib/modules/$m.ko" $(modargs "$m") || say "INSMOD-FAILED $m"
done

# ---- helpers for the host (called through the channel) ---------------------------

# job_start ID CMD [ARGS...]: run CMD in the background, stdout/stderr to files.
# /run/job/ID.rc appears (atomically) when it has ended.
job_start() {
	_id=$1; shift
	rm -f /run/job/"$_id".*
	(
		cut -d' ' -f1 /proc/uptime > /run/job/"$_id".t0
		"$@" </dev/null >/run/job/"$_id".out 2>/run/job/"$_id".err &
		echo $! > /run/job/"$_id".pid
		wait $!
		_rc=$?
		cut -d' ' -f1 /proc/uptime > /run/job/"$_id".t1
		echo $_rc > /run/job/"$_id".rc.tmp
		mv /run/job/"$_id".rc.tmp /run/job/"$_id".rc
	) </dev/null >/dev/null 2>&1 3>&- &
	# return only once the pid is known, so job_listening can look at it
	_n=0
	while [ ! -s /run/job/"$_id".pid ] && [ $_n -lt 100 ]; do usleep 10000; _n=$((_n + 1)); done
	echo "started $_id pid=$(cat /run/job/"$_id".pid 2>/dev/null)"
}

# job_listening ID SECONDS: wait until the job's process has a kernel uevent netlink
# socket (protocol 15) bound to a multicast group, i.e. it would see a hot-plug from
# now on. Prints "listening", "exited rc=N" or "not-listening"; exit status 0 only for
# "listening".
job_listening() {
	_pid=$(cat /run/job/"$1".pid)
	_n=0
	while [ $_n -lt $(($2 * 20)) ]; do
		if [ -e /run/job/"$1".rc ]; then echo "exited rc=$(cat /run/job/"$1".rc)"; return 2; fi
		for _fd in /proc/"$_pid"/fd/*; do
			_l=$(readlink "$_fd" 2>/dev/null) || continue
			case $_l in
			socket:\[*\])
				_ino=${_l#socket:[}; _ino=${_ino%]}
				# /proc/net/netlink: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
				if awk -v i="$_ino" '$2 == 15 && $NF == i && $4 !~ /^0+$/ { f = 1 } END { exit !f }' /proc/net/netlink; then
					echo listening; return 0
				fi ;;
			esac
		done
		usleep 50000; _n=$((_n + 1))
	done
	echo not-listening; return 1
}

# job_wait ID SECONDS: wait up to SECONDS for the job to end, then report
#   <M> JOB <id> done rc=<rc> t0=<uptime> t1=<uptime>   (or: running t0=<uptime>)
#   <M> STDOUT / its stdout / <M> STDERR / its stderr / <M> JOBEND
job_wait() {
	_n=0
	while [ ! -e /run/job/"$1".rc ] && [ $_n -lt $(($2 * 10)) ]; do usleep 100000; _n=$((_n + 1)); done
	if [ -e /run/job/"$1".rc ]; then
		echo "$M JOB $1 done rc=$(cat /run/job/"$1".rc) t0=$(cat /run/job/"$1".t0) t1=$(cat /run/job/"$1".t1)"
	else
		echo "$M JOB $1 running t0=$(cat /run/job/"$1".t0)"
	fi
	echo "$M STDOUT"; cat /run/job/"$1".out
	echo "$M STDERR"; cat /run/job/"$1".err
	echo "$M JOBEND"
}

# job_kill ID: end a job that is still running.
job_kill() { [ -e /run/job/"$1".rc ] || kill "$(cat /run/job/"$1".pid)" 2>/dev/null; true; }

# sysfs_wait present|absent PATH SECONDS: wait until PATH exists (or is gone); then
# print "<M> SYSFS <present|absent> <resolved path relative to /sys>". Exit 1 on timeout.
sysfs_wait() {
	_n=0
	while [ $_n -lt $(($3 * 10)) ]; do
		if [ "$1" = present ] && [ -e "$2" ]; then break; fi
		if [ "$1" = absent ] && [ ! -e "$2" ]; then break; fi
		usleep 100000; _n=$((_n + 1))
	done
	if [ -e "$2" ]; then
		echo "$M SYSFS present $(readlink -f "$2" | sed 's#^/sys##')"
	else
		echo "$M SYSFS absent"
	fi
	{ [ "$1" = present ] && [ -e "$2" ]; } || { [ "$1" = absent ] && [ ! -e "$2" ]; }
}

# blockinfo NAME: what the smoke checks compare: "<M> BLOCK name devpath devtype diskseq hidden dev=<yes|no>"
blockinfo() {
	_d=/sys/class/block/$1
	[ -e "$_d" ] || { echo "$M BLOCK $1 missing"; return 1; }
	_t=$(sed -n 's/^DEVTYPE=//p' "$_d/uevent")
	_h=$(cat "$_d/hidden" 2>/dev/null || echo -)
	_s=$(cat "$_d/diskseq" 2>/dev/null || echo -)
	if [ -b "/dev/$1" ]; then _v=yes; else _v=no; fi
	echo "$M BLOCK $1 $(readlink -f "$_d" | sed 's#^/sys##') $_t $_s $_h dev=$_v"
}

# links DIR: "<M> LINK name target" for each entry of DIR, resolved.
links() {
	for _e in "$1"/*; do
		[ -e "$_e" ] || continue
		echo "$M LINK $(basename "$_e") $(readlink -f "$_e" | sed 's#^/sys##')"
	done
}

# ---- the command channel -------------------------------------------------------
stty -F $CH raw -echo 2>/dev/null || say "CHANNEL-STTY-FAILED"
exec 3<>$CH
READY="READY uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) modules=$(wc -l < /etc/modules.order)"
[ -e /bin/pciplug ] && READY="$READY pciplug=$(cat /etc/pciplug.sha256)"
say "$READY"
echo "$M $READY" >&3
next=1
while IFS= read -r line <&3; do
	n=${line%% *}
	cmd=${line#* }
	# A read interrupted by SIGCHLD (a job ending) loses the line it was receiving, or a
	# part of it. run.py numbers its lines 1, 2, 3... and ends each with " #<n>" (a shell
	# comment), so a line is whole only if it is the next number and ends with its trailer;
	# anything else is answered as an empty line (no number), which run.py sends again, and
	# a copy of a line that already ran is never run twice.
	case $line in
	"$next "*" #$next") next=$((next + 1)) ;;
	*) n=; cmd=: ;;
	esac
	echo "$M BEGIN $n" >&3
	eval "$cmd" </dev/null >&3 2>&1
	echo "$M END $n rc=$?" >&3
done
say "EOF on the command channel"
while :; do sleep 3600; done
