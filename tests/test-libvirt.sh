#!/bin/sh
# End to end with the real libvirtd and QEMU (TCG): virsh start on
# domains whose overlays do not exist yet, virsh destroy, managed save,
# and a refused start.  Cleans up every domain and file it made.
. "${srcdir:-.}/tests/functions.sh"
requires_root
requires "$QSD"
requires "$QEMU_IMG"
requires virsh
requires libvirtd
requires qemu-system-x86_64
# The real libvirtd runs the hook; valgrind covers the hook in test-hook.sh.
[ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: the end-to-end suite runs in the main pass only"; exit 77; }

HOOKS=${OVL_LIBVIRT_HOOKS_DIR:-/etc/libvirt/hooks}
VIRSH="virsh -q -c qemu:///system"
mkdir -p "$HOOKS/qemu.d"

# libvirt's own managed-save directory, not one of the test's.
write_conf "$T/conf" "managed_save_dir = /var/lib/libvirt/qemu/save"
at_exit "stop_pidfile $T/run/qsd.sock.pid"

install_hook_wrapper "$HOOKS"

make_bases
printf 'QFI\373' > "$img/liar.raw"; truncate -s 1M "$img/liar.raw"
chmod 0644 "$img/liar.raw"

names=""
cleanup_domains () {
  for n in $names; do
    $VIRSH destroy "$n" >/dev/null 2>&1 || true
    $VIRSH managedsave-remove "$n" >/dev/null 2>&1 || true
    $VIRSH undefine "$n" >/dev/null 2>&1 || true
  done
}
at_exit cleanup_domains

define () { e2e_define "$@"; }
state () { $VIRSH domstate "$1" 2>/dev/null | head -n 1; }
backing_of () { "$QEMU_IMG" info -U --output=json "$1" 2>/dev/null | sed -n 's/.*"backing-filename": "\(.*\)",*/\1/p'; }
btime () { stat -c %W "$1" 2>/dev/null || echo none; }

# ---- several disks: persistent and ephemeral, qcow2 and raw bases ----
define multi "vda persistent $img/m-p.qcow2 $img/base.qcow2 qcow2" \
             "vdb ephemeral $img/m-e1.qcow2 $img/base.raw raw" \
             "vdc ephemeral $img/m-e2.qcow2 $img/base.qcow2 qcow2"
dom=$name
if $VIRSH start "$dom" > "$T/out" 2>&1; then pass; else fail "virsh start: $(cat "$T/out")"; fi
[ "$(state "$dom")" = running ] && pass || fail "$dom is not running"
$VIRSH domblklist "$dom" > "$T/blk"
for f in m-p m-e1 m-e2; do
  grep -q "$img/$f.qcow2" "$T/blk" && pass || fail "$f not in domblklist: $(cat "$T/blk")"
done
[ "$(backing_of "$img/m-p.qcow2")" = "$img/base.qcow2" ] && pass || fail "m-p backing"
[ "$(backing_of "$img/m-e1.qcow2")" = "$img/base.raw" ] && pass || fail "m-e1 backing"
"$QEMU_IMG" info -U --output=json "$img/m-e1.qcow2" | grep -q '"backing-filename-format": "raw"' && pass || fail "m-e1 format"
bt=$(btime "$img/m-p.qcow2")

$VIRSH destroy "$dom" >/dev/null
[ -e "$img/m-p.qcow2" ] && pass || fail "persistent overlay gone after destroy"
[ -e "$img/m-e1.qcow2" ] || [ -e "$img/m-e2.qcow2" ] && fail "ephemeral overlays left after destroy" || pass

# A second cold boot reuses the persistent overlay and makes fresh ephemeral ones.
if $VIRSH start "$dom" > "$T/out" 2>&1; then pass; else fail "second start: $(cat "$T/out")"; fi
[ "$(btime "$img/m-p.qcow2")" = "$bt" ] && pass || fail "persistent overlay was recreated"
[ -e "$img/m-e1.qcow2" ] && [ -e "$img/m-e2.qcow2" ] && pass || fail "ephemeral overlays not recreated"

# Managed save keeps the ephemeral overlays; the start restores onto them.
ebt=$(btime "$img/m-e2.qcow2")
if $VIRSH managedsave "$dom" > "$T/out" 2>&1; then pass; else fail "managedsave: $(cat "$T/out")"; fi
[ -e "$img/m-e1.qcow2" ] && [ -e "$img/m-e2.qcow2" ] && pass || fail "managed save lost the ephemeral overlays"
if $VIRSH start "$dom" > "$T/out" 2>&1; then pass; else fail "start from managed save: $(cat "$T/out")"; fi
[ "$(state "$dom")" = running ] && pass || fail "$dom not running after restore"
[ "$(btime "$img/m-e2.qcow2")" = "$ebt" ] && pass || fail "restore ran on a fresh ephemeral overlay"
$VIRSH destroy "$dom" >/dev/null
[ -e "$img/m-e2.qcow2" ] && fail "ephemeral overlay left after the last destroy" || pass

# ---- a bad base: virsh start fails with the hook's message, no file ----
define bad "vda persistent $img/b-ok.qcow2 $img/base.qcow2 qcow2" \
           "vdb ephemeral $img/b-bad.qcow2 $img/liar.raw raw"
before=$(snapshot "$img")
if $VIRSH start "$name" > "$T/out" 2>&1; then fail "start with a bad base succeeded"; else pass; fi
grep -q "disk vdb: base '$img/liar.raw': declared raw but carries a qcow2/qcow header" "$T/out" \
  && pass || fail "virsh start does not show the hook's message: $(cat "$T/out")"
[ "$(snapshot "$img")" = "$before" ] && pass || fail "files changed by a refused start"
[ "$(state "$name")" = "shut off" ] && pass || fail "$name is $(state "$name")"
finish
