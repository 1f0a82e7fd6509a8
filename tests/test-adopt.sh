#!/bin/sh
# Taking over the ephemeral overlay an incoming live migration brings on
# shared storage, through the hook directly (no libvirt).  Two "hosts",
# A (source) and B (destination): two configurations, each with its own
# state directory and qsd, over one overlay directory.  A process with
# an OFD read lock on byte 100 stands for a QEMU that has the image open.
# B takes only the file made for this very domain, of one name, that the
# source's QEMU holds, and only once every disk passed; a take cut short
# leaves the overlay owned by one ledger; ownership moves cleanly:
#   a1   a persistent overlay, its disk switched to ephemeral: never taken
#   a2   a file under a reserved name (.virt-overlay*): never taken
#   a8   a second name (hard link) or a symlink: never taken
#   a5   a stale migration mark, and a saved domain's overlay nobody
#        holds: not taken; the restore on A finds it as it was
#   a9   two disks, the second refused: the first keeps A's token
#   a10  B's prepare killed at each fsetxattr/rename of the take (or
#        not: a failed migration, B hands it back): B's release and A's
#        stop orphan nothing, remove nothing held; A cold-starts again
#   a11  a migration that went through (A let go): B's stop while
#        something holds the overlay keeps it; the next stop removes it
#   a12  B's release killed at each step of its hand-back (A's QEMU on:
#        a failed migration), then B's release again, or A's stop first;
#        A's release killed at each step of its let-go (the migration
#        went through), run again or not, then B's stop, held or not:
#        nothing held goes, nothing is orphaned, both hosts cold-start
. "${srcdir:-.}/tests/functions.sh"
requires_root
for tool in "$QSD" "$QEMU_IMG" getfattr strace python3; do requires "$tool"; done
[ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: runs in the main pass only"; exit 77; }

HOOK="$builddir/hook/virt-overlay-hook"
for h in A B; do
  write_conf "$T/conf$h" "pool_size = 0"
  sed -i "s|$T/state|$T/state$h|; s|$T/run/|$T/run$h/|; s|$T/save|$T/save$h|" "$T/conf$h"
  mkdir -m 0711 "$T/save$h"
  at_exit "stop_pidfile $T/run$h/qsd.sock.pid"
done
make_bases

# on HOST XML ARGS...: the hook on host A or B; records rc and stderr.
on () {
  h=$1 x=$2; shift 2
  set +e
  VIRT_OVERLAY_CONFIG=$T/conf$h $HOOK dom "$@" < "$x" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
}
expect_rc () { [ "$rc" = "$1" ] && pass || fail "$2: exit $rc, want $1 ($(cat "$T/stderr"))"; }
expect_err () { grep -q -F -- "$1" "$T/stderr" && pass || fail "want '$1' in: $(cat "$T/stderr")"; }
xattr () { getfattr --only-values -n "trusted.virt-overlay.$2" "$1" 2>/dev/null || true; }
token () { xattr "$1" id; }
eph () { ephemeral_entries "$T/state$1/domains/$U"; }   # HOST: domain $U's

# hold TAG FILE: a stand-in for a QEMU holds FILE's image lock until
# "unhold TAG" (or $T goes at exit, or a minute passes).
hold () {
  rm -f "$T/$1.stop"
  python3 - "$2" "$T/$1" <<'EOF' &
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 100, 1, 0))  # F_OFD_SETLK
open(sys.argv[2] + ".held", "w").close()
for i in range(3000):
    if os.path.exists(sys.argv[2] + ".stop") or not os.path.exists(sys.argv[2] + ".held"): break
    time.sleep(0.02)
EOF
  eval "pid_$1=$!"
  i=0
  until [ -e "$T/$1.held" ] || [ $i -ge 250 ]; do sleep 0.02; i=$((i + 1)); done
  [ -e "$T/$1.held" ] || fail "hold $2: no lock taken"
}
unhold () { : > "$T/$1.stop"; eval "wait \$pid_$1" || true; rm -f "$T/$1.held" "$T/$1.stop"; }

