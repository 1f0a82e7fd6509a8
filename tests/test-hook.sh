#!/bin/sh
# virt-overlay-hook, operation by operation, against the real
# qemu-storage-daemon: exit codes, messages, files, and the ledger.
. "${srcdir:-.}/tests/functions.sh"
requires "$QSD"
requires "$QEMU_IMG"
requires qemu-io

HOOK="$builddir/hook/virt-overlay-hook"
if [ "${OVL_VALGRIND:-0}" = 1 ]; then
  HOOK="valgrind -q --error-exitcode=119 --leak-check=full --errors-for-leak-kinds=definite $HOOK"
fi
mkdir -m 0711 "$T/save"
write_conf "$T/conf"
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases
UUID=4f9c2a3e-1b7d-4e2a-9c1f-0123456789ab

# hook OP SUBOP [EXTRA [REASON]] < xml: records rc, stdout, stderr
hook () {
  set +e
  $HOOK dom "$@" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
}
expect_rc () { [ "$rc" = "$1" ] && pass || fail "$2: exit $rc, want $1 ($(cat "$T/stderr"))"; }
expect_err () { grep -q -F -- "$1" "$T/stderr" && pass || fail "want '$1' in: $(cat "$T/stderr")"; }
expect_quiet_stdout () { [ -s "$T/stdout" ] && fail "$1: stdout not empty: $(cat "$T/stdout")" || pass; }
# Inode numbers are reused at once: tell files apart by a mark we append.
mark () { printf 'OVLMARK' >> "$1"; }
marked () { [ "$(tail -c 7 "$1")" = OVLMARK ]; }

# ---- operations we ignore: exit 0 at once, read nothing, contact nothing ----
mkfifo "$T/fifo"
for op in "reconnect begin" "started begin" "stopped end" "start begin" "migrate end"; do
  # stdin never reaches EOF and the configuration does not even exist
  sleep 5 > "$T/fifo" & writer=$!
  t0=$(date +%s)
  set +e
  VIRT_OVERLAY_CONFIG=/nonexistent $HOOK dom $op - < "$T/fifo" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
  t1=$(date +%s)
  kill "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  [ "$rc" = 0 ] && pass || fail "$op: exit $rc"
  [ $((t1 - t0)) -lt 4 ] && pass || fail "$op waited for stdin"
  expect_quiet_stdout "$op"
done

# ---- persistent: created when missing, left alone when present ----
domain dom "vda persistent $img/p.qcow2 $img/base.qcow2 qcow2" "vdb persistent $img/pr.qcow2 $img/base.raw raw" > "$T/p.xml"
hook prepare begin - < "$T/p.xml"; expect_rc 0 "prepare persistent"
expect_quiet_stdout prepare
"$QEMU_IMG" info --output=json "$img/p.qcow2" | grep -q "\"backing-filename\": \"$img/base.qcow2\"" && pass || fail "p.qcow2 backing"
"$QEMU_IMG" info --output=json "$img/pr.qcow2" | grep -q '"backing-filename-format": "raw"' && pass || fail "pr.qcow2 backing format"
echo "guest data" > "$img/p.qcow2"
sum=$(sha256sum "$img/p.qcow2")
hook prepare begin - < "$T/p.xml"; expect_rc 0 "prepare persistent again"
[ "$(sha256sum "$img/p.qcow2")" = "$sum" ] && pass || fail "persistent overlay touched"
hook release end - < "$T/p.xml"; expect_rc 0 "release persistent"
[ -e "$img/p.qcow2" ] && [ -e "$img/pr.qcow2" ] && pass || fail "release removed a persistent overlay"
# Recorded as persistent (for "virt-overlay reset"), and kept by release.
for f in p pr; do
  grep -o '{"path[^}]*}' "$T/state/domains/$UUID" | grep -F "\"path\":\"$img/$f.qcow2\"" |
    grep -q '"mode":"persistent"' && pass || fail "$f.qcow2 not recorded as persistent"
done
rm -f "$img/p.qcow2" "$img/pr.qcow2"

