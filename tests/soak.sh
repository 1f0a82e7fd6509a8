#!/bin/sh
# make soak: ROUNDS (default 200) rounds of 4 domains started together
# (4 `virsh start` at once) and destroyed together, with the real
# libvirtd, the hook and qsd, the warm pool on.  Each domain has an
# ephemeral and a persistent overlay.  It fails on a failed start; an
# ephemeral overlay that is not fresh at a boot (same identity as the
# round before, or data of its own) or is left after a stop; a
# persistent overlay replaced or its data lost; and, at the end, any
# temporary file, ledger entry, qsd job or block node left, or qsd
# holding more descriptors than after round 1.  Prints figures at the
# end.  Not part of make check: it takes minutes.
#   ROUNDS=N MAXFAIL=N (stop after N failed rounds, default 5)
. "${srcdir:-.}/tests/functions.sh"
requires_root
for t in "$QSD" "$QEMU_IMG" qemu-io getfattr virsh libvirtd qemu-system-x86_64 flock; do
  requires "$t"
done
ROUNDS=${ROUNDS:-200}
MAXFAIL=${MAXFAIL:-5}
case $ROUNDS in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2;; esac

HOOKS=${OVL_LIBVIRT_HOOKS_DIR:-/etc/libvirt/hooks}
VIRSH="virsh -q -c qemu:///system"
HOOK=$(cd "$builddir" && pwd)/hook/virt-overlay-hook
QMP=$builddir/tests/qmp-cmd
SOCK=$T/run/qsd.sock
mkdir -p "$HOOKS/qemu.d" "$T/hooklog"

write_conf "$T/conf" "managed_save_dir = /var/lib/libvirt/qemu/save" "pool_size = 2"
at_exit "stop_pidfile $SOCK.pid"

# libvirt passes no environment: a wrapper gives the hook our config.
# It also keeps what the hook said (there may be no syslog), one line
# per invocation, so that a failure shows the hook's own words.
wrapper=$HOOKS/qemu.d/virt-overlay-soak-$$
cat > "$wrapper" <<EOW
#!/bin/sh
e=\$(mktemp '$T/hooklog/XXXXXX') || exit 1
t0=\$(date +%s%N)
VIRT_OVERLAY_CONFIG='$T/conf' VIRT_OVERLAY_REFILL='$REFILL' '$HOOK' "\$@" 2> "\$e"; rc=\$?
echo "\$2 \$3 \$(( (\$(date +%s%N) - t0) / 1000000 ))" >> '$T/hook.times'
if [ -s "\$e" ] || [ "\$rc" != 0 ]; then
  printf '%s %s %s %s rc=%s: %s\n' "\$(date +%T.%N)" "\$1" "\$2" "\$3" "\$rc" "\$(cat "\$e")" >> '$T/hook.log'
  cat "\$e" >&2
fi
rm -f "\$e"
exit \$rc
EOW
chmod 0755 "$wrapper"
at_exit "rm -f '$wrapper'"
use_hook_wrapper "$HOOKS"
: > "$T/hook.log"

make_bases

# Domain i: vda persistent on base.qcow2, vdb ephemeral on base.qcow2
# (domains 1, 2) or base.raw (3, 4): two pools, two takers each a round.
DOMS="1 2 3 4"
names=""
cleanup_domains () {
  for n in $names; do
    $VIRSH destroy "$n" >/dev/null 2>&1 || true
    $VIRSH undefine "$n" >/dev/null 2>&1 || true
  done
}
at_exit cleanup_domains
name_of () { echo "ovl-soak-$$-$1"; }
pers_of () { echo "$img/soak-$1-p.qcow2"; }
eph_of () { echo "$img/soak-$1-e.qcow2"; }
for i in $DOMS; do
  n=$(name_of "$i")
  if [ "$i" -le 2 ]; then eb=$img/base.qcow2 ef=qcow2; else eb=$img/base.raw ef=raw; fi
  cat > "$T/$n.xml" <<EOX
<domain type='qemu'><name>$n</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>
<ovl:disk target='vda' mode='persistent'/><ovl:disk target='vdb' mode='ephemeral'/>
</ovl:overlays></metadata>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$(pers_of "$i")'/>
<backingStore type='file'><format type='qcow2'/><source file='$img/base.qcow2'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$(eph_of "$i")'/>
<backingStore type='file'><format type='$ef'/><source file='$eb'/><backingStore/></backingStore>
<target dev='vdb' bus='virtio'/></disk>
<video><model type='none'/></video><memballoon model='none'/></devices></domain>
EOX
  names="$names $n"
  $VIRSH define "$T/$n.xml" >/dev/null
done

