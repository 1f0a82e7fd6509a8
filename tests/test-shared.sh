#!/bin/sh
# Shared storage: a filesystem that refuses renameat2(RENAME_NOREPLACE)
# with EINVAL, as NFS, CephFS and FUSE do (here a real FUSE mount,
# bindfs): create, an ephemeral start and stop through the hook, the
# pool, and a take that dies between link and unlink.  Then liveness by
# lock: callers in another pid namespace leave a live caller's temporary
# file and qsd job alone.  Against the real qemu-storage-daemon.
. "${srcdir:-.}/tests/functions.sh"
requires_root
requires "$QSD"
requires "$QEMU_IMG"
requires bindfs
requires fusermount
requires strace
requires unshare
requires flock
requires python3

HOOK="$builddir/hook/virt-overlay-hook"

# $img becomes a bindfs mount of $T/src (hooks run last first: unmount
# after the daemons are gone).
mkdir -m 0711 "$T/src" "$T/save"
bindfs --no-allow-other "$T/src" "$img"
at_exit "fusermount -u '$img' 2>/dev/null || umount -l '$img'"
at_exit "stop_pidfile $T/run/qsd.sock.pid"
chmod 0711 "$img"

# The point of this suite: the flag must really be refused here.
touch "$img/probe"
python3 - "$img" <<'EOF' || { echo "FAIL: renameat2(RENAME_NOREPLACE) is not refused with EINVAL on bindfs: this suite would prove nothing" >&2; exit 1; }
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1].encode()
r = libc.renameat2(-100, d + b"/probe", -100, d + b"/probe2", 1)
sys.exit(0 if r == -1 and ctypes.get_errno() == errno.EINVAL else 1)
EOF
rm -f "$img/probe"
pass

write_conf "$T/conf"
export VIRT_OVERLAY_CONFIG=$T/conf
make_bases
B=$img/base.qcow2
# Link counts from the filesystem below: FUSE clients cache attributes.
names () { stat -c %h "$T/src/$1"; }
no_temps () { ! find "$img" -name '.virt-overlay-*.tmp' | grep -q .; }

# ---- create ----
$VO create "$B" "$img/a.qcow2" && pass || fail "create on a filesystem without RENAME_NOREPLACE"
"$QEMU_IMG" check -q "$img/a.qcow2" && pass || fail "a.qcow2 fails qemu-img check"
"$QEMU_IMG" info --output=json "$img/a.qcow2" | grep -q "\"backing-filename\": \"$B\"" \
  && pass || fail "a.qcow2 backing file"
[ "$(names a.qcow2)" = 1 ] && pass || fail "a.qcow2 has $(names a.qcow2) names"
no_temps && pass || fail "temporary files left: $(ls -a "$img")"
# Still never replaces.
echo keep > "$img/exists.qcow2"
set +e; $VO create "$B" "$img/exists.qcow2" 2> "$T/err"; rc=$?; set -e
[ "$rc" = 1 ] && [ "$(cat "$img/exists.qcow2")" = keep ] && pass || fail "existing file: $rc $(cat "$T/err")"

# ---- an ephemeral start and stop through the hook ----
UUID=4f9c2a3e-1b7d-4e2a-9c1f-0123456789ab
cat > "$T/e.xml" <<EOF
<domain type='qemu'><name>dom</name><uuid>$UUID</uuid>
<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'><ovl:disk target='vda' mode='ephemeral'/></ovl:overlays></metadata>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$img/e.qcow2'/>
<backingStore type='file'><format type='qcow2'/><source file='$B'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/></disk></devices></domain>
EOF
hook () {
  set +e; "$HOOK" dom "$@" > "$T/stdout" 2> "$T/stderr"; rc=$?; set -e
  [ "$rc" = 0 ] && pass || fail "hook $*: exit $rc ($(cat "$T/stderr"))"
}
hook prepare begin - < "$T/e.xml"
"$QEMU_IMG" check -q "$img/e.qcow2" && pass || fail "ephemeral overlay not made"
hook release end - < "$T/e.xml"
[ -e "$img/e.qcow2" ] && fail "ephemeral overlay not removed at release" || pass
hook prepare begin - < "$T/e.xml"
[ -f "$img/e.qcow2" ] && pass || fail "ephemeral overlay not made at the second start"
hook release end - < "$T/e.xml"
no_temps && pass || fail "temporary files left by the hook: $(ls -a "$img")"

