#!/bin/sh
# The mark of "migrate begin" must hold for the migration's prepare
# whatever the wall clock does in between: a clock stepped back (NTP,
# even by a second) leaves a mark "from the future", and the prepare
# must still refuse to make a missing persistent overlay empty under the
# incoming guest.  The step is played by writing the mark as it was
# before the clock went back (the overlay is there at migrate begin,
# which refuses a missing one, and gone by the prepare).  Needs the real
# qsd (a wrong create works).
. "${srcdir:-.}/tests/functions.sh"
requires "$QSD"
requires "$QEMU_IMG"

HOOK="$builddir/hook/virt-overlay-hook"
UUID=c1c1c1c1-1b2c-4d3e-8f40-516273849506
mkdir -m 0711 "$T/save"
write_conf "$T/conf" "pool_size = 0"
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases
one_disk_domain mig "$UUID" persistent "$img/p.qcow2" > "$T/p.xml"
L=$T/state/domains/$UUID

for step in 1 5 60; do
  : > "$img/p.qcow2"
  "$HOOK" mig migrate begin - < "$T/p.xml" || fail "migrate begin failed"
  rm "$img/p.qcow2"
  grep -q '"migration-pending":' "$L" || fail "migrate begin left no mark"
  now=$(date +%s)
  sed -i "s/\"migration-pending\":[0-9]*/\"migration-pending\":$((now + step))/" "$L"
  if "$HOOK" mig prepare begin - < "$T/p.xml" 2> /dev/null; then
    fail "clock back ${step} s: the migration's prepare succeeded"
  else pass; fi
  if [ -e "$img/p.qcow2" ]; then
    fail "clock back ${step} s: an empty overlay was made under the incoming guest"
    rm -f "$img/p.qcow2"
  else pass; fi
done
finish
