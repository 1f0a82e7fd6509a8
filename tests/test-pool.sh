#!/bin/sh
# The warm pool: hit, miss, stale base, the last overlay taken twice at
# once, refill after use, pool disabled, flush, and what is never handed
# out.  Against the real qemu-storage-daemon.
. "${srcdir:-.}/tests/functions.sh"
requires "$QSD"
requires "$QEMU_IMG"

conf () { write_conf "$T/conf" "pool_size = $1"; }
conf 2
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases
B=$img/base.qcow2

pooled_inodes () { find "$img/.virt-overlay-pool" -name 'ready-*.qcow2' -printf '%i\n' 2>/dev/null | sort; }
ready_count () { pooled_inodes | wc -l; }
# Wait (bounded) until the pool whose key matches $2 (default: the
# default options on $B's current size) holds $1 ready overlays, and no
# refiller is still at work.
wait_ready () {
  pat=${2:-"base $B;.*cluster-size 65536;"}
  i=0
  until $VO pool status | grep -q "ready=$1 .*$pat" || [ $i -ge 200 ]; do
    sleep 0.05; i=$((i + 1))
  done
  # (a stale pool may vanish between the glob and the flock)
  for l in "$img"/.virt-overlay-pool/*/lock; do flock "$l" true 2>/dev/null || true; done
}
from_pool () { pooled_inodes > "$T/before"; }
was_pooled () { grep -qx "$(stat -c %i "$1")" "$T/before"; }

# ---- fill, then a hit ----
$VO pool fill "$B" && pass || fail "pool fill"
[ "$(ready_count)" = 2 ] && pass || fail "fill made $(ready_count), want 2"
$VO pool status > "$T/status"
grep -q "ready=2 .*base $B;" "$T/status" && pass || fail "status: $(cat "$T/status")"
from_pool
$VO create "$B" "$img/hit.qcow2" && pass || fail "create (hit)"
was_pooled "$img/hit.qcow2" && pass || fail "not handed out from the pool"
info_of "$img/hit.qcow2" > "$T/hit.info"
"$QEMU_IMG" create -q -f qcow2 -F qcow2 -b "$B" "$T/ref.qcow2"
info_of "$T/ref.qcow2" | diff - "$T/hit.info" >/dev/null && pass || fail "pooled overlay differs from qemu-img create's"
"$QEMU_IMG" check -q "$img/hit.qcow2" && pass || fail "pooled overlay fails qemu-img check"
[ "$(stat -c %a "$img/hit.qcow2")" = 600 ] && pass || fail "pooled overlay mode"

# ---- refill after use ----
wait_ready 2
[ "$(ready_count)" = 2 ] && pass || fail "pool not refilled after use ($(ready_count))"

# ---- options must match exactly: another cluster size is a miss ----
from_pool
$VO create --cluster-size 131072 "$B" "$img/other.qcow2" && pass || fail "create with other options"
was_pooled "$img/other.qcow2" && fail "handed out a pooled overlay with other options" || pass
"$QEMU_IMG" info --output=json "$img/other.qcow2" | grep -q '"cluster-size": 131072' && pass || fail "cluster size"
wait_ready 2 "cluster-size 131072;"
# Pools of other options of the same, unchanged base live side by side.
[ "$($VO pool status | grep -c "base $B;")" = 2 ] && pass || fail "pools of other options lost"

# ---- stale base: replaced file, then a different size ----
from_pool
cp "$B" "$T/copy"; rm "$B"; "$QEMU_IMG" create -q -f qcow2 "$B" 64M
$VO create "$B" "$img/afterswap.qcow2" && pass || fail "create after the base was replaced"
was_pooled "$img/afterswap.qcow2" && fail "stale pooled overlay handed out (replaced base)" || pass
wait_ready 2
from_pool
"$QEMU_IMG" resize -q "$B" 128M
$VO create "$B" "$img/afterresize.qcow2" && pass || fail "create after the base grew"
was_pooled "$img/afterresize.qcow2" && fail "stale pooled overlay handed out (resized base)" || pass
"$QEMU_IMG" info --output=json "$img/afterresize.qcow2" | grep -q '"virtual-size": 134217728' && pass || fail "size after resize"
wait_ready 2 "base $B;.*cluster-size 65536;.*size 134217728"
# The pools of the base's earlier selves (any options) are gone.
$VO pool status > "$T/status"
[ "$(grep -c "base $B;" "$T/status")" = 1 ] && grep -q "base $B;.*size 134217728" "$T/status" \
  && pass || fail "stale pools kept: $(cat "$T/status")"

# ---- raw bases pool too ----
$VO pool fill --backing-format raw "$img/base.raw" && pass || fail "fill raw"
from_pool
$VO create --backing-format raw "$img/base.raw" "$img/onraw.qcow2" && pass || fail "create on raw"
was_pooled "$img/onraw.qcow2" && pass || fail "raw pool miss"
"$QEMU_IMG" info --output=json "$img/onraw.qcow2" | grep -q '"backing-filename-format": "raw"' && pass || fail "raw pooled backing format"
wait_ready 2 "base $img/base.raw;"

# ---- refills come in batches: above half full, a take starts none ----
$VO pool flush > /dev/null
conf 4
$VO pool fill "$B"
$VO create "$B" "$img/lw1.qcow2"
sleep 0.5   # a refiller, had one started, would be done by now
[ "$(ready_count)" = 3 ] && pass || fail "a take above the low-water mark refilled ($(ready_count))"
$VO create "$B" "$img/lw2.qcow2"
wait_ready 4
[ "$(ready_count)" = 4 ] && pass || fail "a take at the low-water mark did not refill ($(ready_count))"

# ---- the last pooled overlay, two takers at once: exactly one wins ----
$VO pool flush > /dev/null
conf 1
$VO pool fill "$B"
from_pool
[ "$(wc -l < "$T/before")" = 1 ] && pass || fail "want exactly one pooled overlay"
$VO create "$B" "$img/race1.qcow2" & p1=$!
$VO create "$B" "$img/race2.qcow2" & p2=$!
wait $p1 && wait $p2 && pass || fail "a racing taker failed"
n=0; for f in race1 race2; do was_pooled "$img/$f.qcow2" && n=$((n + 1)); done
[ "$n" = 1 ] && pass || fail "$n takers got the last pooled overlay"
for f in race1 race2; do "$QEMU_IMG" check -q "$img/$f.qcow2" || fail "$f"; done
wait_ready 1

# ---- pool disabled: ready overlays stay where they are ----
conf 0
from_pool
$VO create "$B" "$img/nopool.qcow2" && pass || fail "create without pool"
was_pooled "$img/nopool.qcow2" && fail "pool used with pool_size = 0" || pass
[ "$(pooled_inodes)" = "$(cat "$T/before")" ] && pass || fail "pool changed with pool_size = 0"
conf 2

# ---- never handed out: an untrusted pool directory, reserved names ----
wait_ready 1
chmod 0755 "$img/.virt-overlay-pool"
from_pool
$VO create "$B" "$img/untrusted.qcow2" && pass || fail "create with an open pool dir"
was_pooled "$img/untrusted.qcow2" && fail "handed out from a pool others can read" || pass
# ... and status and flush say so instead of showing nothing.
for c in status flush; do
  set +e; $VO pool $c > /dev/null 2> "$T/err"; rc=$?; set -e
  [ "$rc" = 1 ] && grep -q "$img/.virt-overlay-pool: not a private directory of ours" "$T/err" \
    && pass || fail "pool $c on an open pool dir: rc=$rc $(cat "$T/err")"
done
chmod 0700 "$img/.virt-overlay-pool"
set +e
$VO create "$B" "$img/.virt-overlay-pool/mine.qcow2" 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "reserved for virt-overlay" "$T/err" && pass || fail "reserved overlay path: $rc $(cat "$T/err")"
ready=$(find "$img/.virt-overlay-pool" -name 'ready-*' | head -n 1)
[ -n "$ready" ] || { fail "no pooled overlay to test with"; finish; }
set +e
$VO create "$ready" "$img/x.qcow2" 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "reserved for virt-overlay" "$T/err" && pass || fail "reserved base path: $rc $(cat "$T/err")"

# ---- a refiller that died leaves only temporary files; the next removes them ----
wait_ready 2
pdir=$(dirname "$ready")
deadpid=$(sh -c 'echo $$')
: > "$pdir/.virt-overlay-$deadpid-9.tmp"
$VO create "$B" "$img/after-crash.qcow2" && pass || fail "create after a dead refiller"
wait_ready 2
[ -e "$pdir/.virt-overlay-$deadpid-9.tmp" ] && fail "dead refiller's temp file left" || pass

# ---- the refiller, a program of its own: its interface and its failures ----
$VO pool flush > /dev/null
"$REFILL" "$B" "$img" 2> "$T/err" && pass || fail "refiller run by hand: $(cat "$T/err")"
[ "$(ready_count)" = 2 ] && pass || fail "refiller made $(ready_count), want 2"
grep -q "pool refill of '$B' in $img: made 2" "$T/err" && pass || fail "refiller said: $(cat "$T/err")"
"$REFILL" "$B" "$img" 2> "$T/err" && [ ! -s "$T/err" ] && pass || fail "a full pool: $(cat "$T/err")"
refill_fails () { # STATUS MESSAGE ARGS...
  want=$1 msg=$2; shift 2
  set +e; "$REFILL" "$@" 2> "$T/err"; rc=$?; set -e
  [ "$rc" = "$want" ] && grep -qF -e "$msg" "$T/err" && pass || fail "refiller $*: rc=$rc $(cat "$T/err")"
}
refill_fails 2 "Usage:" "$B"
refill_fails 2 "--cluster-size: " --cluster-size 1000 "$B" "$img"
refill_fails 2 "--lock-fd 7: not an open descriptor" --lock-fd 7 "$B" "$img"
refill_fails 1 "is outside the allowed directories" "$B" "$T"
refill_fails 1 "failed: " "$img/missing.qcow2" "$img"
# A lock that is not that pool's own is refused, not trusted.
exec 7> "$T/not-the-lock"
refill_fails 1 "the lock handed down is not this pool's lock" --lock-fd 7 --size 134217728 "$B" "$img"
exec 7>&-
# No refiller to start: the overlay is made all the same, with a warning.
VIRT_OVERLAY_REFILL=$T/no-such-refiller $VO create "$B" "$img/norefill.qcow2" 2> "$T/err" \
  && pass || fail "create without a refiller: $(cat "$T/err")"
grep -q "warning: pool: the refiller $T/no-such-refiller could not be run: No such file" "$T/err" \
  && pass || fail "no warning for a refiller that did not start: $(cat "$T/err")"
[ -f "$img/norefill.qcow2" ] && pass || fail "no overlay without a refiller"

# ---- flush leaves a pool whose lock a refiller holds ----
wait_ready 2
held=$(ls -d "$img"/.virt-overlay-pool/*/ | head -n 1)
n_held=$(ls "$held" | grep -c '^ready-' || true)
flock "$held/lock" sh -c "$VO pool flush" > "$T/out"
grep -q "left 1 pools that a refill is filling" "$T/out" && pass || fail "flush of a busy pool: $(cat "$T/out")"
[ -e "$held/lock" ] && [ -e "$held/key" ] && [ "$(ls "$held" | grep -c '^ready-')" = "$n_held" ] \
  && pass || fail "flush took from a pool whose lock was held: $(ls "$held")"
# Its lock file is the one the refiller holds: a second refiller waits.
exec 8< "$held/lock"
flock -n 8 && pass || fail "the busy pool's lock is held by no one after flush"
flock -u 8; exec 8<&-

# ---- flush removes pooled overlays and nothing else ----
before=$(cd "$img" && ls)
$VO pool flush > "$T/out"
grep -q "removed [1-9]" "$T/out" && ! grep -q "left" "$T/out" && pass || fail "flush: $(cat "$T/out")"
[ -z "$(ls -A "$img/.virt-overlay-pool")" ] && pass || fail "pools left after flush: $(ls -A "$img/.virt-overlay-pool")"
[ "$(ready_count)" = 0 ] && pass || fail "pooled overlays left after flush"
[ "$(cd "$img" && ls)" = "$before" ] && pass || fail "flush touched other files"
finish
