# Shared helpers of the shell tests.  Source after setting $0's name.
set -eu
: "${srcdir:=.}" "${builddir:=.}"
QSD=${QSD:-qemu-storage-daemon}
QEMU_IMG=${QEMU_IMG:-qemu-img}

# exit 77 when a tool is missing, except in CI (OVL_REQUIRE_ALL=1).
requires () {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "${OVL_REQUIRE_ALL:-0}" = 1 ]; then
      echo "required tool $1 is missing" >&2; exit 1
    fi
    echo "SKIP: $1 is not installed"; exit 77
  fi
}
requires_root () {
  if [ "$(id -u)" != 0 ]; then
    if [ "${OVL_REQUIRE_ALL:-0}" = 1 ]; then echo "must run as root" >&2; exit 1; fi
    echo "SKIP: needs root"; exit 77
  fi
}

checks=0 failures=0
pass () { checks=$((checks + 1)); }
fail () { echo "FAIL: $*" >&2; failures=$((failures + 1)); checks=$((checks + 1)); }
finish () {
  echo "$checks checks, $failures failures"
  [ "$checks" -gt 0 ] || { echo "no check ran" >&2; exit 1; }
  [ "$failures" = 0 ]
}

# The pool's refiller of this build, not the installed one (started by
# the hook and the CLI; libvirt-run hooks get it through their wrapper).
REFILL=$(cd "$builddir" && pwd)/hook/virt-overlay-refill
VIRT_OVERLAY_REFILL=$REFILL
export VIRT_OVERLAY_REFILL

# The program under test, under valgrind with make check-valgrind.
VO="$builddir/cli/virt-overlay"
if [ "${OVL_VALGRIND:-0}" = 1 ]; then
  VO="valgrind -q --error-exitcode=119 --leak-check=full --errors-for-leak-kinds=definite $VO"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/ovltest.XXXXXX")
chmod 0711 "$T"
cleanup_hooks=""
at_exit () { cleanup_hooks="$1; $cleanup_hooks"; }
trap 'eval "$cleanup_hooks"; rm -rf "$T"' EXIT
# Interrupted (a harness's timeout, ^C): the same clean-up, through exit.
trap 'exit 130' INT TERM HUP