NOT_MADE="here is not one virt-overlay made for this domain"
NOT_HELD="is not in use by a QEMU on the migration's source"
# refused HOST XML OVERLAY FILE T0 WHAT: HOST's migrate begin of XML
# refuses to take OVERLAY, not made for the domain, and so does its
# prepare under a fresh migration mark (set through a persistent disk:
# prepare's XML may differ, an earlier mark may be fresh still); FILE
# keeps token T0, the ledger takes nothing, the release removes nothing.
: > "$img/marker.qcow2"
refused () {
  on "$1" "$2" migrate begin -; expect_rc 1 "$6: migrate begin on $1"
  expect_err "disk vda: ephemeral overlay '$3' $NOT_MADE"
  one_disk_domain dom "$U" persistent "$img/marker.qcow2" > "$T/marker.xml"
  on "$1" "$T/marker.xml" migrate begin -; expect_rc 0 "$6: a mark through a persistent disk"
  on "$1" "$2" prepare begin -; expect_rc 1 "$6: incoming prepare on $1"
  expect_err "disk vda: ephemeral overlay '$3' $NOT_MADE"
  [ "$(token "$4")" = "$5" ] && [ -z "$(eph "$1")" ] && pass || fail "$6: $1 took it: $(eph "$1")"
  on "$1" "$2" release end -
  [ -f "$4" ] && pass || fail "$6: $1's release removed it"
}

# ---- a1: a persistent overlay is the disk: no owner mark, never taken ----
U=a1a1a1a1-1b2c-4d3e-8f40-000000000001 X=$img/p.qcow2
one_disk_domain dom $U persistent "$X" > "$T/p.xml"
one_disk_domain dom $U ephemeral "$X" > "$T/e.xml"
on A "$T/p.xml" prepare begin -; expect_rc 0 "a1: prepare persistent"
[ -n "$(token "$X")" ] && [ -z "$(xattr "$X" owner)" ] && pass || fail "a1: persistent overlay carries an owner mark"
echo "guest data" | dd of="$X" bs=1 seek=1048576 conv=notrunc 2>/dev/null
sum=$(sha256sum < "$X") t0=$(token "$X")
on A "$T/p.xml" release end -
hold q "$X"                     # even with a QEMU on it
refused A "$T/e.xml" "$X" "$X" "$t0" a1  # A records it as persistent
refused B "$T/e.xml" "$X" "$X" "$t0" a1
unhold q
[ "$(sha256sum < "$X")" = "$sum" ] && pass || fail "a1: the persistent overlay's data changed"
rm -f "$X"

# ---- a2: a file under a reserved name is nobody's disk ----
U=a2a2a2a2-1b2c-4d3e-8f40-000000000002 X=$img/.virt-overlay-x/r.qcow2
one_disk_domain dom $U ephemeral "$img/r.qcow2" > "$T/d.xml"
on A "$T/d.xml" prepare begin -; expect_rc 0 "a2: prepare"
mkdir -m 0711 "$img/.virt-overlay-x"
mv "$img/r.qcow2" "$X"          # still made for this domain, token and all
one_disk_domain dom $U ephemeral "$X" > "$T/r.xml"
t0=$(token "$X")
[ "$(xattr "$X" owner)" = $U ] && pass || fail "a2: ephemeral overlay without the owner mark"
hold q "$X"
refused B "$T/r.xml" "$X" "$X" "$t0" a2
unhold q
rm -rf "$img/.virt-overlay-x"

# ---- a8: a second name, or a symlink, to the domain's own overlay ----
U=a8a8a8a8-1b2c-4d3e-8f40-000000000008 X=$img/h.qcow2
one_disk_domain dom $U ephemeral "$X" > "$T/d.xml"
on A "$T/d.xml" prepare begin -; expect_rc 0 "a8: prepare"
t0=$(token "$X")
ln "$X" "$img/h2.qcow2"; ln -s h.qcow2 "$img/hs.qcow2"
hold q "$X"
for p in h.qcow2 h2.qcow2 hs.qcow2; do
  one_disk_domain dom $U ephemeral "$img/$p" > "$T/h.xml"
  refused B "$T/h.xml" "$img/$p" "$X" "$t0" "a8 $p"
done
unhold q
rm "$img/h2.qcow2" "$img/hs.qcow2"
on A "$T/d.xml" release end -
[ ! -e "$X" ] && pass || fail "a8: A's stop left its overlay"

