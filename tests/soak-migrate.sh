#!/bin/sh
# The migration soak: two domains, each on a persistent and an ephemeral
# overlay (one domain on the local filesystem, one on bindfs), live-
# migrated back and forth between two libvirt hosts (tests/twohosts.sh)
# MIGRATIONS times each, both at once.  After every migration each runs
# on its destination on the very same overlay files; at the end they
# are stopped and nothing is left over on either host: no ephemeral
# overlay, no ledger entry but the persistent ones, no temporary file,
# no job in either qsd.  Prints the figures (soak-migrate: lines).
. "${srcdir:-.}/tests/functions.sh"
. "${srcdir:-.}/tests/twohosts.sh"
requires qemu-system-x86_64
requires getfattr
MIGRATIONS=${MIGRATIONS:-50}

twohosts_start

ino () { stat -c %i "$1" 2>/dev/null || echo gone; }
token () { getfattr --only-values -n trusted.virt-overlay.id "$1" 2>/dev/null || true; }
# The very file: its inode, and for a persistent overlay its token (an
# ephemeral one gets a new token from each host that takes it over).
id_of () {
  case $1 in
    *-e.qcow2) [ -n "$(token "$1")" ] && echo "$(ino "$1")/marked" || echo "$(ino "$1")/unmarked" ;;
    *) echo "$(ino "$1")/$(token "$1")" ;;
  esac
}

twohosts_define a s1 "vda persistent $SHARED/s1-p.qcow2" "vdb ephemeral $SHARED/s1-e.qcow2"
twohosts_define a s2 "vda persistent $FUSE/s2-p.qcow2" "vdb ephemeral $FUSE/s2-e.qcow2"
hv a start s1 >/dev/null
hv a start s2 >/dev/null
files="$SHARED/s1-p.qcow2 $SHARED/s1-e.qcow2 $FUSE/s2-p.qcow2 $FUSE/s2-e.qcow2"
ids0=$(for f in $files; do id_of "$f"; done)

# One migration of $1 from $2 to $3, its time in ms in $T/ms.$1.
one () {
  t0=$(date +%s%N)
  if migrate "$1" "$2" "$3" >/dev/null 2>"$T/err.$1"; then
    echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$T/ms"
  else
    echo "FAIL: migration $1 $2 -> $3: $(cat "$T/err.$1")" >> "$T/failed"
  fi
}

from=a to=b i=0
while [ $i -lt "$MIGRATIONS" ]; do
  one s1 $from $to &
  MIG_SET=2 one s2 $from $to &
  wait
  [ -s "$T/failed" ] && { cat "$T/failed" >&2; failures=$((failures + 1)); break; }
  for d in s1 s2; do
    [ "$(hv $to domstate $d 2>/dev/null | head -n 1)" = running ] && pass ||
      fail "migration $((i + 1)): $d is not running on $to"
  done
  ids=$(for f in $files; do id_of "$f"; done)
  [ "$ids" = "$ids0" ] && pass || fail "migration $((i + 1)): an overlay was replaced or removed"
  x=$from from=$to to=$x i=$((i + 1))
done

# Both stopped where they are: the ephemeral overlays go, the persistent stay.
for d in s1 s2; do hv $from destroy $d >/dev/null; done
for f in $SHARED/s1-e.qcow2 $FUSE/s2-e.qcow2; do
  [ ! -e "$f" ] && pass || fail "$f is left after the stop"
done
for f in $SHARED/s1-p.qcow2 $FUSE/s2-p.qcow2; do
  [ -e "$f" ] && pass || fail "persistent $f went"
done
for h in a b; do
  left=$(cat "$H/$h"/state/domains/* 2>/dev/null | grep -o '{"path[^}]*}' |
    grep -v '"mode":"persistent"' || true)
  [ -z "$left" ] && pass || fail "host $h: ephemeral ledger entries left: $left"
  if [ -S "$H/$h/run/qsd.sock" ]; then
    jobs=$("$builddir/tests/qmp-cmd" "$H/$h/run/qsd.sock" query-jobs 2>&1 || true)
    [ "$jobs" = "[]" ] && pass || fail "host $h: qsd jobs left: $jobs"
  fi
done
tmp=$(find "$SHARED" "$T/fuse-src" -name '.virt-overlay-*' | head -n 3)
[ -z "$tmp" ] && pass || fail "temporary files left: $tmp"
twohosts_stop

n=$(wc -l < "$T/ms" 2>/dev/null || echo 0)
echo "soak-migrate: $n live migrations of 2 domains (persistent + ephemeral overlay each), local filesystem and bindfs"
[ "$n" -gt 0 ] && awk '{ s += $1; if ($1 > m) m = $1 } END {
  printf "soak-migrate: migration mean %d ms, max %d ms\n", s / NR, m }' "$T/ms"
finish
