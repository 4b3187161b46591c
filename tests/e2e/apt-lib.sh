# apt-lib.sh - sourced by setup.sh and setup-arm64.sh: the private APT configs and which
# suite QEMU is installed from. Needs $CODENAME and the caller's log and die.

# debian_mirror: sets MIRROR to the host's Debian mirror (its apt sources), on which the
# <codename>-backports suite lives too. Never written in a script: the host knows it.
debian_mirror() {
	MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
	[ -n "$MIRROR" ] || die "cannot find the Debian mirror in the apt sources (needed for $CODENAME-backports)"
}

# apt_config DIR foreign|host: sources, lists and cache under DIR. `foreign` adds arm64 to
# the architectures and has an empty dpkg status of its own (downloads only).
apt_config() {
	local d=$1 kind=$2
	mkdir -p "$d/sources.list.d" "$d/lists/partial" "$d/cache/archives/partial"
	rm -f "$d"/sources.list.d/*
	for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] && cp "$f" "$d/sources.list.d/"
	done
	[ -s /etc/apt/sources.list ] && cp /etc/apt/sources.list "$d/sources.list.d/00-system.list"
	cat > "$d/sources.list.d/zz-pciplug-e2e-backports.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $CODENAME-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	cat > "$d/apt.conf" <<EOF
Dir::Etc::SourceParts "$d/sources.list.d";
Dir::Etc::SourceList "/dev/null";
Dir::State::Lists "$d/lists";
Dir::Cache "$d/cache";
EOF
	if [ "$kind" = foreign ]; then
		mkdir -p "$d/state"
		: > "$d/state/status"
		cat >> "$d/apt.conf" <<EOF
Dir::State::status "$d/state/status";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; "arm64"; };
EOF
	fi
}

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
