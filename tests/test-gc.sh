#!/bin/sh
# virt-overlay gc against the real libvirtd: what domains libvirt no
# longer knows left (their overlays and ledgers), temporary files of dead
# callers, pools whose base changed; and what it must leave: a defined
# domain's overlays, a file that is no longer the one virt-overlay made,
# an overlay a QEMU holds open, a live caller's temporary file, a pool
# whose base is unchanged.  --dry-run changes nothing; a connection
# that is not this host's qemu:///system is refused.  The --json output
# is golden (tests/data/admin/gc.json).
. "${srcdir:-.}/tests/functions.sh"
requires qemu-io
requires flock
admin_suite "pool_size = 2"
sh "$srcdir/contrib/libvirtd-ensure.sh" "$HOOKS"
mkdir -m 0711 "$T/save"
VO=$builddir/cli/virt-overlay
HOOK=$builddir/hook/virt-overlay-hook
ledgers=$T/state/domains

names=""
at_exit 'for n in $names; do $VIRSH undefine "$n" >/dev/null 2>&1 || true; done'
# define NAME UUID: a shut-off domain with one ephemeral disk on
# $img/NAME.qcow2, its overlay made as libvirt's prepare would.
define () {
  one_disk_domain "$1" "$2" ephemeral "$img/$1.qcow2" |
    sed "s|</uuid>|</uuid><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>|" \
    > "$T/$1.xml"
  $VIRSH define "$T/$1.xml" > /dev/null
  names="$names $1"
  $VIRSH dumpxml "$1" | "$HOOK" "$1" prepare begin -
}
KEEP=ovl-gc-keep-$$ GONE=ovl-gc-gone-$$ MOVED=ovl-gc-moved-$$ BUSY=ovl-gc-busy-$$
SAVED=ovl-gc-saved-$$ TAKEN=ovl-gc-taken-$$ TAKER=ovl-gc-taker-$$ PERS=ovl-gc-pers-$$
define $KEEP 6c1f0a52-0000-4000-8000-000000000001 && pass || fail "define $KEEP"
define $GONE 6c1f0a52-0000-4000-8000-000000000002 && pass || fail "define $GONE"
define $MOVED 6c1f0a52-0000-4000-8000-000000000003 && pass || fail "define $MOVED"
define $BUSY 6c1f0a52-0000-4000-8000-000000000004 && pass || fail "define $BUSY"
define $SAVED 6c1f0a52-0000-4000-8000-000000000005 && pass || fail "define $SAVED"
define $TAKEN 6c1f0a52-0000-4000-8000-000000000006 && pass || fail "define $TAKEN"
# PERS: a persistent overlay, which outlives its domain.
sed "s/ephemeral/persistent/" "$T/$GONE.xml" | sed "s/$GONE/$PERS/g; s/-000000000002/-000000000008/" > "$T/$PERS.xml"
$VIRSH define "$T/$PERS.xml" > /dev/null && names="$names $PERS" &&
  $VIRSH dumpxml $PERS | "$HOOK" $PERS prepare begin - && pass || fail "define $PERS"
# SAVED stopped to be saved to a file (libvirt >= 10.5 says "saved").
$VIRSH dumpxml $SAVED | "$HOOK" $SAVED release end - saved && pass || fail "release, saved"
for n in $GONE $MOVED $BUSY $SAVED $TAKEN $PERS; do $VIRSH undefine $n > /dev/null; done
# TAKER, defined now, runs on TAKEN's leftover as its persistent disk.
sed "s/ephemeral/persistent/; s/$GONE/$TAKER/g; s|$img/$TAKER.qcow2|$img/$TAKEN.qcow2|; s/-000000000002/-000000000007/" \
  "$T/$GONE.xml" > "$T/$TAKER.xml"
$VIRSH define "$T/$TAKER.xml" > /dev/null && names="$names $TAKER" &&
  $VIRSH dumpxml $TAKER | "$HOOK" $TAKER prepare begin - && pass || fail "define $TAKER"
