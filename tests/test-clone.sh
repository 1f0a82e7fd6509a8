#!/bin/sh
# virt-overlay clone against the real libvirtd and QEMU: NEW is defined
# with a new name, UUID and MAC, its handled disks on new overlays beside
# SOURCE's over the same bases, and nothing is created until it starts;
# then the hook makes them and SOURCE's are untouched.  --mode, --json
# (golden: tests/data/admin/clone.json), and what is refused: a
# writable disk virt-overlay does not handle, a file at a new overlay's
# path, a NEW that exists.
. "${srcdir:-.}/tests/functions.sh"
requires qemu-system-x86_64
admin_suite "managed_save_dir = /var/lib/libvirt/qemu/save"
install_hook_wrapper "$HOOKS"
VO=$builddir/cli/virt-overlay

names=""
at_exit 'for n in $names; do $VIRSH destroy "$n" >/dev/null 2>&1 || true; $VIRSH undefine "$n" >/dev/null 2>&1 || true; done'
# vda's overlay carries the domain's name; vdb's does not.
e2e_define src "vda persistent $img/ovl-e2e-$$-src-vda.qcow2 $img/base.qcow2 qcow2" \
               "vdb ephemeral $img/scratch.qcow2 $img/base.raw raw"
src=$name
$VIRSH dumpxml "$src" |
  sed "s|<devices>|<devices><interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface>|" \
  > "$T/$src.xml"
$VIRSH define "$T/$src.xml" > /dev/null && pass || fail "define $src"
$VIRSH start "$src" > "$T/out" 2>&1 && pass || fail "start $src: $(cat "$T/out")"
$VIRSH destroy "$src" > /dev/null
qemu-io -c "write -P 0x5a 0 64k" "$img/$src-vda.qcow2" > /dev/null
sum=$(sha256sum < "$img/$src-vda.qcow2")

# ---- clone: defined, nothing made ----
new=ovl-e2e-$$-new
names="$names $new"
before=$(ls "$img")
$VO clone "$src" "$new" > "$T/out" 2> "$T/err" && pass || fail "clone: $(cat "$T/err")"
grep -qx "domain $new defined as a linked clone of $src" "$T/out" && pass || fail "clone said: $(cat "$T/out")"
grep -qx "disk vda: persistent overlay '$img/$new-vda.qcow2' on '$img/base.qcow2', made at its first start" "$T/out" &&
  pass || fail "clone said, vda: $(cat "$T/out")"
grep -qx "disk vdb: ephemeral overlay '$img/$new-scratch.qcow2' on '$img/base.raw', made at its first start" "$T/out" &&
  pass || fail "clone said, vdb: $(cat "$T/out")"
[ "$(ls "$img")" = "$before" ] && pass || fail "clone made files: $(ls "$img")"
[ "$($VIRSH domuuid "$new")" != "$($VIRSH domuuid "$src")" ] && pass || fail "the clone has SOURCE's UUID"
$VIRSH dumpxml "$new" > "$T/new.xml"
grep -q "52:54:00:aa:bb:cc" "$T/new.xml" && fail "the clone has SOURCE's MAC address" || pass
grep -q "<mac address=" "$T/new.xml" && pass || fail "libvirt gave the clone no MAC address"

# ---- its first start makes its overlays; SOURCE's are untouched ----
$VIRSH start "$new" > "$T/out" 2>&1 && pass || fail "start $new: $(cat "$T/out")"
$VIRSH domblklist "$new" | grep -q "$img/$new-vda.qcow2" && pass || fail "$new not on its own overlay"
$VIRSH destroy "$new" > /dev/null
[ -e "$img/$new-vda.qcow2" ] && [ ! -e "$img/$new-scratch.qcow2" ] && pass ||
  fail "the clone's overlays after a start and a stop: $(ls "$img")"
"$QEMU_IMG" info -U --output=json "$img/$new-vda.qcow2" | grep -q "\"backing-filename\": \"$img/base.qcow2\"" &&
  pass || fail "the clone's overlay is not on SOURCE's base"
qemu-io -r -c "read -P 0 0 64k" "$img/$new-vda.qcow2" | grep -q "read 65536/65536" && pass ||
  fail "the clone sees SOURCE's data"
[ "$(sha256sum < "$img/$src-vda.qcow2")" = "$sum" ] && pass || fail "SOURCE's overlay changed"

# ---- --mode ephemeral, --json ----
new2=ovl-e2e-$$-eph
names="$names $new2"
$VO clone --mode ephemeral --json "$src" "$new2" > "$T/out.json" 2> "$T/err" && pass ||
  fail "clone --mode ephemeral: $(cat "$T/err")"
sed -e "s|$img|@IMG@|g" -e "s/$$/@PID@/g" "$T/out.json" > "$T/got.json"
diff -u "$srcdir/tests/data/admin/clone.json" "$T/got.json" > "$T/diff" && pass ||
  fail "clone --json differs from tests/data/admin/clone.json: $(cat "$T/diff")"

# ---- refused ----
refused () { # WANT ARGS...
  want=$1; shift
  set +e
  $VO clone "$@" > "$T/out" 2> "$T/err"; rc=$?
  set -e
  [ "$rc" != 0 ] && grep -qF -e "$want" "$T/err" && pass || fail "clone $*: $rc $(cat "$T/err")"
}
refused "defining $new: " "$src" "$new"
taken=ovl-e2e-$$-taken
: > "$img/$taken-vda.qcow2"
refused "disk vda: '$img/$taken-vda.qcow2' exists already" "$src" "$taken"
$VIRSH dominfo "$taken" > /dev/null 2>&1 && { names="$names $taken"; fail "a refused clone stayed defined"; } || pass
[ -s "$img/$taken-vda.qcow2" ] && fail "the file at the new path was written" || pass
# A domain that names the new path (its overlay not made yet) keeps it.
e2e_define namer "vda persistent $img/ovl-e2e-$$-taken2-vda.qcow2 $img/base.qcow2 qcow2"
refused "disk vda: domain $name names '$img/ovl-e2e-$$-taken2-vda.qcow2' as its disk" "$src" "ovl-e2e-$$-taken2"
$VIRSH dominfo "ovl-e2e-$$-taken2" > /dev/null 2>&1 && { names="$names ovl-e2e-$$-taken2"; fail "a refused clone stayed defined"; } || pass
refused "--mode: 'sometimes' is not persistent or ephemeral" --mode sometimes "$src" x
refused "is not qemu:///system: refused" --connect "qemu+unix:///system" "$src" ovl-e2e-$$-no
sed -i "s|</devices>|<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$img/base.raw'/><target dev='vdc' bus='virtio'/></disk></devices>|" "$T/$src.xml"
$VIRSH define "$T/$src.xml" > /dev/null
refused "disk vdc: virt-overlay does not handle it, and the clone would write to it too" "$src" ovl-e2e-$$-no
refused "domain no-such-$$: " "no-such-$$" ovl-e2e-$$-no
finish
