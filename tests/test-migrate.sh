#!/bin/sh
# Live migration between two real libvirt daemons (tests/twohosts.sh),
# each with its own hook, ledger and qsd:
#   - a persistent overlay on shared storage goes A -> B -> A, the very
#     file throughout, its data with it, and stays after the stop;
#   - an ephemeral one goes A -> B: B takes it into its ledger (a new
#     token), A's release finds another token and leaves it (libvirt 9.0
#     passes no reason), B's stop removes it, a cold start on either
#     host gets a fresh one;
#   - a migration that fails after B's prepare: B gives the overlay back
#     to A, which removes it at its stop;
#   - a destination left paused (--suspend) holds no image lock when A's
#     release runs: A leaves the overlay all the same;
#   - an overlay on storage only A has: refused at B's migrate begin,
#     naming the disk, nothing made on B, the domain runs on on A;
#   - --copy-storage-inc: refused the same way until the overlay is made
#     on B as the message says; then the migration copies the data.
# Each storage case runs on the local filesystem and on bindfs (FUSE,
# no RENAME_NOREPLACE, like NFS).
. "${srcdir:-.}/tests/functions.sh"
. "${srcdir:-.}/tests/twohosts.sh"
requires qemu-system-x86_64
requires nsenter
requires getfattr
# The real libvirtd runs the hook; valgrind covers it in test-hook.sh.
[ "${OVL_VALGRIND:-0}" = 1 ] && { echo "SKIP: runs in the main pass only"; exit 77; }

twohosts_start

state () { hv "$1" domstate "$2" 2>/dev/null | head -n 1; }
ino () { stat -c %i "$1"; }
token () { getfattr --only-values -n trusted.virt-overlay.id "$1" 2>/dev/null || true; }
# The ephemeral entries of domain $2's ledger on host $1.
entries () {
  uuid=$(hv "$1" domuuid "$2" 2>/dev/null || true)
  [ -n "$uuid" ] || uuid=${3:-}
  ephemeral_entries "$H/$1/state/domains/$uuid"
}
# Guest data: write a pattern into vda through QEMU, and read it back
# (qemu-io prints into the domain's log on that host).
QDEV=/machine/peripheral/virtio-disk0/virtio-backend
write_pattern () { # HOST DOM
  hv "$1" qemu-monitor-command "$2" --hmp "qemu-io -d $QDEV \"write -P 0x5a 1M 64k\"" >/dev/null
}
has_pattern () { # HOST DOM
  log=$H/$1/log/qemu/$2.log
  n=$(wc -l < "$log")
  hv "$1" qemu-monitor-command "$2" --hmp "qemu-io -d $QDEV \"read -P 0x5a 1M 64k\"" >/dev/null
  i=0
  until tail -n +$((n + 1)) "$log" | grep -q "^read 65536/65536"; do
    i=$((i + 1)); [ $i -lt 50 ] || return 1; sleep 0.1
  done
  ! tail -n +$((n + 1)) "$log" | grep -q "verification failed"
}
# A command in host $1's namespaces, with its configuration.
on_host () { # HOST CMD...
  h=$1; shift
  nsenter -t "$(cat "$H/$h/libvirtd.pid")" -m -u -- env VIRT_OVERLAY_CONFIG="$H/$h/conf" "$@"
}