grep -q "$img/$TAKEN.qcow2" "$T/$TAKER.xml" && pass || fail "$TAKER is not on $TAKEN's overlay"

# MOVED's overlay is someone else's file now; BUSY's is open in a QEMU.
rm "$img/$MOVED.qcow2"
"$QEMU_IMG" create -q -f qcow2 "$img/$MOVED.qcow2" 1M
qemu-io -r -c "sleep 60000" "$img/$BUSY.qcow2" &
qio=$!
at_exit "kill $qio 2>/dev/null || true"
i=0; until qemu-img info "$img/$BUSY.qcow2" 2>&1 | grep -q "lock" || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done

# Temporary files: a dead caller's, and a live one's (locked).
: > "$img/.virt-overlay-dead-1.tmp"
: > "$img/.virt-overlay-live-1.tmp"
flock "$img/.virt-overlay-live-1.tmp" sleep 60 &
holder=$!
at_exit "kill $holder 2>/dev/null || true"
# Pools: one on a base that is replaced afterwards, one on base.qcow2.
"$QEMU_IMG" create -q -f qcow2 "$img/old.qcow2" 32M
chmod 0644 "$img/old.qcow2"
$VO pool fill "$img/old.qcow2" && $VO pool fill "$img/base.qcow2" && pass || fail "pool fill"
rm "$img/old.qcow2"
"$QEMU_IMG" create -q -f qcow2 "$img/old.qcow2" 32M
for l in "$img"/.virt-overlay-pool/*/lock; do flock "$l" true; done

# ---- a connection to anything but this host's qemu:///system is refused ----
snap () { snapshot "$img"; snapshot "$T/state"; }
snap > "$T/before"
set +e
$VO gc --connect test:///default > "$T/out" 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "gc: test:///default is not a QEMU driver" "$T/err" && pass ||
  fail "gc through the test driver: $rc $(cat "$T/err")"
# Another daemon's socket (a libvirtd with other, or no, domains) is not this host's.
for uri in "qemu:///system?socket=/run/libvirt/libvirt-sock" "qemu+unix:///system" "qemu:///system#x"; do
  set +e
  $VO gc --connect "$uri" > "$T/out" 2> "$T/err"; rc=$?
  set -e
  [ "$rc" = 1 ] && grep -q "is not qemu:///system: refused" "$T/err" && pass ||
    fail "gc through $uri: $rc $(cat "$T/err")"
done
snap | diff "$T/before" - > "$T/d" && pass || fail "a refused gc changed files: $(cat "$T/d")"

# ---- --dry-run names what gc would do, and changes nothing ----
$VO gc --dry-run > "$T/dry" 2> "$T/err" && pass || fail "gc --dry-run: $(cat "$T/err")"
snap | diff "$T/before" - > "$T/d" && pass || fail "gc --dry-run changed files: $(cat "$T/d")"
grep -q "^would remove overlay $img/$GONE.qcow2: domain $GONE (6c1f0a52-0000-4000-8000-000000000002) is no longer defined$" "$T/dry" &&
  pass || fail "dry run: $(cat "$T/dry")"
grep -q "^left overlay $img/$MOVED.qcow2: no longer the file virt-overlay made$" "$T/dry" &&
  pass || fail "dry run, moved: $(cat "$T/dry")"
grep -q "^would remove temporary file $img/.virt-overlay-dead-1.tmp: " "$T/dry" && pass ||
  fail "dry run, temp: $(cat "$T/dry")"
grep -q "^would remove pool .*: its base changed$" "$T/dry" && pass || fail "dry run, pool: $(cat "$T/dry")"
grep -q "$KEEP\|live-1" "$T/dry" && fail "dry run names what it must not touch: $(cat "$T/dry")" || pass

# ---- gc ----
$VO gc --json > "$T/out.json" 2> "$T/err" && pass || fail "gc: $(cat "$T/err")"
sed -e "s|$img|@IMG@|g" -e "s|$T|@T@|g" -e "s/-$$/-@PID@/g" \
    -e 's|/.virt-overlay-pool/[0-9a-f]*|/.virt-overlay-pool/@HASH@|g' \
    -e 's/"reason":"QMP[^"]*"/"reason":"@QMP@"/' "$T/out.json" > "$T/got.json"
diff -u "$srcdir/tests/data/admin/gc.json" "$T/got.json" > "$T/diff" && pass ||
  fail "gc --json differs from tests/data/admin/gc.json: $(cat "$T/diff")"
[ ! -e "$img/$GONE.qcow2" ] && pass || fail "gone domain's overlay left"
[ ! -e "$ledgers/6c1f0a52-0000-4000-8000-000000000002" ] && [ ! -e "$ledgers/6c1f0a52-0000-4000-8000-000000000002.lock" ] &&
  pass || fail "gone domain's ledger or lock left: $(ls "$ledgers")"
[ -e "$img/$KEEP.qcow2" ] && [ -e "$ledgers/6c1f0a52-0000-4000-8000-000000000001" ] && pass ||
  fail "a defined domain's overlay or ledger was removed"
[ -e "$img/$MOVED.qcow2" ] && pass || fail "removed a file virt-overlay did not make"
[ ! -e "$ledgers/6c1f0a52-0000-4000-8000-000000000003" ] && pass || fail "the moved overlay's ledger is left"
[ -e "$img/$BUSY.qcow2" ] && [ -e "$ledgers/6c1f0a52-0000-4000-8000-000000000004" ] && pass ||
  fail "removed an overlay a QEMU holds open, or forgot it"
[ -e "$img/$SAVED.qcow2" ] && [ -e "$ledgers/6c1f0a52-0000-4000-8000-000000000005" ] && pass ||
  fail "removed what a restore from a file needs"
[ -e "$img/$TAKEN.qcow2" ] && pass || fail "removed the disk a defined domain runs on"
[ -e "$img/$PERS.qcow2" ] && [ ! -e "$ledgers/6c1f0a52-0000-4000-8000-000000000008" ] && pass ||
  fail "a persistent overlay of a domain that is gone: removed, or its ledger left"
[ ! -e "$img/.virt-overlay-dead-1.tmp" ] && [ -e "$img/.virt-overlay-live-1.tmp" ] && pass ||
  fail "temporary files: $(ls -a "$img")"
[ "$($VO pool status | grep -c "ready=2")" = 1 ] && $VO pool status | grep -q "base $img/base.qcow2;" &&
  pass || fail "pools after gc: $($VO pool status)"

# ---- once QEMU lets go, the next gc removes it; then nothing is left ----
kill $qio; wait $qio 2>/dev/null || true
$VO gc > "$T/out" 2> "$T/err" && pass || fail "gc again: $(cat "$T/err")"
grep -q "^removed overlay $img/$BUSY.qcow2: " "$T/out" && [ ! -e "$img/$BUSY.qcow2" ] && pass ||
  fail "gc after QEMU let go: $(cat "$T/out")"
$VO gc > "$T/out" 2> "$T/err" && [ "$(cat "$T/out")" = "$(printf '%s\n' \
  "left ledger $ledgers/6c1f0a52-0000-4000-8000-000000000005: its domain stopped to be saved to a file (virsh save): the restore needs its overlays" \
  "gc: 0 removed, 1 left")" ] && pass ||
  fail "a third gc found: $(cat "$T/out") $(cat "$T/err")"

# ---- the gone domain, defined again, starts afresh ----
define $GONE 6c1f0a52-0000-4000-8000-000000000002 && [ -e "$img/$GONE.qcow2" ] && pass ||
  fail "prepare after gc"
finish