# Stop the daemon whose pidfile is $1.
stop_pidfile () {
  [ -f "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -f "$1"
}

# The test's configuration: everything under $T, bases and overlays in
# $img (made 0711 here); extra "key = value" lines follow.
img=$T/img
mkdir -m 0711 "$img"
write_conf () { # FILE [LINE...]
  f=$1; shift
  {
    echo "qsd_socket = $T/run/qsd.sock"
    echo "qsd_binary = $(command -v "$QSD")"
    echo "overlay_dirs = $img"
    echo "base_dirs = $img"
    echo "state_dir = $T/state"
    echo "managed_save_dir = $T/save"
    echo "timeout_ms = 20000"
    for line in "$@"; do echo "$line"; done
  } > "$f"
}
# base.qcow2 (64 MiB) and base.raw (16 MiB) in $img
make_bases () {
  "$QEMU_IMG" create -q -f qcow2 "$img/base.qcow2" 64M
  truncate -s 16M "$img/base.raw"
  chmod 0644 "$img/base.qcow2" "$img/base.raw"
}

# A listing of a directory with checksums, to prove nothing changed.
snapshot () {
  (cd "$1" && find . -mindepth 1 -printf '%p %y %l %m %s\n' | sort &&
     find . -type f -exec sha256sum {} + | sort)
}

# qemu-img info without the fields that name the file itself.
info_of () {
  "$QEMU_IMG" info --output=json "$1" | grep -v -e '"filename"' -e '"actual-size"' -e '"dirty-flag"'
}

# Every pid listed in file $1 ends (or is a zombie) within a second;
# $2 names them in the failure, and a survivor is killed.
expect_pids_gone () {
  for p in $(cat "$1" 2>/dev/null); do
    n=0
    while [ -e "/proc/$p" ] && ! grep -q ') [ZX] ' "/proc/$p/stat" 2>/dev/null && [ $n -lt 100 ]; do
      sleep 0.01; n=$((n + 1))
    done
    [ $n -lt 100 ] && pass || { fail "$2: process $p still runs"; kill -9 "$p"; }
  done
}

# With a test's hook wrapper in HOOKS/qemu.d: an installed virt-overlay
# hook is set aside meanwhile (both would claim the same disks) and put
# back at exit, and libvirtd must have registered qemu.d/.
use_hook_wrapper () { # HOOKS
  if [ -e "$1/qemu.d/virt-overlay" ] || [ -L "$1/qemu.d/virt-overlay" ]; then
    mv "$1/qemu.d/virt-overlay" "$1/virt-overlay.set-aside-$$"
    at_exit "mv '$1/virt-overlay.set-aside-$$' '$1/qemu.d/virt-overlay'"
  fi
  sh "$srcdir/contrib/libvirtd-ensure.sh" "$1"
}

# The suites of the admin program (status, gc, reset, clone): root,
# the real libvirtd and qsd, the program built (with libvirt); not under
# valgrind (libvirt's client library is not ours to check).  Sets
# HOOKS, VIRSH, VIRT_OVERLAY_ADMIN; a configuration in $T/conf (CONF
# lines added), the bases made, the test's daemon stopped at exit.
admin_suite () { # CONF-LINE...
  requires_root
  requires "$QSD"
  requires "$QEMU_IMG"
  requires virsh
  requires libvirtd
  [ -x "$builddir/cli/virt-overlay-admin" ] || {
    [ "${OVL_REQUIRE_ALL:-0}" = 1 ] && { echo "virt-overlay-admin was not built (libvirt-dev?)" >&2; exit 1; }
    echo "SKIP: built without libvirt"; exit 77; }
  [ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: runs in the main pass only"; exit 77; }
  HOOKS=${OVL_LIBVIRT_HOOKS_DIR:-/etc/libvirt/hooks}
  VIRSH="virsh -q -c qemu:///system"
  VIRT_OVERLAY_ADMIN=$builddir/cli/virt-overlay-admin
  export VIRT_OVERLAY_ADMIN
  write_conf "$T/conf" "$@"
  VIRT_OVERLAY_CONFIG=$T/conf
  export VIRT_OVERLAY_CONFIG
  at_exit "stop_pidfile $T/run/qsd.sock.pid"
  make_bases
}

# The entries of ledger FILE that are not persistent overlays (those
# stay recorded across stops), one per line; nothing if it is absent.
ephemeral_entries () { # FILE
  [ -e "$1" ] || return 0
  grep -o '{"path[^}]*}' "$1" | grep -v '"mode":"persistent"' || true
}

# libvirt passes no environment: a wrapper in HOOKS/qemu.d gives the
# hook our configuration ($T/conf).  Any installed virt-overlay hook is
# set aside meanwhile (both would claim the same disks) and put back at
# exit.
install_hook_wrapper () { # HOOKS
  wrapper=$1/qemu.d/virt-overlay-test-$$
  mkdir -p "$1/qemu.d"
  cat > "$wrapper" <<EOW
#!/bin/sh
VIRT_OVERLAY_CONFIG='$T/conf' VIRT_OVERLAY_REFILL='$REFILL' exec '$(cd "$builddir" && pwd)/hook/virt-overlay-hook' "\$@"
EOW
  chmod 0755 "$wrapper"
  at_exit "rm -f '$wrapper'"
  use_hook_wrapper "$1"
}

# The XML of a domain NAME that boots under TCG, with DISKs "target mode
# overlay base format", into $T/NAME.xml (it sets only _-prefixed names).
e2e_xml () { # NAME DISK...
  _xml=$T/$1.xml _name=$1; shift
  {
    echo "<domain type='qemu'><name>$_name</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
    echo "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
    echo "<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>"
    # shellcheck disable=SC2086
    for _disk in "$@"; do (set -- $_disk; echo "<ovl:disk target='$1' mode='$2'/>"); done
    echo "</ovl:overlays></metadata>"
    echo "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
    for _disk in "$@"; do
      # shellcheck disable=SC2086
      (set -- $_disk
       echo "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$3'/>"
       echo "<backingStore type='file'><format type='$5'/><source file='$4'/><backingStore/></backingStore>"
       echo "<target dev='$1' bus='virtio'/></disk>")
    done
    echo "<video><model type='none'/></video><memballoon model='none'/></devices></domain>"
  } > "$_xml"
}

# Define domain ovl-e2e-$$-SUFFIX (its name in $name, added to $names)
# with DISKs as for e2e_xml.
e2e_define () { # SUFFIX DISK...
  name=ovl-e2e-$$-$1; shift
  names="$names $name"
  e2e_xml "$name" "$@"
  $VIRSH define "$T/$name.xml" >/dev/null
}

# The XML of domain NAME ($UUID) with DISKs "target mode overlay base format".
domain () {
  name=$1; shift
  echo "<domain type='qemu'><name>$name</name><uuid>$UUID</uuid>"
  echo "<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>"
  for d in "$@"; do
    # shellcheck disable=SC2086
    (set -- $d; echo "<ovl:disk target='$1' mode='$2'/>")
  done
  echo "</ovl:overlays></metadata><devices>"
  for d in "$@"; do
    # shellcheck disable=SC2086
    (set -- $d
    cat <<EOD
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$3'/>
<backingStore type='file'><format type='$5'/><source file='$4'/><backingStore/></backingStore>
<target dev='$1' bus='virtio'/></disk>
EOD
    )
  done
  echo "</devices></domain>"
}

# A domain NAME (UUID) with one disk, vda, of MODE on overlay OVERLAY
# over $img/base.qcow2.
one_disk_domain () { # NAME UUID MODE OVERLAY
  cat <<EOD
<domain type='qemu'><name>$1</name><uuid>$2</uuid>
<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>
<ovl:disk target='vda' mode='$3'/></ovl:overlays></metadata><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$4'/>
<backingStore type='file'><format type='qcow2'/><source file='$img/base.qcow2'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/></disk></devices></domain>
EOD
}
