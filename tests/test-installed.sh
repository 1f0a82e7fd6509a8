#!/bin/sh
# The installed package, end to end (make check-installed, after
# "apt-get install ./virt-overlay_*.deb"): libvirtd runs the hook the
# package put in /etc/libvirt/hooks/qemu.d/ with the package's own
# configuration (/etc/virt-overlay/virt-overlay.conf, overlays and bases
# in /var/lib/libvirt/images) and the qemu-storage-daemon it starts
# itself; virt-overlay status, reset, clone and gc run through the
# installed admin program; the manual pages, the bash completion, the
# tmpfiles.d entry and the state directory are where they belong.
# Nothing of this build is used.  Everything it makes it removes.
. "${srcdir:-.}/tests/functions.sh"
requires_root
requires virsh
requires libvirtd
requires qemu-system-x86_64
VO=/usr/bin/virt-overlay
unset VIRT_OVERLAY_REFILL VIRT_OVERLAY_ADMIN VIRT_OVERLAY_CONFIG
HOOK=/etc/libvirt/hooks/qemu.d/virt-overlay
VIRSH="virsh -q -c qemu:///system"

# ---- the files ----
for f in /usr/bin/virt-overlay /usr/libexec/virt-overlay-hook /usr/libexec/virt-overlay-refill \
         /usr/libexec/virt-overlay-admin; do
  [ -x "$f" ] && pass || fail "$f is not installed"
done
[ "$(readlink "$HOOK")" = /usr/libexec/virt-overlay-hook ] && pass || fail "$HOOK: $(ls -l "$HOOK" 2>&1)"
dpkg-query -W -f '${Conffiles}\n' virt-overlay | grep -q " /etc/virt-overlay/virt-overlay.conf " && pass ||
  fail "the configuration is not a conffile"
[ -d /var/lib/virt-overlay ] && pass || fail "no state directory"
grep -q "^d /run/virt-overlay 0700 root root" /usr/lib/tmpfiles.d/virt-overlay.conf && pass ||
  fail "tmpfiles.d entry"
[ -f /lib/systemd/system/virt-overlay-qsd.service ] && pass || fail "no systemd unit"
for page in virt-overlay.1 virt-overlay.conf.5 virt-overlay-hook.8; do
  [ -f "/usr/share/man/man${page##*.}/$page.gz" ] && pass || fail "manual page $page"
done
bash -c '. /usr/share/bash-completion/completions/virt-overlay; COMP_WORDS=(virt-overlay g); COMP_CWORD=1
         _virt_overlay; echo "${COMPREPLY[*]}"' | grep -qx gc && pass || fail "bash completion"
$VO --version | grep -q "^virt-overlay " && pass || fail "virt-overlay --version"

# ---- libvirtd runs the installed hook ----
sh "$srcdir/contrib/libvirtd-ensure.sh" /etc/libvirt/hooks
dir=/var/lib/libvirt/images/virt-overlay-test-$$
mkdir -m 0755 "$dir"
at_exit "rm -rf '$dir'"
"$QEMU_IMG" create -q -f qcow2 "$dir/base.qcow2" 64M
chmod 0644 "$dir/base.qcow2"
names=""
at_exit 'for n in $names; do $VIRSH destroy "$n" >/dev/null 2>&1 || true; $VIRSH undefine "$n" >/dev/null 2>&1 || true; done'
# the daemon the hook starts, stopped at the end
at_exit 'for p in /run/virt-overlay/qsd.sock*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done'
e2e_define inst "vda persistent $dir/ovl-e2e-$$-inst-vda.qcow2 $dir/base.qcow2 qcow2" \
                "vdb ephemeral $dir/scratch.qcow2 $dir/base.qcow2 qcow2"
dom=$name
$VIRSH start "$dom" > "$T/out" 2>&1 && pass || fail "virsh start: $(cat "$T/out")"
[ -f "$dir/ovl-e2e-$$-inst-vda.qcow2" ] && [ -f "$dir/scratch.qcow2" ] && pass ||
  fail "the installed hook made no overlays: $(ls "$dir")"
$VO status --json "$dom" > "$T/status" 2> "$T/err" && grep -q '"made-by-virt-overlay":true' "$T/status" &&
  pass || fail "status: $(cat "$T/status" "$T/err")"
$VIRSH destroy "$dom" > /dev/null
[ ! -e "$dir/scratch.qcow2" ] && [ -e "$dir/ovl-e2e-$$-inst-vda.qcow2" ] && pass ||
  fail "after the stop: $(ls "$dir")"
ls /var/lib/virt-overlay/domains/ | grep -q . && pass || fail "no ledger in the state directory"

# ---- reset, clone, gc through the installed admin program ----
$VO reset "$dom" > "$T/out" 2> "$T/err" && [ ! -e "$dir/ovl-e2e-$$-inst-vda.qcow2" ] && pass ||
  fail "reset: $(cat "$T/out" "$T/err")"
clone=ovl-e2e-$$-copy
names="$names $clone"
$VO clone "$dom" "$clone" > "$T/out" 2> "$T/err" && pass || fail "clone: $(cat "$T/err")"
$VIRSH start "$clone" > "$T/out" 2>&1 && [ -f "$dir/ovl-e2e-$$-copy-vda.qcow2" ] && pass ||
  fail "the clone's start: $(cat "$T/out")"
$VIRSH destroy "$clone" > /dev/null
$VIRSH undefine "$clone" > /dev/null
$VO gc > "$T/out" 2> "$T/err" && grep -q "^left overlay $dir/ovl-e2e-$$-copy-vda.qcow2: a persistent overlay" "$T/out" &&
  pass || fail "gc: $(cat "$T/out" "$T/err")"
finish