# ---- a5: a stale mark on B, and the overlay A keeps for a managed save ----
U=a5a5a5a5-1b2c-4d3e-8f40-000000000005 X=$img/s.qcow2
one_disk_domain dom $U ephemeral "$X" > "$T/d.xml"
on A "$T/d.xml" prepare begin -; t0=$(token "$X") i0=$(stat -c %i "$X")
hold q "$X"
on B "$T/d.xml" migrate begin -; expect_rc 0 "a5: migrate begin"
unhold q                        # the migration fails before B's prepare,
: > "$T/saveA/dom.save"         # and D is managed-saved on A
on A "$T/d.xml" release end - saved
on B "$T/d.xml" prepare begin -; expect_rc 1 "a5: cold start on B under the stale mark"
expect_err "disk vda: ephemeral overlay '$X' $NOT_HELD"
[ "$(token "$X")" = "$t0" ] && [ -z "$(eph B)" ] && pass || fail "a5: B took a saved domain's overlay"
on B "$T/d.xml" release end -
on B "$T/d.xml" prepare begin -; expect_rc 1 "a5: cold start on B, the mark used"
on A "$T/d.xml" prepare begin -; expect_rc 0 "a5: restore of the managed save on A"
[ "$(stat -c %i "$X" 2>/dev/null)" = "$i0" ] && [ "$(token "$X")" = "$t0" ] && pass ||
  fail "a5: the saved domain's overlay was lost or replaced"
rm "$T/saveA/dom.save"
on A "$T/d.xml" release end -
[ ! -e "$X" ] && pass || fail "a5: A's stop left its overlay"

# ---- a9: two disks, the second refused: nothing is taken ----
U=a9a9a9a9-1b2c-4d3e-8f40-000000000009
UUID=$U domain dom "vda ephemeral $img/a.qcow2 $img/base.qcow2 qcow2" \
  "vdb ephemeral $img/b.qcow2 $img/base.qcow2 qcow2" > "$T/d.xml"
on A "$T/d.xml" prepare begin -; expect_rc 0 "a9: prepare"
ta=$(token "$img/a.qcow2") tb=$(token "$img/b.qcow2")
hold qa "$img/a.qcow2"; hold qb "$img/b.qcow2"
on B "$T/d.xml" migrate begin -; expect_rc 0 "a9: migrate begin"
unhold qb                       # vdb's lock goes before B's prepare
on B "$T/d.xml" prepare begin -; expect_rc 1 "a9: prepare with vdb not held"
expect_err "disk vdb: ephemeral overlay '$img/b.qcow2' $NOT_HELD"
[ "$(grep -c '^virt-overlay: disk' "$T/stderr")" = 1 ] && pass || fail "a9: want vdb only: $(cat "$T/stderr")"
[ "$(token "$img/a.qcow2")" = "$ta" ] && [ "$(token "$img/b.qcow2")" = "$tb" ] && [ -z "$(eph B)" ] &&
  pass || fail "a9: a refused prepare took something: B: $(eph B)"
on B "$T/d.xml" release end -
unhold qa
[ -f "$img/a.qcow2" ] && [ -f "$img/b.qcow2" ] && pass || fail "a9: B's release removed A's overlays"
on A "$T/d.xml" release end -
[ ! -e "$img/a.qcow2" ] && [ ! -e "$img/b.qcow2" ] && [ -z "$(eph A)" ] && pass ||
  fail "a9: A's stop did not remove its overlays"

# ---- a11: a migration that went through, then B's stop while held ----
U=abababab-1b2c-4d3e-8f40-00000000000b X=$img/m.qcow2
one_disk_domain dom $U ephemeral "$X" > "$T/d.xml"
on A "$T/d.xml" prepare begin -; t0=$(token "$X")
hold q "$X"                     # A's QEMU, then B's
on B "$T/d.xml" migrate begin -; expect_rc 0 "a11: migrate begin"
# (traced: the points a10 kills it at)
TRACE="-e trace=fsetxattr,rename,renameat,renameat2"
# shellcheck disable=SC2086
VIRT_OVERLAY_CONFIG=$T/confB strace -f -o "$T/trace" $TRACE $HOOK dom prepare begin - < "$T/d.xml" 2> "$T/stderr" &&
  pass || fail "a11: B's prepare: $(cat "$T/stderr")"