# A file's identity: inode, birth time and virt-overlay's token.
identity () {
  tok=$(getfattr -e hex -n trusted.virt-overlay.id --absolute-names "$1" 2>/dev/null |
        sed -n 's/^trusted\.virt-overlay\.id=//p')
  echo "$(stat -c '%i %W' "$1" 2>/dev/null || echo missing) ${tok:-no-token}"
}
# Clusters allocated in the overlay itself (depth 0), not in its base.
own_data () {
  "$QEMU_IMG" map -U --output=json "$1" 2>&1 | grep '"depth": 0' | grep '"data": true' || true
}
qsd_pid () { cat "$SOCK.pid" 2>/dev/null || echo none; }
qsd_fds () { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# The detached refillers of this build ("REFILL --lock-fd ...").
refillers () {
  for c in /proc/[0-9]*/cmdline; do
    case $(tr '\0' ' ' 2>/dev/null < "$c") in "$REFILL "*) echo "$c";; esac
  done
}
# Bounded: refillers finished, and no pool lock held.
wait_refillers () {
  k=0
  while [ -n "$(refillers)" ]; do
    k=$((k + 1))
    [ $k -lt 300 ] || { echo "refillers still running after 30 s: $(refillers)"; return 1; }
    sleep 0.1
  done
  for l in "$img"/.virt-overlay-pool/*/lock; do
    [ -e "$l" ] && timeout 30 flock "$l" true 2>/dev/null || true
  done
}
pooled_inodes () { find "$img/.virt-overlay-pool" -name 'ready-*.qcow2' -printf '%i\n' 2>/dev/null | sort; }
ms_now () { date +%s%N | cut -c1-13; }

round_failed=0
rfail () { fail "round $round: $*"; round_failed=1; }
# What the hook said about domain $1 since line $2 of its log.
hook_said () {
  tail -n +"$(($2 + 1))" "$T/hook.log" | grep -F " $1 " | sed 's/^/    hook: /' || true
}

# One round: start all four at once, check, destroy all four at once, check.
from_pool=0 made_at_start=0 starts=0
: > "$T/times"; : > "$T/tokens"
run_round () {
  round_failed=0
  logpos=$(wc -l < "$T/hook.log")
  pooled_inodes > "$T/pooled"
  for i in $DOMS; do
    ( t0=$(ms_now)
      if $VIRSH start "$(name_of "$i")" > "$T/start.$i" 2>&1; then r=0; else r=$?; fi
      echo "$r $(( $(ms_now) - t0 ))" > "$T/rc.$i" ) &
  done
  wait
  for i in $DOMS; do
    n=$(name_of "$i") e=$(eph_of "$i")
    read -r rc ms < "$T/rc.$i"
    echo "$ms" >> "$T/times"
    starts=$((starts + 1))
    if [ "$rc" = 0 ]; then pass; else
      rfail "virsh start $n failed ($rc): $(tr '\n' ' ' < "$T/start.$i")"
      hook_said "$n" "$logpos" >&2
      continue
    fi
    id=$(identity "$e")
    case $id in missing*) rfail "$n: ephemeral overlay $e missing while running"; continue;; esac
    [ "$id" != "$(cat "$T/eph.$i" 2>/dev/null)" ] && pass || rfail "$n: ephemeral overlay not fresh (identity $id as in the round before)"
    echo "$id" > "$T/eph.$i"
    # A token is random: seen twice, one file went to two boots (or two
    # domains of one round).
    tok=${id##* }
    if [ "$tok" != no-token ]; then
      grep -qxF "$tok" "$T/tokens" && rfail "$n: ephemeral overlay token $tok handed out before" || pass
      echo "$tok" >> "$T/tokens"
    fi
    d=$(own_data "$e")
    [ -z "$d" ] && pass || rfail "$n: fresh ephemeral overlay holds data: $d"
    if grep -qx "${id%% *}" "$T/pooled"; then from_pool=$((from_pool + 1)); else made_at_start=$((made_at_start + 1)); fi
    if [ -s "$T/pers.$i" ]; then
      [ "$(identity "$(pers_of "$i")")" = "$(cat "$T/pers.$i")" ] && pass ||
        rfail "$n: persistent overlay replaced: $(identity "$(pers_of "$i")"), was $(cat "$T/pers.$i")"
    fi
  done
  for i in $DOMS; do
    ( $VIRSH destroy "$(name_of "$i")" > "$T/destroy.$i" 2>&1 || true ) &
  done
  wait
  for i in $DOMS; do
    n=$(name_of "$i") e=$(eph_of "$i")
    st=$($VIRSH domstate "$n" 2>/dev/null | head -n 1)
    [ "$st" = "shut off" ] && pass || rfail "$n is '$st' after destroy: $(tr '\n' ' ' < "$T/destroy.$i")"
    if [ ! -e "$e" ]; then pass; else
      rfail "$n: ephemeral overlay $e left after the stop ($(identity "$e"))"
      hook_said "$n" "$logpos" >&2
    fi
  done
  return 0
}

# Round 0 makes the persistent overlays; then, domains stopped, each gets
# a pattern that must survive every round.
round=0
run_round
for i in $DOMS; do
  p=$(pers_of "$i")
  qemu-io -c 'write -P 0xab 0 64k' "$p" > "$T/io" 2>&1 || rfail "qemu-io write $p: $(cat "$T/io")"
  identity "$p" > "$T/pers.$i"
  case $(cat "$T/pers.$i") in missing*) rfail "persistent overlay $p missing after round 0";; esac
done
[ "$round_failed" = 0 ] || { echo "round 0 failed: no soak" >&2; finish; }
from_pool=0 made_at_start=0 starts=0
: > "$T/times"; : > "$T/hook.times"

qsd=$(qsd_pid)
failed_rounds=0
t_begin=$(ms_now)
round=1
while [ "$round" -le "$ROUNDS" ]; do
  run_round
  if [ "$round" = 1 ]; then
    wait_refillers || rfail "refillers did not finish"
    fds_first=$(qsd_fds "$qsd")
  fi
  if [ "$round_failed" = 1 ]; then
    failed_rounds=$((failed_rounds + 1))
    [ "$failed_rounds" -lt "$MAXFAIL" ] || { echo "stopping after $failed_rounds failed rounds" >&2; break; }
  fi
  [ $((round % 20)) != 0 ] || echo "round $round/$ROUNDS: $failures failures so far"
  round=$((round + 1))
done
t_end=$(ms_now)
rounds_run=$((round > ROUNDS ? ROUNDS : round))

# ---- afterwards: nothing left behind ----
round=end
wait_refillers || fail "refillers did not finish"
for i in $DOMS; do
  p=$(pers_of "$i")
  [ "$(identity "$p")" = "$(cat "$T/pers.$i")" ] && pass || fail "$p replaced: $(identity "$p"), was $(cat "$T/pers.$i")"
  if qemu-io -c 'read -P 0xab 0 64k' "$p" > "$T/io" 2>&1 && ! grep -q 'verification failed' "$T/io"; then
    pass
  else
    fail "persistent overlay $p lost its data: $(tr '\n' ' ' < "$T/io")"
  fi
done
tmps=$(find "$img" -name '.virt-overlay-*.tmp' 2>/dev/null)
[ -z "$tmps" ] && pass || fail "temporary files left: $tmps"
for l in "$T"/state/domains/*; do
  [ -f "$l" ] || continue
  [ -n "$(ephemeral_entries "$l")" ] && fail "ledger entries left in $l: $(cat "$l")" || pass
done
[ "$(qsd_pid)" = "$qsd" ] && pass || fail "qsd restarted during the soak (pid $qsd, now $(qsd_pid))"
jobs=$("$QMP" "$SOCK" query-jobs 2>&1) || true
[ "$jobs" = "[]" ] && pass || fail "qsd jobs left: $jobs"
nodes=$("$QMP" "$SOCK" query-named-block-nodes 2>&1) || true
[ "$nodes" = "[]" ] && pass || fail "qsd block nodes left: $nodes"
fds_last=$(qsd_fds "$qsd")
[ "$fds_last" -le "${fds_first:-0}" ] && pass || fail "qsd holds $fds_last descriptors, $fds_first after round 1"
hook_lines=$(wc -l < "$T/hook.log")

# ---- figures ----
awk -v rounds="$rounds_run" -v total="$((t_end - t_begin))" -v fd1="${fds_first:-?}" \
    -v fd2="$fds_last" -v pool="$from_pool" -v made="$made_at_start" -v hl="$hook_lines" '
  { n++; s += $1; if ($1 > max) max = $1 }
  END {
    printf "soak: %d rounds of 4 domains, %.1f s in all\n", rounds, total / 1000
    printf "soak: virsh start per domain: mean %.0f ms, max %d ms (%d starts)\n", n ? s / n : 0, max, n
    printf "soak: qsd descriptors after round 1: %s, at the end: %s\n", fd1, fd2
    printf "soak: ephemeral overlays from the pool: %d, made at start (qsd, or pooled after the round began): %d\n", pool, made
    printf "soak: hook invocations that failed or printed: %d\n", hl
  }' "$T/times"
# The hook's own time (as the wrapper saw it), rounds 1 on.
awk '$1 == "prepare" || $1 == "release" {
    k = $1 " " $2; n[k]++; s[k] += $3; if ($3 > m[k]) m[k] = $3 }
  END { for (k in n) printf "soak: hook %s: mean %.0f ms, max %d ms (%d calls)\n", k, s[k] / n[k], m[k], n[k] }' \
  "$T/hook.times" | sort
[ -s "$T/hook.log" ] && sed 's/^/soak: hook: /' "$T/hook.log" | head -n 20
finish
