#!/bin/sh
# What the hook and the refiller tell syslog, read back from a private
# syslog socket: the hook runs in a mount namespace of its own whose
# /dev holds a socket of the test's (tests/syslog-sink) as /dev/log, so
# nothing reaches the host's log.  One line (facility daemon, ident
# virt-overlay) per overlay made, with how and how long, per overlay
# removed, per refused disk (the same message libvirt shows), and per
# refill; nothing on stdout.
. "${srcdir:-.}/tests/functions.sh"
requires_root
requires "$QSD"
requires "$QEMU_IMG"
requires unshare

HOOK="$builddir/hook/virt-overlay-hook"
mkdir -m 0711 "$T/save"
write_conf "$T/conf"
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases
B=$img/base.qcow2
UUID=6a1d0f3e-2b7c-4e2a-9c1f-0123456789ab

# The private /dev: the usual character devices, and the sink as log.
mkdir "$T/dev"
for n in null zero full random urandom; do : > "$T/dev/$n"; done
"$builddir/tests/syslog-sink" "$T/dev/log" "$T/syslog" &
sink=$!
at_exit "kill $sink 2>/dev/null"
i=0; until [ -S "$T/dev/log" ] || [ $i -ge 100 ]; do sleep 0.02; i=$((i + 1)); done
[ -S "$T/dev/log" ] && pass || fail "the sink did not start"

# in_ns CMD...: CMD with the private /dev (stdin, stdout, stderr kept).
in_ns () {
  unshare -m --propagation private sh -c '
    d=$1; shift
    for n in null zero full random urandom; do mount --bind "/dev/$n" "$d/$n"; done
    mount --bind "$d" /dev
    exec "$@"' sh "$T/dev" "$@"
}

# hook DOMAIN-XML-FILE OP SUBOP: rc, stdout, stderr, and the lines
# syslog got during the call in $T/got.
hook () {
  before=$(wc -l < "$T/syslog" 2>/dev/null || echo 0)
  set +e
  in_ns "$HOOK" logdom "$2" "$3" - < "$1" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
  tail -n +"$((before + 1))" "$T/syslog" > "$T/got"
}
# got PRIORITY TEXT: a line of that priority (<30> info, <28> warning,
# <27> error, all facility daemon) from ident virt-overlay holds TEXT.
got () {
  grep -F -- "$2" "$T/got" | grep -q "^<$1>.* virt-overlay\[[0-9]*\]: " && pass ||
    fail "no <$1> line with '$2' in: $(cat "$T/got")"
}
count () { [ "$(grep -c . "$T/got")" = "$1" ] && pass || fail "$2: want $1 lines: $(cat "$T/got")"; }
quiet () {
  [ -s "$T/stdout" ] && fail "$1: stdout: $(cat "$T/stdout")" || pass
  [ -s "$T/stderr" ] && fail "$1: stderr: $(cat "$T/stderr")" || pass
}

# qsd is up before the first hook, outside the namespace.
$builddir/cli/virt-overlay create "$B" "$img/warm.qcow2" && rm -f "$img/warm.qcow2"

# ---- a cold start: one line per overlay made ----
domain logdom "vda ephemeral $img/vda.qcow2 $B qcow2" "vdb persistent $img/vdb.qcow2 $B qcow2" > "$T/dom.xml"
hook "$T/dom.xml" prepare begin
[ "$rc" = 0 ] && pass || fail "prepare: exit $rc: $(cat "$T/stderr")"
quiet prepare
got 30 "domain logdom: disk vda: ephemeral overlay '$img/vda.qcow2' made on '$B' through qsd in "
got 30 "domain logdom: disk vdb: persistent overlay '$img/vdb.qcow2' made on '$B' through qsd in "
grep -q "through qsd in [0-9]* ms$" "$T/got" && pass || fail "no duration: $(cat "$T/got")"
count 2 "prepare"

# ---- the next cold boot: the ephemeral overlay is made anew ----
hook "$T/dom.xml" prepare begin
[ "$rc" = 0 ] && pass || fail "second prepare: exit $rc"
got 30 "domain logdom: disk vda: ephemeral overlay '$img/vda.qcow2' of the last boot removed"
got 30 "domain logdom: disk vda: ephemeral overlay '$img/vda.qcow2' made on '$B'"
count 2 "second prepare (vdb is kept: nothing to say)"

# ---- release: one line per overlay removed ----
hook "$T/dom.xml" release end
[ "$rc" = 0 ] && pass || fail "release: exit $rc"
quiet release
got 30 "domain logdom: ephemeral overlay '$img/vda.qcow2' removed"
count 1 "release"

# ---- a refused disk: the line libvirt shows, at error priority ----
: > "$T/outside.qcow2"
domain logdom "vdc persistent $T/elsewhere/vdc.qcow2 $B qcow2" > "$T/bad.xml"
hook "$T/bad.xml" prepare begin
[ "$rc" = 1 ] && pass || fail "refused prepare: exit $rc"
[ -s "$T/stdout" ] && fail "refused: stdout: $(cat "$T/stdout")" || pass
shown=$(sed -n 's/^virt-overlay: //p' "$T/stderr" | head -1)
[ -n "$shown" ] && pass || fail "refused: nothing on stderr"
got 27 "domain logdom: $shown"

# ---- the pool: taken from it, and the refiller's line ----
write_conf "$T/poolconf" "pool_size = 2"
export VIRT_OVERLAY_CONFIG=$T/poolconf
$builddir/cli/virt-overlay pool fill "$B" && pass || fail "pool fill"
rm -f "$img/vdb.qcow2"
domain logdom "vda ephemeral $img/vda.qcow2 $B qcow2" > "$T/pool.xml"
hook "$T/pool.xml" prepare begin
[ "$rc" = 0 ] && pass || fail "prepare from the pool: exit $rc: $(cat "$T/stderr")"
quiet "prepare from the pool"
got 30 "domain logdom: disk vda: ephemeral overlay '$img/vda.qcow2' made on '$B' from the pool in "
# The refiller runs detached, in the hook's namespace: its line follows.
i=0
until grep -q "pool refill of '$B' in $img: made 1 in [0-9]* ms" "$T/syslog" || [ $i -ge 200 ]; do
  sleep 0.05; i=$((i + 1))
done
grep "pool refill of '$B' in $img: made 1 in " "$T/syslog" | grep -q "^<30>.* virt-overlay\[[0-9]*\]: " &&
  pass || fail "no refill line: $(cat "$T/syslog")"
hook "$T/pool.xml" release end
got 30 "domain logdom: ephemeral overlay '$img/vda.qcow2' removed"

# Nothing reached the log but the lines of virt-overlay.
grep -v " virt-overlay\[[0-9]*\]: " "$T/syslog" && fail "other lines in the log" || pass
finish