# ---- ephemeral: fresh at every cold boot, gone at release ----
domain dom "vda ephemeral $img/e.qcow2 $img/base.qcow2 qcow2" > "$T/e.xml"
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare ephemeral"
[ -f "$img/e.qcow2" ] && pass || fail "ephemeral overlay not made"
grep -qF "\"path\":\"$img/e.qcow2\"" "$T/state/domains/$UUID" && pass || fail "ledger entry missing"
mark "$img/e.qcow2"
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare ephemeral again"
marked "$img/e.qcow2" && fail "ephemeral overlay not recreated at a cold boot" || pass
hook release end - < "$T/e.xml"; expect_rc 0 "release ephemeral"
[ -e "$img/e.qcow2" ] && fail "ephemeral overlay not removed" || pass
# (the ledger keeps the persistent overlays made earlier for this UUID)
grep -qF "\"path\":\"$img/e.qcow2\"" "$T/state/domains/$UUID" 2>/dev/null &&
  fail "ledger entry left behind" || pass
hook release end - < "$T/e.xml"; expect_rc 0 "release twice"

# Not ours: refused, untouched.
echo "someone's disk" > "$img/e.qcow2"
sum=$(sha256sum "$img/e.qcow2")
hook prepare begin - < "$T/e.xml"; expect_rc 1 "prepare over a foreign file"
expect_err "disk vda: ephemeral overlay '$img/e.qcow2' exists and was not created by virt-overlay for this domain"
[ "$(sha256sum "$img/e.qcow2")" = "$sum" ] && pass || fail "foreign file touched"
hook release end - < "$T/e.xml"; expect_rc 0 "release after a failed prepare"
[ "$(sha256sum "$img/e.qcow2")" = "$sum" ] && pass || fail "release removed a foreign file"
rm -f "$img/e.qcow2"

# Replaced behind our back: release leaves the new file alone.
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare"
rm "$img/e.qcow2"; echo "new" > "$img/e.qcow2"
hook release end - < "$T/e.xml"; expect_rc 0 "release of a replaced overlay"
[ "$(cat "$img/e.qcow2")" = new ] && pass || fail "replaced file removed"
expect_err "no longer the overlay virt-overlay made"
rm -f "$img/e.qcow2"

# Saved: kept (libvirt >= 10.5 reason, and a managed-save image).
hook prepare begin - < "$T/e.xml"; mark "$img/e.qcow2"
hook release end saved < "$T/e.xml"; expect_rc 0 "release saved (argv[4])"
[ -e "$img/e.qcow2" ] && pass || fail "saved domain lost its ephemeral overlay"
hook release end - saved < "$T/e.xml"; expect_rc 0 "release saved (argv[5])"
[ -e "$img/e.qcow2" ] && pass || fail "saved domain lost its ephemeral overlay (argv[5])"
: > "$T/save/dom.save"
hook release end - < "$T/e.xml"; expect_rc 0 "release with a managed save"
[ -e "$img/e.qcow2" ] && pass || fail "managed-saved domain lost its ephemeral overlay"
# ... and the start from the managed save finds it as it was.
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare of a managed-saved domain"
marked "$img/e.qcow2" && pass || fail "ephemeral overlay recreated under a managed save"
rm "$T/save/dom.save"

# Restore: restore begin, then prepare keeps the overlay.
hook restore begin - < "$T/e.xml"; expect_rc 0 "restore begin"
expect_quiet_stdout "restore begin"
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare after restore"
marked "$img/e.qcow2" && pass || fail "restore recreated the ephemeral overlay"
# The restore flag is used once: the next cold boot recreates it.
hook prepare begin - < "$T/e.xml"; expect_rc 0 "cold boot after restore"
marked "$img/e.qcow2" && fail "cold boot kept a stale ephemeral overlay" || pass
hook release end - < "$T/e.xml"
# A restore whose ephemeral overlay is gone is refused.
hook restore begin - < "$T/e.xml"; expect_rc 0 "restore begin"
hook prepare begin - < "$T/e.xml"; expect_rc 1 "restore without its overlay"
expect_err "disk vda: ephemeral overlay '$img/e.qcow2' is missing"
[ -e "$img/e.qcow2" ] && fail "restore made a fresh ephemeral disk" || pass
hook release end - < "$T/e.xml"