# ---- the pool: fill, take, and a take that dies between link and unlink ----
write_conf "$T/conf" "pool_size = 2"
ready () { find "$T/src/.virt-overlay-pool" -name 'ready-*.qcow2' -printf "%i %n\n" 2>/dev/null | sort; }
settle () { # no refiller at work
  for l in "$img"/.virt-overlay-pool/*/lock; do flock "$l" true 2>/dev/null || true; done
}
$VO pool fill "$B" && pass || fail "pool fill"
[ "$(ready | wc -l)" = 2 ] && pass || fail "fill made $(ready | wc -l), want 2"
ready > "$T/before"
$VO create "$B" "$img/hit.qcow2" && pass || fail "create from the pool"
grep -q "^$(stat -c %i "$img/hit.qcow2") " "$T/before" && pass || fail "not handed out from the pool"
[ "$(names hit.qcow2)" = 1 ] && pass || fail "taken overlay has $(names hit.qcow2) names"
sleep 0.3; settle
[ "$(ready | wc -l)" = 2 ] && pass || fail "pool not refilled ($(ready | wc -l))"
no_temps && pass || fail "temporary files left by the refiller: $(ls -aR "$img")"

# Killed at the unlink of the pool's name: the overlay is published, and
# its pool name still there.
set +e
strace -f -qq -o /dev/null -e trace=unlinkat -e inject=unlinkat:signal=SIGKILL:when=1 \
  $builddir/cli/virt-overlay create "$B" "$img/crash.qcow2" 2> "$T/err"
set -e
[ -f "$img/crash.qcow2" ] && [ "$(names crash.qcow2)" = 2 ] \
  && pass || fail "no take killed between link and unlink ($(ls -la "$img"); $(cat "$T/err"))"
crash=$(stat -c %i "$img/crash.qcow2" 2>/dev/null || echo none)
ready | grep -q "^$crash 2$" && pass || fail "the pool does not hold the killed take's file: $(ready)"
# The next takes never hand it out again: two domains on one disk.
for i in 1 2 3; do
  $VO create "$B" "$img/next$i.qcow2" && pass || fail "create after the killed take"
  [ "$(stat -c %i "$img/next$i.qcow2")" != "$crash" ] && pass || fail "handed out the killed take's overlay again"
  sleep 0.3; settle
done
ready | grep -q "^$crash " && fail "the killed take's file is still pooled" || pass
[ "$(names crash.qcow2 2>/dev/null)" = 1 ] && pass || fail "crash.qcow2 still has two names"
"$QEMU_IMG" check -q "$img/crash.qcow2" 2>/dev/null && pass || fail "crash.qcow2 was damaged"
write_conf "$T/conf"

# ---- liveness by lock, across pid namespaces ----
# A create stalled by the fake daemon holds its temporary file; a caller
# in another pid namespace, in the same directory, must leave it alone
# (the stalled caller's pid means nothing there), and still reap a stale
# one nobody holds.
fake=$builddir/tests/fake-qsd
rm -f "$T/fake.sock"
FAKE_QSD_FAULT=stall-create:1 "$fake" --chardev "socket,id=m,path=$T/fake.sock" --monitor chardev=m \
  --pidfile "$T/fake.pid" --daemonize
at_exit "stop_pidfile $T/fake.pid"
write_conf "$T/stallconf" "qsd_socket = $T/fake.sock" "qsd_spawn = no" "timeout_ms = 15000"
VIRT_OVERLAY_CONFIG=$T/stallconf $builddir/cli/virt-overlay create "$B" "$img/stalled.qcow2" 2>/dev/null &
stalled=$!
i=0
until find "$img" -maxdepth 1 -name '.virt-overlay-*.tmp' | grep -q . || [ $i -ge 100 ]; do
  sleep 0.05; i=$((i + 1))
done
live=$(find "$img" -maxdepth 1 -name '.virt-overlay-*.tmp')
[ -n "$live" ] && pass || fail "the stalled create made no temporary file"
live_ino=$(stat -c %i "$live")
: > "$img/.virt-overlay-999999-1.tmp"
# The other caller gets as far as the daemon (none there) after reaping.
write_conf "$T/noneconf" "qsd_socket = $T/none.sock" "qsd_spawn = no"
inner () {
  set +e
  VIRT_OVERLAY_CONFIG=$1 unshare --pid --fork --mount-proc \
    $builddir/cli/virt-overlay create "$B" "$img/$2" 2> "$T/err"
  rc=$?; set -e
}
inner "$T/noneconf" inner.qcow2
[ "$rc" = 1 ] && grep -q "not running and qsd_spawn is off" "$T/err" && pass || fail "inner caller: $rc $(cat "$T/err")"
[ "$(stat -c %i "$live" 2>/dev/null)" = "$live_ino" ] && pass \
  || fail "a live caller's temporary file was removed by a caller in another pid namespace"
[ -e "$img/.virt-overlay-999999-1.tmp" ] && fail "a stale temporary file nobody holds was kept" || pass
# Once its maker is dead, it goes too.
kill -9 "$stalled"; wait "$stalled" 2>/dev/null || true
inner "$T/noneconf" inner.qcow2
[ -e "$live" ] && fail "a dead caller's temporary file was kept" || pass
stop_pidfile "$T/fake.pid"

# A caller in another pid namespace than the daemon is refused: the
# daemon would open /proc/PID/fd/N of another process (the fake daemon
# opens nothing, so nothing is at risk here).
rm -f "$T/fake.sock"
"$fake" --chardev "socket,id=m,path=$T/fake.sock" --monitor chardev=m --pidfile "$T/fake.pid" --daemonize
write_conf "$T/fakeconf" "qsd_socket = $T/fake.sock" "qsd_spawn = no"
inner "$T/fakeconf" viafake.qcow2
[ "$rc" = 1 ] && grep -q "runs in another pid namespace" "$T/err" && pass || fail "caller in another pid namespace than qsd: $rc $(cat "$T/err")"
[ -e "$img/viafake.qcow2" ] && fail "made an overlay through a daemon in another pid namespace" || pass
"$builddir/tests/qmp-cmd" "$T/fake.sock" query-jobs | grep -q ovl- && fail "jobs sent to a daemon in another pid namespace" || pass
stop_pidfile "$T/fake.pid"

# Concluded qsd jobs: one of a caller that holds its lock beside the
# socket (here, in the outer pid namespace) survives a caller in another
# pid namespace (with its daemon); one whose lock nobody holds is
# dismissed, and its lock file removed.
rm -f "$T/fake.sock"
sh -c 'exec flock "$0.caller-$$" sleep 60' "$T/fake.sock" &
holder=$!
at_exit "kill $holder 2>/dev/null || true"
i=0
until [ -e "$T/fake.sock.caller-$holder" ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
deadid=$(sh -c 'echo $$')
: > "$T/fake.sock.caller-$deadid"
set +e
VIRT_OVERLAY_CONFIG=$T/fakeconf unshare --pid --fork --mount-proc sh -c '
  fake=$1 T=$2 B=$3 img=$4 builddir=$5; shift 5
  "$fake" --chardev "socket,id=m,path=$T/fake.sock" --monitor chardev=m --daemonize || exit 1
  for id in "$@"; do
    "$builddir/tests/qmp-cmd" "$T/fake.sock" blockdev-create \
      "{\"job-id\":\"ovl-$id-1\",\"options\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"/proc/self/fd/9\",\"cache\":{\"no-flush\":true},\"locking\":\"off\"},\"size\":1048576,\"backing-file\":\"/b\",\"backing-fmt\":\"raw\",\"cluster-size\":65536,\"lazy-refcounts\":false,\"extended-l2\":false}}" >/dev/null
  done
  "$builddir/tests/qmp-cmd" "$T/fake.sock" query-jobs > "$T/jobs.before"
  "$builddir/cli/virt-overlay" create "$B" "$img/viafake.qcow2" 2> "$T/err"
  echo $? > "$T/rc"
  "$builddir/tests/qmp-cmd" "$T/fake.sock" query-jobs > "$T/jobs"
' sh "$fake" "$T" "$B" "$img" "$builddir" "$holder" "$deadid"
set -e
grep -q "ovl-$holder-1" "$T/jobs.before" && grep -q "ovl-$deadid-1" "$T/jobs.before" \
  && pass || fail "no jobs to judge: $(cat "$T/jobs.before")"
[ "$(cat "$T/rc")" = 0 ] && pass || fail "create in the daemon's pid namespace: $(cat "$T/err")"
grep -q "ovl-$holder-1" "$T/jobs" && pass || fail "a live caller's job was dismissed from another pid namespace"
grep -q "ovl-$deadid-1" "$T/jobs" && fail "a job nobody holds was left" || pass
[ -e "$T/fake.sock.caller-$deadid" ] && fail "a free caller lock was left" || pass
[ -e "$T/fake.sock.caller-$holder" ] && pass || fail "a held caller lock was removed"
ls "$T" | grep -q '^fake.sock.caller-[0-9a-f]\{16\}$' && fail "the caller's own lock was left: $(ls "$T")" || pass
finish
