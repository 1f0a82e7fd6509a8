#!/bin/sh
# A crash at every step: the hook is killed (SIGKILL, as the OOM killer
# or a host crash would) at each invocation of each syscall that changes
# something or talks to qsd, during the prepare of a domain with eight
# ephemeral disks and a persistent one.  After each kill the next start
# must work and make every overlay fresh, and after a stop nothing of
# ours may remain: no overlay, no temporary file, no ledger entry, no
# qsd job or block node.
#
# OVL_CRASH_POOL=1 runs the same with the warm pool on, so that the
# kills land in pool takes too (in the hook only: the refiller it starts
# runs the same engine as the hook without a pool).
. "${srcdir:-.}/tests/functions.sh"
requires_root                   # trusted.* tokens: ephemeral needs them on tmpfs
requires "$QSD"
requires "$QEMU_IMG"
requires strace
[ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: strace and valgrind do not mix; the main pass covers it"; exit 77; }

HOOK="$builddir/hook/virt-overlay-hook"
QMP="$builddir/tests/qmp-cmd"
UUID=7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f
mkdir -m 0711 "$T/save"
pool=${OVL_CRASH_POOL:-0}
if [ "$pool" = 1 ]; then
  write_conf "$T/conf" "pool_size = 16"
else
  write_conf "$T/conf" "pool_size = 0"
fi
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases

disks="vda vdb vdc vdd vde vdf vdg vdh"
{
  echo "<domain type='qemu'><name>crash</name><uuid>$UUID</uuid>"
  echo "<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>"
  for t in $disks; do echo "<ovl:disk target='$t' mode='ephemeral'/>"; done
  echo "<ovl:disk target='vdp' mode='persistent'/>"
  echo "</ovl:overlays></metadata><devices>"
  for t in $disks vdp; do
    echo "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    echo "<source file='$img/$t.qcow2'/><backingStore type='file'><format type='qcow2'/>"
    echo "<source file='$img/base.qcow2'/><backingStore/></backingStore>"
    echo "<target dev='$t' bus='virtio'/></disk>"
  done
  echo "</devices></domain>"
} > "$T/dom.xml"

hook () { "$HOOK" crash "$@" < "$T/dom.xml"; }
# The identity of an overlay: inode, birth and token ("" if absent).
id_of () {
  [ -e "$1" ] || return 0
  echo "$(stat -c '%i.%W' "$1") $(getfattr --only-values -n trusted.virt-overlay.id "$1" 2>/dev/null)"
}
# The pool refiller is detached: let it finish before looking.
settle () {
  i=0
  while pgrep -f -- "$REFILL " >/dev/null 2>&1 && [ $i -lt 200 ]; do
    sleep 0.05; i=$((i + 1))
  done
}
leftovers () {
  ls -A "$img" | grep -E '^\.virt-overlay-.*\.tmp$' || true
  for t in $disks; do [ -e "$img/$t.qcow2" ] && echo "overlay $t.qcow2"; done
  [ -n "$(ephemeral_entries "$T/state/domains/$UUID")" ] && echo "ledger: $(cat "$T/state/domains/$UUID")"
  [ "$("$QMP" "$T/run/qsd.sock" query-jobs)" = "[]" ] || echo "qsd jobs: $("$QMP" "$T/run/qsd.sock" query-jobs)"
  [ "$("$QMP" "$T/run/qsd.sock" query-named-block-nodes)" = "[]" ] || echo "qsd block nodes left"
}

# A clean run first: qsd is started (so that no kill lands in it), the
# pool filled, and the syscalls counted.
hook prepare begin - || { echo "first prepare failed" >&2; exit 1; }
hook release end -
settle
follow=-f
[ "$pool" = 1 ] && follow=
strace $follow -qq -c -o "$T/count" -e trace=openat,mkdir,fsetxattr,flock,write,sendmsg,sendto,fdatasync,fsync,sync_file_range,renameat2,rename,linkat,unlinkat,unlink,close \
  "$HOOK" crash prepare begin - < "$T/dom.xml" || { echo "counted prepare failed" >&2; exit 1; }
hook release end -
settle
rm -f "$img/vdp.qcow2"

kills=0 runs=0
while read -r name calls; do
  n=1
  while [ "$n" -le "$calls" ]; do
    runs=$((runs + 1))
    set +e
    strace $follow -qq -o /dev/null -e trace="$name" -e inject="$name":signal=SIGKILL:when="$n" \
      "$HOOK" crash prepare begin - < "$T/dom.xml" > /dev/null 2> "$T/killed.err"
    rc=$?
    set -e
    [ "$rc" = 137 ] && kills=$((kills + 1))
    settle
    for t in $disks; do eval "mid_$t=\$(id_of \"\$img/\$t.qcow2\")"; done
    # The next start works, and every ephemeral overlay is fresh.
    if hook prepare begin - 2> "$T/err"; then pass; else
      fail "$name #$n: the start after the kill failed: $(cat "$T/err")"
    fi
    for t in $disks vdp; do
      [ -f "$img/$t.qcow2" ] || fail "$name #$n: $t has no overlay after the restart"
    done
    # What the killed start left is not what the guest boots on.
    for t in $disks; do
      eval "mid=\$mid_$t"
      [ -z "$mid" ] || [ "$mid" != "$(id_of "$img/$t.qcow2")" ] ||
        fail "$name #$n: $t's overlay from the killed start was kept"
    done
    hook release end - 2> "$T/err"
    [ -s "$T/err" ] && fail "$name #$n: release: $(cat "$T/err")"
    settle
    # A dead caller's concluded qsd jobs are dismissed by the next caller
    # that talks to qsd; with the pool on, nothing here may have.
    if [ "$pool" = 1 ]; then
      $VO create "$img/base.qcow2" "$img/probe.qcow2" >/dev/null 2>&1 || fail "probe create failed"
      rm -f "$img/probe.qcow2"
    fi
    left=$(leftovers)
    if [ -n "$left" ]; then fail "$name #$n: left after the stop: $left"; else pass; fi
    rm -f "$img/vdp.qcow2"
    n=$((n + 1))
  done
done <<EOF
$(awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { print $NF, $4 }' "$T/count")
EOF
echo "$runs runs, $kills killed by an injected SIGKILL (pool=$pool)"
[ "$kills" -gt 50 ] && pass || fail "only $kills kills: the injection did not work"
finish
