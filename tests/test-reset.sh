#!/bin/sh
# virt-overlay reset against the real libvirtd and QEMU: a shut-off
# domain's persistent overlays that virt-overlay made go, and the next
# start makes fresh ones on the base; a running domain, an ephemeral
# disk, a disk not handled, and an overlay virt-overlay did not make (or
# no longer the file it made) are refused and left alone.  --json is
# golden (tests/data/admin/reset.json).
. "${srcdir:-.}/tests/functions.sh"
requires qemu-system-x86_64
admin_suite "managed_save_dir = /var/lib/libvirt/qemu/save"
install_hook_wrapper "$HOOKS"
VO=$builddir/cli/virt-overlay

names=""
at_exit 'for n in $names; do $VIRSH destroy "$n" >/dev/null 2>&1 || true; $VIRSH undefine "$n" >/dev/null 2>&1 || true; done'
e2e_define reset "vda persistent $img/r-a.qcow2 $img/base.qcow2 qcow2" \
                 "vdb persistent $img/r-b.qcow2 $img/base.raw raw" \
                 "vdc ephemeral $img/r-c.qcow2 $img/base.qcow2 qcow2"
dom=$name
$VIRSH start "$dom" > "$T/out" 2>&1 && pass || fail "virsh start: $(cat "$T/out")"
refused () { # WANT-MESSAGE ARGS...
  want=$1; shift
  set +e
  $VO reset "$@" > "$T/out" 2> "$T/err"; rc=$?
  set -e
  [ "$rc" = 1 ] && grep -qF -e "$want" "$T/err" && pass || fail "reset $*: $rc $(cat "$T/err")"
}

# ---- refused while it runs ----
refused "domain $dom is running" "$dom"
[ -e "$img/r-a.qcow2" ] && pass || fail "reset removed an overlay of a running domain"
# The guest writes to vda; a second start keeps it.
$VIRSH destroy "$dom" > /dev/null
qemu-io -c "write -P 0x5a 0 64k" "$img/r-a.qcow2" > /dev/null

# ---- what is refused, and left alone ----
refused "disk vdc: ephemeral, and its overlay was not made as a persistent one: every start makes it fresh already" --disk vdc "$dom"
refused "disk vdz: not a disk of domain $dom that virt-overlay handles" --disk vdz "$dom"
refused "domain no-such-$$: " "no-such-$$"
refused "is not qemu:///system: refused" --connect "qemu:///system?socket=/run/libvirt/libvirt-sock" "$dom"
# vdb's overlay is someone else's file now.
cp "$img/r-b.qcow2" "$T/copy" && rm "$img/r-b.qcow2" && cp "$T/copy" "$img/r-b.qcow2"
# (its inode number may well be the old one's: ext4 reuses it at once)
id_b=$(stat -c '%i %W %Y' "$img/r-b.qcow2")
refused "disk vdb: '$img/r-b.qcow2' is no longer the overlay virt-overlay made; left alone" --disk vdb "$dom"
[ -e "$img/r-b.qcow2" ] && pass || fail "reset removed a file virt-overlay did not make"

# Another domain built on vda's overlay (its backing file) keeps it.
e2e_define user "vda persistent $img/u-a.qcow2 $img/r-a.qcow2 qcow2"
refused "disk vda: domain $name uses '$img/r-a.qcow2' too" --disk vda "$dom"
$VIRSH undefine "$name" > /dev/null
[ -e "$img/r-a.qcow2" ] && pass || fail "reset removed another domain's backing file"

# ---- reset vda: gone, and the next start makes a fresh one ----
$VO reset --disk vda "$dom" > "$T/out" 2> "$T/err" && pass || fail "reset --disk vda: $(cat "$T/err")"
grep -qx "disk vda: persistent overlay '$img/r-a.qcow2' removed: the next start makes a fresh one on '$img/base.qcow2'" "$T/out" &&
  pass || fail "reset said: $(cat "$T/out")"
[ ! -e "$img/r-a.qcow2" ] && pass || fail "vda's overlay is still there"
$VIRSH start "$dom" > "$T/out" 2>&1 && pass || fail "start after reset: $(cat "$T/out")"
$VIRSH destroy "$dom" > /dev/null
qemu-io -r -c "read -P 0 0 64k" "$img/r-a.qcow2" | grep -q "read 65536/65536" && pass ||
  fail "vda's new overlay still holds the guest's data"

# ---- all persistent disks at once, --json (vdb refused: not ours) ----
set +e
$VO reset --json "$dom" > "$T/out.json" 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && pass || fail "reset --json with one disk refused: $rc"
sed -e "s|$img|@IMG@|g" -e "s/$dom/@DOM@/g" "$T/out.json" > "$T/got.json"
diff -u "$srcdir/tests/data/admin/reset.json" "$T/got.json" > "$T/diff" && pass ||
  fail "reset --json differs from tests/data/admin/reset.json: $(cat "$T/diff")"
[ "$(stat -c '%i %W %Y' "$img/r-b.qcow2" 2>&1)" = "$id_b" ] && pass ||
  fail "vdb, not made by virt-overlay, was touched: $(ls -li "$img")"
[ ! -e "$img/r-a.qcow2" ] && pass || fail "vda not reset again"

# ---- a disk made persistent, then switched to ephemeral, can be reset ----
$VIRSH start "$dom" > "$T/out" 2>&1 && $VIRSH destroy "$dom" > /dev/null && pass || fail "start: $(cat "$T/out")"
$VIRSH dumpxml --inactive "$dom" | sed "s|target=.vda. mode=.persistent.|target='vda' mode='ephemeral'|" > "$T/switched.xml"
grep -q "target='vda' mode='ephemeral'" "$T/switched.xml" && $VIRSH define "$T/switched.xml" > /dev/null &&
  pass || fail "switching vda to ephemeral"
$VIRSH start "$dom" > "$T/out" 2>&1 && fail "started an ephemeral disk on a persistent overlay" || pass
# (vdb, not made by virt-overlay, is refused: the status is 1)
$VO reset "$dom" > "$T/out" 2> "$T/err" || true
grep -q "^disk vda: persistent overlay '$img/r-a.qcow2' removed" "$T/out" &&
  pass || fail "reset after the switch: $(cat "$T/out" "$T/err")"
$VIRSH start "$dom" > "$T/out" 2>&1 && pass || fail "start after the reset: $(cat "$T/out")"
$VIRSH destroy "$dom" > /dev/null
[ ! -e "$img/r-a.qcow2" ] && pass || fail "the ephemeral vda stayed after the stop"
finish