# Incoming migration: an overlay must be on this host already (shared
# storage; the two-host cases are in test-migrate.sh).
hook migrate begin - < "$T/e.xml"; expect_rc 1 "migrate ephemeral, no overlay"
expect_err "disk vda: ephemeral overlay '$img/e.qcow2' is not on this host"
expect_quiet_stdout "migrate begin"
rm -f "$img/p.qcow2"
: > "$img/pr.qcow2"             # vdb's is there all along
hook migrate begin - < "$T/p.xml"; expect_rc 1 "migrate persistent, no overlay"
expect_err "disk vda: overlay '$img/p.qcow2' is not on this host; migrating needs storage both hosts share"
: > "$img/p.qcow2"
hook migrate begin - < "$T/p.xml"; expect_rc 0 "migrate persistent"
expect_quiet_stdout "migrate begin"
# libvirt runs the prepare of an incoming migration too: a persistent
# overlay gone since must not be made empty under the migrated guest.
rm -f "$img/p.qcow2"
hook prepare begin - < "$T/p.xml"; expect_rc 1 "prepare of an incoming migration"
expect_err "disk vda: overlay '$img/p.qcow2' is not on this host"
[ -e "$img/p.qcow2" ] && fail "an incoming migration got an empty overlay" || pass
# The mark is for that prepare only: the next cold start makes it.
hook prepare begin - < "$T/p.xml"; expect_rc 0 "cold start after a refused migration"
[ -f "$img/p.qcow2" ] && pass || fail "persistent overlay not made after the migration"
# ... and an overlay that is there (shared storage) is the disk.
mark "$img/p.qcow2"
hook migrate begin - < "$T/p.xml"; expect_rc 0 "migrate persistent, overlay present"
hook prepare begin - < "$T/p.xml"; expect_rc 0 "prepare of a migration on shared storage"
marked "$img/p.qcow2" && pass || fail "incoming migration replaced an existing overlay"
rm -f "$img/p.qcow2"
# A failed migration's release end drops the mark.
: > "$img/p.qcow2"
hook migrate begin - < "$T/p.xml"; expect_rc 0 "migrate persistent"
rm "$img/p.qcow2"
hook release end - < "$T/p.xml"; expect_rc 0 "release after a failed migration"
hook prepare begin - < "$T/p.xml"; expect_rc 0 "cold start after a failed migration"
[ -f "$img/p.qcow2" ] && pass || fail "mark outlived the migration's release"
rm -f "$img/p.qcow2"
# A mark left by a migration that never got to its prepare expires.
: > "$img/p.qcow2"
hook migrate begin - < "$T/p.xml"; expect_rc 0 "migrate persistent"
rm "$img/p.qcow2"
ledger=$T/state/domains/$UUID
grep -q '"migration-pending":' "$ledger" && pass || fail "no migration mark in the ledger"
old=$(( $(date +%s) - 121 ))
[ -f "$ledger" ] && sed -i "s/\"migration-pending\":[0-9]*/\"migration-pending\":$old/" "$ledger"
hook prepare begin - < "$T/p.xml"; expect_rc 0 "cold start after an old migration mark"
[ -f "$img/p.qcow2" ] && pass || fail "an expired migration mark blocked a cold start"
rm -f "$img/p.qcow2"
hook release end - < "$T/p.xml"
# Nothing but persistent overlays is recorded after a release.
[ -z "$(ephemeral_entries "$ledger")" ] && pass ||
  fail "ledger entries left after release: $(cat "$ledger")"
grep -q '"migration-pending"' "$ledger" && fail "migration mark left after release" || pass
rm -f "$img/pr.qcow2"

# ---- two callers for one domain at once lose nothing ----
# libvirt serialises jobs per domain; scripts and the CLI do not.  Every
# ledger read-modify-write is under the domain's lock: however the two
# prepares interleave, the overlay that stays is in the ledger, and the
# release removes it.
for round in 1 2 3 4 5; do
  $HOOK dom prepare begin - < "$T/e.xml" 2> "$T/race1" & p1=$!
  $HOOK dom prepare begin - < "$T/e.xml" 2> "$T/race2" & p2=$!
  wait $p1 || true; wait $p2 || true
  [ -f "$img/e.qcow2" ] && pass || fail "race $round: no overlay ($(cat "$T/race1" "$T/race2"))"
  hook release end - < "$T/e.xml"; expect_rc 0 "release after racing prepares"
  [ -e "$img/e.qcow2" ] && fail "race $round: an overlay lost its ledger entry" || pass
  hook prepare begin - < "$T/e.xml"; expect_rc 0 "start after racing prepares ($round)"
  hook release end - < "$T/e.xml"