for where in shared fuse; do
  eval "dir=\$$(echo $where | tr a-z A-Z)"

  # ---- persistent, shared storage: A -> B -> A ----
  d=p-$where ov=$dir/$d.qcow2
  twohosts_define a $d "vda persistent $ov"
  hv a start $d >/dev/null
  i0=$(ino "$ov") t0=$(token "$ov")
  write_pattern a $d
  if migrate $d a b >/dev/null 2>"$T/err"; then pass; else fail "$where: persistent A -> B: $(cat "$T/err")"; fi
  [ "$(state b $d)" = running ] && pass || fail "$where: persistent: not running on B"
  has_pattern b $d && pass || fail "$where: persistent: the data did not come to B"
  if migrate $d b a >/dev/null 2>"$T/err"; then pass; else fail "$where: persistent B -> A: $(cat "$T/err")"; fi
  [ "$(state a $d)" = running ] && pass || fail "$where: persistent: not running on A again"
  has_pattern a $d && pass || fail "$where: persistent: the data did not come back to A"
  [ "$(ino "$ov")" = "$i0" ] && [ "$(token "$ov")" = "$t0" ] && pass ||
    fail "$where: persistent: the overlay was replaced during the migrations"
  hv a destroy $d >/dev/null
  [ -e "$ov" ] && [ "$(ino "$ov")" = "$i0" ] && pass ||
    fail "$where: persistent: the overlay did not stay after the stop"
  hv a undefine $d >/dev/null

  # ---- ephemeral, shared storage: A -> B, stop on B ----
  d=e-$where ov=$dir/$d.qcow2
  twohosts_define a $d "vda ephemeral $ov"
  uuid=$(hv a domuuid $d)
  hv a start $d >/dev/null
  i0=$(ino "$ov") t0=$(token "$ov")
  [ -n "$t0" ] && pass || fail "$where: ephemeral: the overlay has no token"
  [ -n "$(entries a $d)" ] && pass || fail "$where: ephemeral: A's ledger does not own it"
  write_pattern a $d
  if migrate $d a b >/dev/null 2>"$T/err"; then pass; else fail "$where: ephemeral A -> B: $(cat "$T/err")"; fi
  [ "$(state b $d)" = running ] && pass || fail "$where: ephemeral: not running on B"
  has_pattern b $d && pass || fail "$where: ephemeral: the data did not come to B"
  [ -e "$ov" ] && [ "$(ino "$ov")" = "$i0" ] && pass ||
    fail "$where: ephemeral: the overlay was recreated, replaced or removed by the migration"
  # B took it: a new token, which A's ledger does not know.
  [ -n "$(token "$ov")" ] && [ "$(token "$ov")" != "$t0" ] && pass ||
    fail "$where: ephemeral: B did not give the overlay a token of its own"
  # Ownership moved with the domain: B's ledger has it, A's not.
  [ -n "$(entries b $d)" ] && pass || fail "$where: ephemeral: B's ledger did not take it"
  [ -z "$(entries a $d $uuid)" ] && pass || fail "$where: ephemeral: A's ledger still has it"
  hv b destroy $d >/dev/null
  [ ! -e "$ov" ] && pass || fail "$where: ephemeral: the stop on B did not remove it"
  [ -z "$(entries b $d)" ] && pass || fail "$where: ephemeral: B's ledger kept it"
  # A cold start on either host gets a fresh one.
  for h in b a; do
    if [ $h = a ]; then         # defined on A again
      hv b dumpxml --migratable $d > "$T/$d.xml"
      hv b undefine $d >/dev/null
      hv a define "$T/$d.xml" >/dev/null
    fi
    hv $h start $d >/dev/null
    [ "$(state $h $d)" = running ] && ! has_pattern $h $d && pass ||
      fail "$where: ephemeral: the last boot's data is still there on $h"
    [ -e "$ov" ] && [ -n "$(token "$ov")" ] && [ "$(token "$ov")" != "$t0" ] && pass ||
      fail "$where: ephemeral: a cold start on $h did not get a fresh overlay"
    t0=$(token "$ov")
    hv $h destroy $d >/dev/null
    [ ! -e "$ov" ] && pass || fail "$where: ephemeral: the stop on $h did not remove it"
  done
  hv a undefine $d >/dev/null
done

# ---- a migration that fails after B's prepare (B's QEMU cannot listen
# for it): the domain runs on on A, B gives A's token back at its
# release, and A's stop removes the overlay ----
d=f-shared ov=$SHARED/$d.qcow2
twohosts_define a $d "vda ephemeral $ov"
hv a start $d >/dev/null
t0=$(token "$ov")
# The port is taken, so B's QEMU cannot listen on it; should B's QEMU
# listen on another address anyway and the source connect here, the
# connection is closed at once: the migration fails in seconds either
# way, rather than wait on a peer that never reads.
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
s.settimeout(0.5); open(sys.argv[2], "w").close(); end = time.time() + 120
while time.time() < end:
    try: s.accept()[0].close()
    except socket.timeout: pass' "$MPORT_b" "$T/blocking" & blocker=$!
