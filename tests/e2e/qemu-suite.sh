# qemu-suite.sh - sourced by setup.sh and setup-arm64.sh: which suite QEMU is installed from.
#
# qemu_suite PKG: sets the array TARGET to the apt-get arguments that install PKG
# (qemu-system-x86, qemu-system-arm) from the suite $QEMU_FROM asks for: `backports`
# (-t $CODENAME-backports), `release`, or `auto` (backports when that suite has PKG; see
# setup.sh's "QEMU" notes for why). A release QEMU that would not install cleanly (apt would
# remove something, such as a newer qemu-utils) is refused rather than installed. Needs
# $CODENAME, $QEMU_FROM, and the caller's log and die; apt must already know its lists.
qemu_suite() {
	local pkg=$1 sim
	TARGET=()
	case $QEMU_FROM in
	release) ;;
	backports) TARGET=(-t "$CODENAME-backports") ;;
	auto)
		# (grep reads all of it: with pipefail, grep -q closing early can fail the pipeline)
		if apt-cache policy "$pkg" | grep " $CODENAME-backports/" >/dev/null; then
			TARGET=(-t "$CODENAME-backports")
		else
			log "no $pkg in $CODENAME-backports: using the release's (NVMe multipath scenarios need QEMU >= 8)"
			QEMU_FROM=release
		fi ;;
	*) die "PCIPLUG_E2E_QEMU_FROM must be auto, backports or release" ;;
	esac
	if [ "$QEMU_FROM" = release ]; then
		sim=$(apt-get install -s --no-install-recommends "$pkg" 2>&1) || true
		if ! grep -q "^Inst $pkg " <<<"$sim" || grep -q '^Remv ' <<<"$sim"; then
			grep -E '^(Remv | .*Breaks:|E: )' <<<"$sim" | sed 's/^/  /' >&2 || true
			die "the release's $pkg does not install cleanly here"
		fi
	fi
}