done
# A caller that holds the lock past our deadline: we give up in time,
# saying so, and touch nothing.
flock -o "$T/state/domains/$UUID.lock" sleep 30 & holder=$!
sleep 0.3
write_conf "$T/conf.short" "timeout_ms = 700"
set +e
VIRT_OVERLAY_CONFIG=$T/conf.short $HOOK dom prepare begin - < "$T/e.xml" > /dev/null 2> "$T/stderr"
rc=$?
set -e
kill $holder 2>/dev/null; wait $holder 2>/dev/null || true
expect_rc 1 "prepare while the ledger is locked"
expect_err "$UUID.lock: still held by another caller at the deadline"
grep -q "gave up" "$T/stderr" && fail "the watchdog, not the lock wait, ended it" || pass
[ -e "$img/e.qcow2" ] && fail "made an overlay without the ledger lock" || pass

# ---- an overlay a QEMU has open is never removed ----
# libvirt prepares before QEMU starts and releases after it ends; a
# script or a second caller may not.  QEMU's image lock says it is open.
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare before the image is opened"
mark "$img/e.qcow2"
mkfifo "$T/qio"
qemu-io -f qcow2 "$img/e.qcow2" < "$T/qio" > "$T/qio.out" 2>&1 & qio=$!
exec 3> "$T/qio"
# Its prompt says the image is open.  (Probing with qemu-img info while
# it opens would race it: info's own lock makes qemu-io's fail.)
n=0
while ! grep -q "qemu-io>" "$T/qio.out" && kill -0 $qio 2>/dev/null && [ $n -lt 200 ]; do
  sleep 0.05; n=$((n + 1))
done
"$QEMU_IMG" info "$img/e.qcow2" > /dev/null 2>&1 && fail "qemu-io did not lock the overlay: $(cat "$T/qio.out")" || pass
hook prepare begin - < "$T/e.xml"; expect_rc 1 "prepare of an overlay in use"
expect_err "is in use (a QEMU holds its image lock); left alone"
marked "$img/e.qcow2" && pass || fail "prepare replaced an overlay in use"
hook release end - < "$T/e.xml"; expect_rc 0 "release of an overlay in use"
expect_err "is in use (a QEMU holds its image lock); left alone; its ledger entry is kept"
[ -f "$img/e.qcow2" ] && pass || fail "release removed an overlay in use"
exec 3>&-
wait $qio || true
hook release end - < "$T/e.xml"; expect_rc 0 "release once it is closed"
[ -e "$img/e.qcow2" ] && fail "the overlay was not removed once closed" || pass

# ---- decisions never read an errno set by another call ----
# overlay_dirs changed while the domain ran: release cannot tell what is
# at the old path, so it keeps both the file and its ledger entry, and
# says so truthfully.
hook prepare begin - < "$T/e.xml"; expect_rc 0 "prepare before overlay_dirs changes"
write_conf "$T/conf.moved" "overlay_dirs = $T/elsewhere"
mkdir -p "$T/elsewhere"
set +e
VIRT_OVERLAY_CONFIG=$T/conf.moved $HOOK dom release end - < "$T/e.xml" > /dev/null 2> "$T/stderr"
rc=$?
set -e
expect_rc 0 "release with overlay_dirs changed"
expect_err "is outside the allowed directories; its ledger entry is kept"
grep -q "no longer the overlay" "$T/stderr" && fail "release claimed the overlay was replaced" || pass
[ -f "$img/e.qcow2" ] && pass || fail "release removed an overlay it could not check"
hook release end - < "$T/e.xml"; expect_rc 0 "release with overlay_dirs back"
[ -e "$img/e.qcow2" ] && fail "the kept entry did not let the overlay be removed" || pass