t1=$(token "$X")
[ -n "$t1" ] && [ "$t1" != "$t0" ] && pass || fail "a11: B did not give it a token of its own"
eph B | grep -F "\"token\":\"$t1\"" | grep -qF "\"adopted-from\":\"$t0\"" && pass ||
  fail "a11: B's ledger entry: $(eph B)"
on A "$T/d.xml" release end -; expect_rc 0 "a11: A's release"
[ -f "$X" ] && [ -z "$(eph A)" ] && pass || fail "a11: A's release: $(ls "$X" 2>&1), A: $(eph A)"
[ "$(xattr "$X" released)" = "$t0" ] && pass || fail "a11: A did not let go: '$(xattr "$X" released)'"
on B "$T/d.xml" release end -; expect_rc 0 "a11: B's stop while held"
expect_err "is in use (a QEMU holds its image lock); left alone; its ledger entry is kept"
[ -f "$X" ] && [ "$(token "$X")" = "$t1" ] && [ -n "$(eph B)" ] && pass ||
  fail "a11: B's stop while held: token $(token "$X") (B's $t1, A's $t0), B: $(eph B)"
unhold q
on B "$T/d.xml" release end -
[ ! -e "$X" ] && [ -z "$(eph B)" ] && pass || fail "a11: B's next stop did not remove it"
for h in A B; do
  on "$h" "$T/d.xml" prepare begin -; expect_rc 0 "a11: cold start on $h"
  [ -f "$X" ] && [ "$(token "$X")" != "$t1" ] && pass || fail "a11: no fresh overlay on $h"
  on "$h" "$T/d.xml" release end -
  [ ! -e "$X" ] && pass || fail "a11: the stop on $h left it"
done

