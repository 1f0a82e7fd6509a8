#!/bin/sh
# A pooled overlay claimed for an ephemeral disk, recorded ahead in the
# domain's ledger, then abandoned by a crash before it is published goes
# back to the pool with the identity (inode, birth, token) that the
# ledger holds.  Whoever takes it next must not leave that ledger owning
# it: the domain's release, or its next prepare, would remove a file
# virt-overlay did not make for that domain.
#   1. the admin's `virt-overlay create` takes it for the same path;
#   2. domain B's (untrusted) XML names domain A's path; B dies after
#      recording, A boots on the file B abandoned, B's release runs.
# Needs root (trusted.* tokens), strace, the real qsd.
. "${srcdir:-.}/tests/functions.sh"
requires_root
requires "$QSD"
requires "$QEMU_IMG"
requires strace
[ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: strace and valgrind do not mix"; exit 77; }

HOOK="$builddir/hook/virt-overlay-hook"
UA=a0a0a0a0-1b2c-4d3e-8f40-516273849506
UB=b0b0b0b0-1b2c-4d3e-8f40-516273849506
mkdir -m 0711 "$T/save"
write_conf "$T/conf" "pool_size = 1"
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases

domain () { one_disk_domain "$1" "$2" ephemeral "$img/p.qcow2"; }
domain a "$UA" > "$T/a.xml"
domain b "$UB" > "$T/b.xml"
token () { getfattr --only-values -n trusted.virt-overlay.id "$1" 2>/dev/null || true; }

# Kill a prepare at its first renameat2: the take from the pool, after
# the ledger (written with rename) recorded the pooled file.
killed_prepare () { # NAME UUID
  set +e
  strace -qq -o /dev/null -e trace=renameat2 -e inject=renameat2:signal=SIGKILL:when=1 \
    "$HOOK" "$1" prepare begin - < "$T/$1.xml" > /dev/null 2>&1
  rc=$?
  set -e
  [ "$rc" = 137 ] || { fail "$1: the prepare was not killed (exit $rc)"; return 0; }
  [ ! -e "$img/p.qcow2" ] && grep -q '"token"' "$T/state/domains/$2" ||
    fail "$1: the kill did not land between the write-ahead and the take"
}

# 1. The admin's create takes the abandoned file for the same path.
$VO pool fill "$img/base.qcow2" "$img" > /dev/null
killed_prepare a "$UA"
$VO create "$img/base.qcow2" "$img/p.qcow2" > /dev/null
created=$(token "$img/p.qcow2")
"$HOOK" a release end - < "$T/a.xml"
if [ -e "$img/p.qcow2" ] && [ "$(token "$img/p.qcow2")" = "$created" ]; then pass; else
  fail "a's release removed p.qcow2, which virt-overlay create made"
fi
rm -f "$img/p.qcow2"
"$HOOK" a release end - < "$T/a.xml"
$VO pool flush > /dev/null

# 2. B records A's path, dies; A boots on what B abandoned; B releases.
$VO pool fill "$img/base.qcow2" "$img" > /dev/null
killed_prepare b "$UB"
"$HOOK" a prepare begin - < "$T/a.xml" || fail "a's prepare failed"
booted=$(token "$img/p.qcow2")
"$HOOK" b release end - < "$T/b.xml" 2> /dev/null
if [ -e "$img/p.qcow2" ] && [ "$(token "$img/p.qcow2")" = "$booted" ]; then pass; else
  fail "b's release removed a's disk p.qcow2"
fi
# B's next prepare must refuse a's disk, not "recreate" it.
if [ -e "$img/p.qcow2" ]; then
  "$HOOK" b prepare begin - < "$T/b.xml" 2> /dev/null || true
  [ "$(token "$img/p.qcow2")" = "$booted" ] && pass || fail "b's prepare replaced a's disk p.qcow2"
fi
finish