# ---- a domain name cannot forge a ledger entry ----
# The old line ledger read 8191 bytes a line: a name of 8184 'A's, then
# what looks like an entry for a file virt-overlay never made, had that
# file removed at release.
# "DEV INO BIRTH-SEC BIRTH-NSEC" of $1 as virt-overlay's statx sees it.
file_id () {
  birth=$(stat -c %w "$1")
  nsec=0
  case $birth in
    *.*) nsec=$(echo "$birth" | sed 's/^[^.]*\.\([0-9]*\).*/\1/; s/^0*//') ;;
  esac
  # shellcheck disable=SC2046
  set -- $(stat -c '%Hd %Ld %i %W' "$1")
  echo "$(( ($1 << 32) | $2 )) $3 $4 ${nsec:-0}"
}
echo "not virt-overlay's" > "$img/victim.qcow2"
forged=$(printf "%8184s" "" | tr ' ' A)"ephemeral $(file_id "$img/victim.qcow2") $img/victim.qcow2"
domain "$forged" "vda ephemeral $img/f.qcow2 $img/base.qcow2 qcow2" > "$T/forged.xml"
for round in 1 2; do
  hook prepare begin - < "$T/forged.xml"; expect_rc 0 "prepare with a forging name ($round)"
  [ -f "$img/f.qcow2" ] && pass || fail "ephemeral overlay of the forging domain not made"
  hook release end - < "$T/forged.xml"; expect_rc 0 "release with a forging name ($round)"
  [ -s "$T/stderr" ] && fail "release with a forging name: $(cat "$T/stderr")" || pass
  [ -e "$img/victim.qcow2" ] && pass || fail "a domain name had a file removed"
  [ -e "$img/f.qcow2" ] && fail "ephemeral overlay of the forging domain not removed" || pass
done
rm -f "$img/victim.qcow2"
# A name longer than the old line buffer no longer locks the domain out.
domain "$(printf "%9000s" "" | tr ' ' B)" "vda ephemeral $img/f.qcow2 $img/base.qcow2 qcow2" > "$T/long.xml"
hook prepare begin - < "$T/long.xml"; expect_rc 0 "prepare with a long name"
mark "$img/f.qcow2"
hook prepare begin - < "$T/long.xml"; expect_rc 0 "prepare again with a long name"
marked "$img/f.qcow2" && fail "long name: ephemeral overlay not recreated" || pass
hook release end - < "$T/long.xml"; expect_rc 0 "release with a long name"
[ -e "$img/f.qcow2" ] && fail "long name: ephemeral overlay not removed" || pass

# ---- refusals through the hook: one line per failing disk, no files ----
printf 'QFI\373' > "$img/liar.raw"; truncate -s 1M "$img/liar.raw"
domain dom "vda persistent $img/ok.qcow2 $img/base.qcow2 qcow2" \
  "vdb ephemeral $img/bad1.qcow2 $img/liar.raw raw" \
  "vdc persistent $img/bad2.qcow2 $img/missing.qcow2 qcow2" \
  "vdd persistent $T/outside.qcow2 $img/base.qcow2 qcow2" > "$T/bad.xml"
before=$(snapshot "$img")
hook prepare begin - < "$T/bad.xml"; expect_rc 1 "prepare with bad disks"
expect_err "disk vdb: base '$img/liar.raw': declared raw but carries a qcow2/qcow header"
expect_err "disk vdc: base '$img/missing.qcow2': No such file or directory"
expect_err "disk vdd: overlay path '$T/outside.qcow2' is outside the allowed directories"
[ "$(grep -c '^virt-overlay: disk' "$T/stderr")" = 3 ] && pass || fail "want 3 lines: $(cat "$T/stderr")"
[ "$(snapshot "$img")" = "$before" ] && pass || fail "files changed by a refused prepare"
[ -e "$T/outside.qcow2" ] && fail "file made outside" || pass

# Malformed or hostile XML.
echo "<domain><name>x" > "$T/broken.xml"
hook prepare begin - < "$T/broken.xml"; expect_rc 1 "malformed prepare"
expect_err "domain XML is malformed"
hook release end - < "$T/broken.xml"; expect_rc 0 "malformed release"
head -c 5000000 /dev/zero | tr '\0' ' ' > "$T/huge.xml"
hook prepare begin - < "$T/huge.xml"; expect_rc 1 "oversize prepare"
expect_err "larger than"

# ---- the hook never leaves a process on its stdout/stderr ----
# (a fresh socket: this prepare starts qemu-storage-daemon itself)
sed -i "s|^qsd_socket = .*|qsd_socket = $T/run2/qsd.sock|" "$T/conf"
at_exit "stop_pidfile $T/run2/qsd.sock.pid"
domain dom "vda persistent $img/spawn.qcow2 $img/base.qcow2 qcow2" > "$T/s.xml"
set +e
timeout 20 sh -c "$HOOK dom prepare begin - < '$T/s.xml' 2>&1 | cat > '$T/piped'"
rc=$?
set -e
[ "$rc" = 0 ] && pass || fail "hook output pipe held open (exit $rc)"
[ -S "$T/run2/qsd.sock" ] && pass || fail "qsd not started by the hook"
[ -f "$img/spawn.qcow2" ] && pass || fail "overlay not made by the spawning hook"