at_exit "kill $blocker 2>/dev/null || true"
i=0; until [ -e "$T/blocking" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
if migrate $d a b >/dev/null 2>"$T/err"; then fail "failed migration: it went through"; else pass; fi
kill $blocker 2>/dev/null || true
[ "$(state a $d)" = running ] && pass || fail "failed migration: the domain stopped on A"
[ -z "$(hv b list --all --name)" ] && pass || fail "failed migration: B kept a domain"
grep -q "$d prepare begin" "$H/b/hook.calls" && pass ||
  fail "failed migration: it failed before B's prepare, this case proves nothing: $(cat "$T/err")"
[ "$(token "$ov")" = "$t0" ] && pass || fail "failed migration: A's token was not given back"
[ -n "$(entries a $d)" ] && pass || fail "failed migration: A's ledger lost it"
[ -z "$(entries b $d $(hv a domuuid $d))" ] && pass || fail "failed migration: B's ledger kept it"
hv a destroy $d >/dev/null
[ ! -e "$ov" ] && pass || fail "failed migration: A's stop did not remove the overlay"
hv a undefine $d >/dev/null

# ---- a destination left paused (--suspend): libvirt activates its
# images only at resume, so no QEMU holds the overlay when A's release
# runs; A still leaves it (B gave it a token of its own) ----
d=s-shared ov=$SHARED/$d.qcow2
twohosts_define a $d "vda ephemeral $ov"
hv a start $d >/dev/null
write_pattern a $d
if migrate $d a b --suspend >/dev/null 2>"$T/err"; then pass; else fail "paused: $(cat "$T/err")"; fi
[ "$(state b $d)" = paused ] && pass || fail "paused: B's domain is $(state b $d)"
[ -e "$ov" ] && pass || fail "paused: A's release removed the overlay of the paused domain"
hv b resume $d >/dev/null 2>"$T/err" && pass || fail "paused: resume on B: $(cat "$T/err")"
[ "$(state b $d)" = running ] && pass || fail "paused: not running on B after resume"
has_pattern b $d && pass || fail "paused: the data did not come to B"
hv b destroy $d >/dev/null
[ ! -e "$ov" ] && pass || fail "paused: B's stop did not remove it"
hv b undefine $d >/dev/null

# ---- no shared storage: the overlay is on A's own disk only ----
for mode in persistent ephemeral; do
  d=l-$mode ov=$LOCAL/$d.qcow2
  twohosts_define a $d "vda $mode $ov"
  hv a start $d >/dev/null
  if migrate $d a b >/dev/null 2>"$T/err"; then
    fail "local $mode: the migration went through"
  else
    grep -q "disk vda: .*'$ov' is not on this host" "$T/err" && pass ||
      fail "local $mode: not the hook's message naming the disk: $(cat "$T/err")"
  fi
  [ "$(state a $d)" = running ] && pass || fail "local $mode: the domain stopped on A"
  [ -z "$(hv b list --all --name)" ] && pass || fail "local $mode: B kept a domain"
  [ -z "$(ls -A "$H/b/local")" ] && pass || fail "local $mode: something was made on B: $(ls -A "$H/b/local")"
  [ -e "$H/a/local/$d.qcow2" ] && pass || fail "local $mode: A's overlay went"
done
hv a destroy l-ephemeral >/dev/null
[ ! -e "$H/a/local/l-ephemeral.qcow2" ] && pass || fail "local ephemeral: the stop on A left it"
hv a undefine l-ephemeral >/dev/null

# ---- --copy-storage-inc: refused until the overlay is made on B, as
# the message says; then the top layer is copied ----
d=l-persistent ov=$LOCAL/$d.qcow2
write_pattern a $d
if migrate $d a b --copy-storage-inc >/dev/null 2>"$T/err"; then
  fail "copy-storage: went through with no overlay on B"
else
  cmd=$(sed -n "s/.*('\(virt-overlay create [^']*\)').*/\1/p" "$T/err")
  [ -n "$cmd" ] && pass || fail "copy-storage: the message says nothing to do: $(cat "$T/err")"
fi
# shellcheck disable=SC2086
set -- $cmd
shift
on_host b "$OVL_CLI" "$@" >/dev/null && pass ||
  fail "copy-storage: '$cmd' failed on B"
if migrate $d a b --copy-storage-inc >/dev/null 2>"$T/err"; then pass; else
  fail "copy-storage: $(cat "$T/err")"; fi
[ "$(state b $d)" = running ] && pass || fail "copy-storage: not running on B"
has_pattern b $d && pass || fail "copy-storage: the data was not copied"
hv b destroy $d >/dev/null
[ -e "$H/b/local/$d.qcow2" ] && [ -e "$H/a/local/$d.qcow2" ] && pass ||
  fail "copy-storage: a persistent overlay went at the stop"
hv b undefine $d >/dev/null

# ---- nothing left over on either host ----
for h in a b; do
  left=$(cat "$H/$h"/state/domains/* 2>/dev/null | grep -o '{"path[^}]*}' | grep -v '"mode":"persistent"' || true)
  [ -z "$left" ] && pass || fail "host $h: ephemeral ledger entries left: $left"
done
leftover=$(find "$SHARED" "$T/fuse-src" "$H/a/local" "$H/b/local" -name '.virt-overlay*' -o -name 'e-*')
[ -z "$leftover" ] && pass || fail "left over: $leftover"
twohosts_stop

finish