# ---- a10: B's prepare killed at each fsetxattr and rename of the take ----
# "none" is not killed.  "dest": B's release comes while A's QEMU runs
# on (a failed migration: B hands back what it took); "source": A stops
# first.  Either way nothing held goes, nothing is orphaned, and A's
# next cold start works.
points=$(for sc in fsetxattr rename renameat renameat2; do
           for N in $(seq "$(grep -c "^[0-9]* *$sc(" "$T/trace" || true)"); do echo "$sc:$N"; done
         done)
[ "$(echo "$points" | wc -w)" -ge 3 ] && pass || fail "a10: fewer points than expected: $(cat "$T/trace")"
for point in none $points; do
  for order in dest source; do
    w="a10 $point $order"
    on A "$T/d.xml" prepare begin -; expect_rc 0 "$w: cold start on A"
    t0=$(token "$X")
    hold q "$X"
    on B "$T/d.xml" migrate begin -; expect_rc 0 "$w: migrate begin"
    inject=
    [ "$point" = none ] || inject="-e inject=${point%:*}:signal=SIGKILL:when=${point#*:}"
    set +e
    # shellcheck disable=SC2086
    VIRT_OVERLAY_CONFIG=$T/confB strace -f -o /dev/null $TRACE $inject $HOOK dom prepare begin - \
      < "$T/d.xml" > /dev/null 2> "$T/stderr"
    rc=$?
    set -e
    if [ "$point" = none ]; then expect_rc 0 "$w: B's prepare"; else expect_rc 137 "$w: B's prepare not killed"; fi
    if [ $order = dest ]; then
      on B "$T/d.xml" release end -
      [ -f "$X" ] && [ "$(token "$X")" = "$t0" ] && pass ||
        fail "$w: after B's release: $(ls "$X" 2>&1), token $(token "$X"), A's was $t0"
      # A take that never happened is not answered with a "let go".
      [ -z "$(xattr "$X" released)" ] && pass ||
        fail "$w: B's release marked A's own overlay as let go"
      unhold q
      on A "$T/d.xml" release end -
    else
      unhold q
      on A "$T/d.xml" release end -
      on B "$T/d.xml" release end -
    fi
    [ ! -e "$X" ] && pass || fail "$w: orphaned: token $(token "$X"), A: $(eph A), B: $(eph B)"
    [ -z "$(eph A)" ] && [ -z "$(eph B)" ] && pass || fail "$w: entries left: A: $(eph A), B: $(eph B)"
  done
done
on A "$T/d.xml" prepare begin -; expect_rc 0 "a10: cold start on A at the end"
on A "$T/d.xml" release end -

# ---- a12: B's hand-back and A's let-go, killed at each step ----
# A release's steps: the fsetxattr (the token given back, or the
# "released" mark), then the ledger's save (an unlink, the ledger left
# empty; a rename else).  A kill on entering a system call stops
# before it.
U=acacacac-1b2c-4d3e-8f40-00000000000c X=$img/k.qcow2
one_disk_domain dom $U ephemeral "$X" > "$T/d.xml"
RTRACE="-e trace=fsetxattr,rename,renameat,renameat2,unlink,unlinkat"
points () { # TRACE: "SYSCALL:N" for each call traced
  for sc in fsetxattr rename renameat renameat2 unlink unlinkat; do
    for N in $(seq "$(grep -c "^[0-9]* *$sc(" "$1" || true)"); do echo "$sc:$N"; done
  done
}
# killed HOST POINT ARGS...: the hook on HOST killed at POINT.
killed () {
  h=$1 point=$2; shift 2
  set +e
  # shellcheck disable=SC2086
  VIRT_OVERLAY_CONFIG=$T/conf$h strace -f -o /dev/null $RTRACE \
    -e inject="${point%:*}:signal=SIGKILL:when=${point#*:}" $HOOK dom "$@" \
    < "$T/d.xml" > /dev/null 2> "$T/stderr"
  rc=$?
  set -e
}
# migrating WHAT: A started, its QEMU holding X (q), and B's migrate
# begin and prepare (the take) done: t0 is A's token, t1 B's.
migrating () {
  on A "$T/d.xml" prepare begin -; expect_rc 0 "$1: cold start on A"
  t0=$(token "$X")
  hold q "$X"
  on B "$T/d.xml" migrate begin -; expect_rc 0 "$1: migrate begin"
  on B "$T/d.xml" prepare begin -; expect_rc 0 "$1: B's prepare"
  t1=$(token "$X")
}
has () { eph "$1" | grep -qF "\"token\":\"$2\""; }  # HOST TOKEN: an entry
state () { echo "$(ls "$X" 2>&1), token $(token "$X") (A's $t0, B's $t1), released" \
  "'$(xattr "$X" released)', A: $(eph A), B: $(eph B)"; }
# clean WHAT: nothing left, and cold starts work, on A then on B.
clean () {
  [ ! -e "$X" ] && [ -z "$(eph A)" ] && [ -z "$(eph B)" ] && pass || fail "$1: orphaned: $(state)"
  for h in A B; do
    on "$h" "$T/d.xml" prepare begin -; expect_rc 0 "$1: cold start on $h"
    on "$h" "$T/d.xml" release end -
    [ ! -e "$X" ] && [ -z "$(eph "$h")" ] && pass || fail "$1: the stop on $h left: $(state)"
  done
}

# B's release, traced: its kill points.
migrating "a12 hand-back"
# shellcheck disable=SC2086
VIRT_OVERLAY_CONFIG=$T/confB strace -f -o "$T/trace" $RTRACE $HOOK dom release end - \
  < "$T/d.xml" 2> "$T/stderr" && pass || fail "a12 hand-back: B's release: $(cat "$T/stderr")"
[ "$(token "$X")" = "$t0" ] && [ -z "$(eph B)" ] && pass || fail "a12 hand-back: $(state)"
unhold q
on A "$T/d.xml" release end -
clean "a12 hand-back"
hb=$(points "$T/trace")
head -n 1 "$T/trace" | grep -q " fsetxattr(" && [ "$(echo "$hb" | wc -w)" -ge 2 ] && pass ||
  fail "a12 hand-back: not the points expected: $(cat "$T/trace")"
# "dest": B's release again while A's QEMU runs on (the next stop or
# gc would); "source": A's stop first, then B's release again; "next":
# A's stop, then B's next cold start and stop.
for point in $hb; do
  for order in dest source next; do
    w="a12 hand-back $point $order"
    migrating "$w"
    killed B "$point" release end -; expect_rc 137 "$w: B's release not killed"
    # The token given back, or not yet; B's entry goes last.
    want=$t0; [ "$point" = fsetxattr:1 ] && want=$t1
    [ -f "$X" ] && [ "$(token "$X")" = "$want" ] && has A "$t0" && has B "$t1" && pass ||
      fail "$w: after the kill: $(state)"
    if [ $order = dest ]; then
      on B "$T/d.xml" release end -
      [ -f "$X" ] && [ "$(token "$X")" = "$t0" ] && [ -z "$(xattr "$X" released)" ] &&
        has A "$t0" && [ -z "$(eph B)" ] && pass || fail "$w: B's release again: $(state)"
      unhold q
      on A "$T/d.xml" release end -
    else
      unhold q
      on A "$T/d.xml" release end -
      # Removed if given back, else let go of: B's then.
      if [ "$want" = "$t0" ]; then [ ! -e "$X" ]; else
        [ "$(xattr "$X" released)" = "$t0" ] && has B "$(token "$X")"; fi &&
        [ -z "$(eph A)" ] && pass || fail "$w: A's stop: $(state)"
      if [ $order = next ]; then
        on B "$T/d.xml" prepare begin -; expect_rc 0 "$w: cold start on B"
      fi
      on B "$T/d.xml" release end -
    fi
    clean "$w"
  done
done

# A's release after the migration went through, traced: its kill points.
migrating "a12 let-go"
unhold q                        # A's QEMU ends: the migration went through
# shellcheck disable=SC2086
VIRT_OVERLAY_CONFIG=$T/confA strace -f -o "$T/trace" $RTRACE $HOOK dom release end - \
  < "$T/d.xml" 2> "$T/stderr" && pass || fail "a12 let-go: A's release: $(cat "$T/stderr")"
[ "$(xattr "$X" released)" = "$t0" ] && [ -z "$(eph A)" ] && pass || fail "a12 let-go: $(state)"
on B "$T/d.xml" release end -
clean "a12 let-go"
lg=$(points "$T/trace")
head -n 1 "$T/trace" | grep -q " fsetxattr(" && [ "$(echo "$lg" | grep -c fsetxattr)" = 1 ] &&
  [ "$(echo "$lg" | wc -w)" -ge 2 ] && pass || fail "a12 let-go: not the points expected: $(cat "$T/trace")"
# A's release run again (then B's stop is a11's), or not; then B's
# stop, held or not (q: A's QEMU, then B's).  Killed before its let-go
# and not run again, A never lets go: B cannot tell that from a failed
# migration and hands the file back to A, whose ledger still records it
# (A's next start, or gc there, removes it; B's cold start is refused
# until then).
for point in $lg; do
  for how in again:free none:free none:held; do
    again=${how%:*} held=${how#*:}
    w="a12 let-go $point $again $held"
    migrating "$w"
    [ "$held" = held ] || unhold q
    killed A "$point" release end -; expect_rc 137 "$w: A's release not killed"
    [ -f "$X" ] && [ "$(token "$X")" = "$t1" ] && has A "$t0" && has B "$t1" && pass ||
      fail "$w: after the kill: $(state)"
    if [ "$again" = again ]; then
      on A "$T/d.xml" release end -
      [ "$(xattr "$X" released)" = "$t0" ] && [ -z "$(eph A)" ] && pass ||
        fail "$w: A's release again: $(state)"
    fi
    let_go=1; [ "$again" = none ] && [ "$point" = fsetxattr:1 ] && let_go=0
    on B "$T/d.xml" release end -
    if [ "$let_go" = 0 ]; then     # handed back, held or not
      [ -f "$X" ] && [ "$(token "$X")" = "$t0" ] && has A "$t0" && [ -z "$(eph B)" ]
    elif [ "$held" = held ]; then  # kept by B, for its next stop
      [ -f "$X" ] && [ "$(token "$X")" = "$t1" ] && has B "$t1"
    else
      [ ! -e "$X" ] && [ -z "$(eph B)" ]
    fi && pass || fail "$w: B's stop: $(state)"
    if [ "$held" = held ]; then
      unhold q
      on B "$T/d.xml" release end -
    fi
    if [ "$let_go" = 0 ] || [ "$again" = none ]; then
      # What A's ledger keeps goes at its next start (here) or gc.
      on A "$T/d.xml" prepare begin -; expect_rc 0 "$w: A's next cold start"
      on A "$T/d.xml" release end -
    fi
    clean "$w"
  done
done

finish