# ---- with the warm pool: a hit is recorded like any ephemeral overlay,
# and the detached refiller holds none of libvirt's pipes ----
echo "pool_size = 2" >> "$T/conf"
"$builddir/cli/virt-overlay" pool fill "$img/base.qcow2"
find "$img/.virt-overlay-pool" -name 'ready-*' -printf '%i\n' | sort > "$T/pooled"
[ "$(wc -l < "$T/pooled")" = 2 ] && pass || fail "pool not filled"
set +e
timeout 20 sh -c "$HOOK dom prepare begin - < '$T/e.xml' 2>&1 | cat > '$T/piped'"
rc=$?
set -e
[ "$rc" = 0 ] && pass || fail "prepare from the pool: exit $rc, $(cat "$T/piped")"
grep -qx "$(stat -c %i "$img/e.qcow2")" "$T/pooled" && pass || fail "prepare did not take from the pool"
grep -qF "\"path\":\"$img/e.qcow2\"" "$T/state/domains/$UUID" && pass || fail "pooled overlay not in the ledger"
hook release end - < "$T/e.xml"; expect_rc 0 "release of a pooled overlay"
[ -e "$img/e.qcow2" ] && fail "pooled ephemeral overlay not removed" || pass
for l in "$img"/.virt-overlay-pool/*/lock; do flock "$l" true 2>/dev/null || true; done
# ---- disks that are not plain files: nothing made; refused when named ----
sed -i "s|^qsd_socket = .*|qsd_socket = $T/run/qsd.sock|; /^pool_size/d" "$T/conf"
ENC="<encryption format='luks'><secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption>"
domain dom "vda ephemeral $img/enc.qcow2 $img/base.qcow2 qcow2" |
  sed "s|<source file='$img/enc.qcow2'/>|<source file='$img/enc.qcow2'>$ENC</source>|" > "$T/enc.xml"
grep -q "<encryption" "$T/enc.xml" || fail "enc.xml lacks <encryption>"
hook prepare begin - < "$T/enc.xml"; expect_rc 1 "prepare of an encrypted overlay named in the metadata"
expect_err "disk vda: metadata names a disk virt-overlay leaves to libvirt: <encryption> on the overlay"
[ -e "$img/enc.qcow2" ] && fail "an unencrypted overlay was made for an encrypted disk" || pass
grep -v "ovl:disk" "$T/enc.xml" > "$T/enc-unnamed.xml"
hook prepare begin - < "$T/enc-unnamed.xml"; expect_rc 0 "prepare of an encrypted disk, no metadata"
[ -e "$img/enc.qcow2" ] && fail "an overlay was made for an encrypted disk left to libvirt" || pass

# ---- every message is one line, whatever the XML holds ----
domain dom "vda a&#10;b $img/nl.qcow2 $img/base.qcow2 qcow2" > "$T/nl.xml"
hook prepare begin - < "$T/nl.xml"; expect_rc 1 "prepare with a newline in a value"
expect_err "disk vda: mode 'a\nb' is not persistent or ephemeral"
[ "$(wc -l < "$T/stderr")" = 1 ] && pass || fail "a message split over lines: $(cat "$T/stderr")"

# ---- the parse is bounded: absurd XML is refused at once, for every op ----
{
  echo "<domain type='qemu'><name>dom</name><uuid>$UUID</uuid><metadata>"
  printf "<f:x xmlns:f='urn:example:f'"
  awk 'BEGIN { for (i = 0; i < 100000; i++) printf " a%d=\"\"", i }'
  echo "/></metadata><devices/></domain>"
} > "$T/attrs.xml"
for op in "prepare begin" "release end"; do
  t0=$(date +%s)
  set +e
  timeout 20 $HOOK dom $op - < "$T/attrs.xml" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
  t1=$(date +%s)
  case $op in prepare*) expect_rc 1 "$op with 100000 attributes" ;; *) expect_rc 0 "$op with 100000 attributes" ;; esac
  expect_err "has more than 256 attributes; refused"
  if [ "${OVL_VALGRIND:-0}" != 1 ]; then
    [ $((t1 - t0)) -lt 5 ] && pass || fail "$op with 100000 attributes took $((t1 - t0)) s"
  fi
done

# A parse that ends past the deadline goes no further.
awk 'BEGIN { printf "<f:x xmlns:f=\"urn:example:f\">"
             for (i = 0; i < 50000; i++) printf "<p%d/>", i; print "</f:x>" }' > "$T/filler"
domain dom "vda persistent $img/late.qcow2 $img/base.qcow2 qcow2" |
  sed "s|</ovl:overlays></metadata>|</ovl:overlays>\nFILLER\n</metadata>|" |
  sed "/^FILLER\$/{r $T/filler
d}" > "$T/late.xml"
grep -q "<p49999/>" "$T/late.xml" || fail "late.xml lacks its filler"
sed -i "s|^timeout_ms = .*|timeout_ms = 1|" "$T/conf"
hook prepare begin - < "$T/late.xml"; expect_rc 1 "prepare past the deadline"
if [ "${OVL_VALGRIND:-0}" = 1 ] && grep -q "gave up: still running" "$T/stderr"; then
  pass                          # valgrind's parse can outlast the watchdog too
else
  expect_err "reading the domain XML took longer than timeout_ms (1 ms)"
fi
[ -e "$img/late.qcow2" ] && fail "an overlay was made past the deadline" || pass
sed -i "s|^timeout_ms = .*|timeout_ms = 20000|" "$T/conf"
hook prepare begin - < "$T/late.xml"; expect_rc 0 "the same domain within the deadline"
[ -f "$img/late.qcow2" ] && pass || fail "overlay not made within the deadline"
# ---- a qsd_binary that never gets ready: 4 concurrent prepares each end
# within timeout_ms with the reason, before the watchdog, and nothing of
# it stays running ----
printf '#!/bin/sh\necho $$ >> "$0.pids"\nsleep 1000 & echo $! >> "$0.pids"\nwait\n' > "$T/qsd-never"
chmod +x "$T/qsd-never"
write_conf "$T/nconf" "qsd_socket = $T/run-never/qsd.sock" "qsd_binary = $T/qsd-never" "timeout_ms = 2000"
domain dom "vda persistent $img/never.qcow2 $img/base.qcow2 qcow2" > "$T/never.xml"
# Four domains (one domain's prepares queue on its ledger lock instead).
for i in 1 2 3 4; do
  sed "s|$UUID|${UUID%?}$i|; s|never.qcow2|never$i.qcow2|" "$T/never.xml" > "$T/never$i.xml"
  VIRT_OVERLAY_CONFIG=$T/nconf HOOK="$HOOK" sh -c 't0=$(date +%s%N)
    timeout 60 $HOOK dom prepare begin - < "$1" 2> "$2.err"; rc=$?
    echo "$rc $(( ($(date +%s%N) - t0) / 1000000 ))" > "$2.rc"' sh "$T/never$i.xml" "$T/never$i" &
done
wait
killers=0
for i in 1 2 3 4; do
  read -r nrc nms < "$T/never$i.rc"
  [ "$nrc" = 1 ] && pass || fail "never-ready hook $i: exit $nrc: $(cat "$T/never$i.err")"
  if [ "${OVL_VALGRIND:-0}" != 1 ]; then
    [ "$nms" -lt 3500 ] && pass || fail "never-ready hook $i took $nms ms with timeout_ms 2000"
  fi
  grep -q "gave up" "$T/never$i.err" && fail "hook $i ended by its watchdog: $(cat "$T/never$i.err")" || pass
  grep -q -F "did not get ready" "$T/never$i.err" && grep -q -F "within timeout_ms (2000 ms)" "$T/never$i.err" \
    && pass || fail "never-ready hook $i: $(cat "$T/never$i.err")"
  grep -q -F "$T/qsd-never did not get ready on $T/run-never/qsd.sock within timeout_ms (2000 ms): killed it" \
    "$T/never$i.err" && killers=$((killers + 1))
done
[ "$killers" -ge 1 ] && pass || fail "no hook said it killed the never-ready qsd"
[ -s "$T/qsd-never.pids" ] && pass || fail "the never-ready qsd never ran"
expect_pids_gone "$T/qsd-never.pids" "the never-ready qsd"
for i in 1 2 3 4; do [ -e "$img/never$i.qcow2" ] && fail "an overlay was made without a daemon" || pass; done
finish
