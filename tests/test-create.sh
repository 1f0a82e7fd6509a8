#!/bin/sh
# virt-overlay create against the real qemu-storage-daemon: results equal
# to qemu-img create's, every refusal, faults, concurrency, leftovers.
. "${srcdir:-.}/tests/functions.sh"
requires "$QSD"
requires "$QEMU_IMG"

write_conf "$T/conf"
export VIRT_OVERLAY_CONFIG=$T/conf
at_exit "stop_pidfile $T/run/qsd.sock.pid"
make_bases

# ---- what the programs link: never libvirt (a hook calling back into
# libvirtd deadlocks it, and merely loading it costs ~13 ms a start);
# virt-overlay create does not parse XML, so not libxml2 either ----
if command -v ldd >/dev/null; then
  ldd "$builddir/cli/virt-overlay" > "$T/ldd.cli"
  ldd "$builddir/hook/virt-overlay-hook" > "$T/ldd.hook"
  grep -q libvirt "$T/ldd.cli" "$T/ldd.hook" && fail "a program links libvirt" || pass
  grep -q libxml2 "$T/ldd.cli" && fail "virt-overlay links libxml2" || pass
  grep -q libyajl "$T/ldd.cli" && pass || fail "virt-overlay does not link yajl?"
fi

# ---- results equal qemu-img create's ----
same_as_qemu_img () { # FMT BASE OVERLAY [qemu-img -o OPTS] [SIZE]
  ref=$T/ref.qcow2; rm -f "$ref"
  "$QEMU_IMG" create -q -f qcow2 -F "$1" -b "$2" ${4:+-o "$4"} "$ref" ${5:+"$5"}
  if info_of "$ref" | diff - "$(info_of "$3" > "$T/got"; echo "$T/got")" >/dev/null; then pass
  else fail "$3 differs from qemu-img create:"; info_of "$ref" | diff - "$T/got" >&2 || true; fi
  if "$QEMU_IMG" check -q "$3"; then pass; else fail "qemu-img check $3"; fi
}

$VO create "$img/base.qcow2" "$img/one.qcow2" && pass || fail "create one"
same_as_qemu_img qcow2 "$img/base.qcow2" "$img/one.qcow2"
[ "$(stat -c %a "$img/one.qcow2")" = 600 ] && pass || fail "overlay mode is not 0600"

set --
for i in $(seq 1 16); do set -- "$@" "$img/many$i.qcow2"; done
$VO create "$img/base.qcow2" "$@" && pass || fail "create 16"
for f in "$@"; do same_as_qemu_img qcow2 "$img/base.qcow2" "$f"; done

$VO create --backing-format raw "$img/base.raw" "$img/onraw.qcow2" && pass || fail "create on raw"
same_as_qemu_img raw "$img/base.raw" "$img/onraw.qcow2"

$VO create --cluster-size 131072 --lazy-refcounts on --extended-l2 on --size 134217728 \
  "$img/base.qcow2" "$img/opts.qcow2" && pass || fail "create with options"
same_as_qemu_img qcow2 "$img/base.qcow2" "$img/opts.qcow2" \
  cluster_size=131072,lazy_refcounts=on,extended_l2=on 134217728

$VO create --cluster-size 4096 --lazy-refcounts off --extended-l2 off \
  "$img/base.qcow2" "$img/opts2.qcow2" && pass || fail "create with small clusters"
same_as_qemu_img qcow2 "$img/base.qcow2" "$img/opts2.qcow2" \
  cluster_size=4096,lazy_refcounts=off,extended_l2=off

ls -a "$img" | grep -q '^\.virt-overlay-' && fail "temporary files left" || pass

# ---- refusals: message, exit code, nothing appears, nothing changes ----
echo "precious" > "$img/exists.qcow2"
ln -s "$img/exists.qcow2" "$img/link.qcow2"
ln -s "$img/nowhere" "$img/dangling.qcow2"
mkdir -m 0711 "$img/real"; ln -s "$img/real" "$img/linkdir"
cp "$img/base.qcow2" "$img/real/base.qcow2"
mkdir -m 0711 "$img/adir"
mkfifo "$img/fifo"
mknod "$img/device" c 1 3
cp "$img/base.qcow2" "$img/qcow2-as-raw"
printf 'QFI\373\0\0\0\3' > "$img/truncated.qcow2"
head -c 1048576 /dev/zero > "$img/badmagic.qcow2"
mkdir -m 0777 "$img/open"; chmod 0777 "$img/open"
mkdir -p -m 0711 "$T/elsewhere"

refuse () { # MESSAGE ARGS...
  msg=$1; shift
  before=$(snapshot "$img")
  set +e
  timeout 20 $VO create "$@" > "$T/out" 2> "$T/err"
  rc=$?
  set -e
  if [ "$rc" = 1 ]; then pass; else fail "exit $rc, not 1, for: $*"; fi
  if grep -q -F -- "$msg" "$T/err"; then pass; else fail "want '$msg' for: $*; got: $(cat "$T/err")"; fi
  [ "$(wc -l < "$T/err")" -ge 1 ] && pass || fail "no error line for: $*"
  if [ "$(snapshot "$img")" = "$before" ]; then pass; else fail "files changed for: $*"; fi
}
B=$img/base.qcow2
refuse "overlay '$img/exists.qcow2' already exists" "$B" "$img/exists.qcow2"
refuse "already exists (a symbolic link)" "$B" "$img/link.qcow2"
refuse "already exists (a symbolic link)" "$B" "$img/dangling.qcow2"
refuse "'$img/linkdir' is a symbolic link" "$B" "$img/linkdir/new.qcow2"
refuse "'$img/linkdir' is a symbolic link" "$img/linkdir/base.qcow2" "$img/new.qcow2"
refuse "is not absolute" "$B" "img/new.qcow2"
refuse "is not absolute" "img/base.qcow2" "$img/new.qcow2"
refuse "is not normalised" "$B" "$img/real/../new.qcow2"
refuse "is not normalised" "$img/real/../base.qcow2" "$img/new.qcow2"
refuse "is outside the allowed directories" "$B" "$T/elsewhere/new.qcow2"
refuse "is outside the allowed directories" "$T/elsewhere/base.qcow2" "$img/new.qcow2"
refuse "base '$img/missing.qcow2': No such file or directory" "$img/missing.qcow2" "$img/new.qcow2"
refuse "base '$img/adir' is not a regular file" "$img/adir" "$img/new.qcow2"
refuse "base '$img/fifo' is not a regular file" "$img/fifo" "$img/new.qcow2"
refuse "base '$img/device' is not a regular file" "$img/device" "$img/new.qcow2"
refuse "declared raw but carries a qcow2/qcow header" --backing-format raw "$img/qcow2-as-raw" "$img/new.qcow2"
refuse "not a qcow2 image (bad magic)" "$img/badmagic.qcow2" "$img/new.qcow2"
refuse "truncated qcow2 header" "$img/truncated.qcow2" "$img/new.qcow2"
refuse "is the same file as its base" "$B" "$B"
refuse "size 1048576 is smaller than the base's 67108864 bytes" --size 1048576 "$B" "$img/new.qcow2"
refuse "writable by group or others" "$B" "$img/open/new.qcow2"
refuse "is requested twice" "$B" "$img/new.qcow2" "$img/new.qcow2"
set --; for i in $(seq 1 257); do set -- "$@" "$img/big$i.qcow2"; done
refuse "at most 256 overlays in one batch, not 257" "$B" "$@"
# One bad overlay in a batch: none of the batch is made.
refuse "overlay '$img/exists.qcow2' already exists" "$B" "$img/new1.qcow2" "$img/exists.qcow2" "$img/new2.qcow2"
[ "$(cat "$img/exists.qcow2")" = precious ] && pass || fail "existing file changed"

# ---- the base's own backing chain, read from the images' headers ----
c=$img/chain
mkdir -m 0711 "$c"
qimg () { "$QEMU_IMG" "$@" || fail "qemu-img $*"; }
# A qcow2 image NAME whose header says backing BACKING of format FMT,
# written without opening the backing file.
backed () { # NAME BACKING FMT
  qimg create -q -f qcow2 "$c/$1" 16M
  qimg rebase -q -u -b "$2" -F "$3" "$c/$1"
}
truncate -s 16M "$c/base.raw"
backed shadow.qcow2 /etc/shadow raw
backed vvfat.qcow2 'json:{"driver":"vvfat","dir":"/etc"}' raw
backed jsonfile.qcow2 'json:{"driver":"file","filename":"/etc/shadow"}' raw
backed nbd.qcow2 nbd://127.0.0.1/x raw
backed nbdold.qcow2 nbd:127.0.0.1:10809 raw
backed fat.qcow2 fat:rw:/etc raw
backed up.qcow2 ../../elsewhere/x.raw raw
backed outside.qcow2 "$T/elsewhere/x.raw" raw
ln -s base.raw "$c/rawlink"
backed symlink.qcow2 "$c/rawlink" raw
backed symdir.qcow2 "$img/linkdir/base.qcow2" qcow2
backed trunc.qcow2 "$img/truncated.qcow2" qcow2
backed foreign.qcow2 "$img/qcow2-as-raw" raw
backed vmdk.qcow2 "$c/base.raw" vmdk
backed esc.qcow2 "$(printf '%s/x\033[2Jy' "$c")" raw
qimg create -q -f qcow2 -o data_file="$c/data.raw" "$c/datafile.qcow2" 16M
backed ondatafile.qcow2 "$c/datafile.qcow2" qcow2
# No backing format: qemu-img insists on one, so rename the extension
# (type 0xe2792aca) to a type nobody knows.
backed nofmt.qcow2 "$c/base.raw" raw
off=$(LC_ALL=C grep -obUaP '\xe2\x79\x2a\xca' "$c/nofmt.qcow2" | head -n 1 | cut -d: -f1)
printf '\022\064\126\170' | dd of="$c/nofmt.qcow2" bs=1 seek="$off" conv=notrunc 2>/dev/null
"$QEMU_IMG" info --output=json "$c/nofmt.qcow2" > "$T/info"
grep -q '"backing-filename-format"' "$T/info" && fail "nofmt.qcow2 still has a backing format" || pass
# The same deeper in the chain: base -> nofmt.qcow2 -> (no format).
backed deepnofmt.qcow2 "$c/nofmt.qcow2" qcow2
# Loops: a -> b -> a, and a file naming itself.
backed loop-a.qcow2 "$c/loop-b.qcow2" qcow2
backed loop-b.qcow2 "$c/loop-a.qcow2" qcow2
backed self.qcow2 "$c/self.qcow2" qcow2
# 17 images: d0.raw <- d1.qcow2 <- ... <- d16.qcow2
truncate -s 16M "$c/d0.raw"
qimg create -q -f qcow2 -b "$c/d0.raw" -F raw "$c/d1.qcow2"
for i in $(seq 2 16); do
  qimg create -q -f qcow2 -b "$c/d$((i - 1)).qcow2" -F qcow2 "$c/d$i.qcow2"
done
# A good chain: qcow2 -> qcow2 -> raw, the middle one named relatively.
truncate -s 16M "$c/g.raw"
qimg create -q -f qcow2 -b g.raw -F raw "$c/g-mid.qcow2"
qimg create -q -f qcow2 -b "$c/g-mid.qcow2" -F qcow2 "$c/g-top.qcow2"

refuse "base '$c/shadow.qcow2': backing file path '/etc/shadow' is outside the allowed directories" \
  "$c/shadow.qcow2" "$img/new.qcow2"
refuse "base '$c/vvfat.qcow2': backing file 'json:{\"driver\":\"vvfat\",\"dir\":\"/etc\"}' is not a plain path" \
  "$c/vvfat.qcow2" "$img/new.qcow2"
refuse "backing file 'json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}' is not a plain path" \
  "$c/jsonfile.qcow2" "$img/new.qcow2"
refuse "base '$c/nbd.qcow2': backing file 'nbd://127.0.0.1/x' is not a plain path" "$c/nbd.qcow2" "$img/new.qcow2"
refuse "backing file 'nbd:127.0.0.1:10809' is not a plain path" "$c/nbdold.qcow2" "$img/new.qcow2"
refuse "backing file 'fat:rw:/etc' is not a plain path" "$c/fat.qcow2" "$img/new.qcow2"
refuse "backing file path '$c/../../elsewhere/x.raw' is not normalised" "$c/up.qcow2" "$img/new.qcow2"
refuse "backing file path '$T/elsewhere/x.raw' is outside the allowed directories" \
  "$c/outside.qcow2" "$img/new.qcow2"
refuse "base '$c/symlink.qcow2': backing file '$c/rawlink' is a symbolic link" "$c/symlink.qcow2" "$img/new.qcow2"
refuse "backing file path '$img/linkdir/base.qcow2': '$img/linkdir' is a symbolic link" \
  "$c/symdir.qcow2" "$img/new.qcow2"
refuse "backing file '$img/truncated.qcow2': truncated qcow2 header" "$c/trunc.qcow2" "$img/new.qcow2"
refuse "backing file '$img/qcow2-as-raw': declared raw but carries a qcow2/qcow header" \
  "$c/foreign.qcow2" "$img/new.qcow2"
refuse "unsupported backing format 'vmdk' in the header (qcow2 or raw)" "$c/vmdk.qcow2" "$img/new.qcow2"
refuse "backing file '$c/x\\x1b[2Jy' has control characters in its name" "$c/esc.qcow2" "$img/new.qcow2"
grep -q "$(printf '\033')" "$T/err" && fail "a control character from a header reached the message" || pass
refuse "backing file '$c/datafile.qcow2': qcow2 base has an external data file" \
  "$c/ondatafile.qcow2" "$img/new.qcow2"
refuse "base '$c/nofmt.qcow2': backing file '$c/base.raw' has no backing format in the header of '$c/nofmt.qcow2'" \
  "$c/nofmt.qcow2" "$img/new.qcow2"
refuse "base '$c/deepnofmt.qcow2': backing file '$c/base.raw' has no backing format in the header of '$c/nofmt.qcow2'" \
  "$c/deepnofmt.qcow2" "$img/new.qcow2"
refuse "base '$c/loop-a.qcow2': backing chain loops at '$c/loop-a.qcow2'" "$c/loop-a.qcow2" "$img/new.qcow2"
refuse "base '$c/self.qcow2': backing chain loops at '$c/self.qcow2'" "$c/self.qcow2" "$img/new.qcow2"
refuse "base '$c/d16.qcow2': backing chain deeper than 16" "$c/d16.qcow2" "$img/new.qcow2"
# One bad base in a batch of a good one: nothing is made.
refuse "backing file path '/etc/shadow' is outside" "$c/shadow.qcow2" "$img/new1.qcow2" "$img/new2.qcow2"

# 16 images are fine, and so is the good chain (relative names resolved
# against the naming image's directory, as QEMU does).
$VO create "$c/d15.qcow2" "$img/d15-top.qcow2" && pass || fail "create on a 16-image chain"
same_as_qemu_img qcow2 "$c/d15.qcow2" "$img/d15-top.qcow2"
$VO create "$c/g-top.qcow2" "$img/g-ovl.qcow2" && pass || fail "create on qcow2 -> qcow2 -> raw"
same_as_qemu_img qcow2 "$c/g-top.qcow2" "$img/g-ovl.qcow2"
"$QEMU_IMG" info --backing-chain "$img/g-ovl.qcow2" | grep -c '^image:' | grep -qx 4 \
  && pass || fail "the good chain is not 4 images long"

# Bad options are usage errors (exit 2).
for args in "--cluster-size 1000" "--lazy-refcounts maybe" "--backing-format vmdk" "--size -5"; do
  set +e; $VO create $args "$B" "$img/new.qcow2" 2> "$T/err"; rc=$?; set -e
  [ "$rc" = 2 ] && pass || fail "exit $rc for bad option $args"
  [ -e "$img/new.qcow2" ] && fail "file made with $args" || pass
done

# ---- a bad configuration: the error names the file, the line and the key ----
while IFS='|' read -r line want; do
  printf '# a comment\n\n%s\n' "$line" > "$T/bad.conf"
  set +e
  VIRT_OVERLAY_CONFIG=$T/bad.conf $VO create "$B" "$img/cfg.qcow2" 2> "$T/err"; rc=$?
  set -e
  [ "$rc" = 1 ] && pass || fail "config '$line': exit $rc"
  grep -q -F -- "$T/bad.conf:3: $want" "$T/err" && pass || fail "config '$line': $(cat "$T/err")"
  [ -e "$img/cfg.qcow2" ] && fail "config '$line': a file was made" || pass
done <<'EOT'
colour = blue|colour: unknown key 'colour'
no equals sign|expected 'key = value'
qsd_daemons = 0|qsd_daemons: 0 is not between 1 and 8
timeout_ms = 0|timeout_ms: 0 is not between 1 and 3600000
pool_size = 65|pool_size: 65 is not between 0 and 64
qsd_spawn = maybe|qsd_spawn: 'maybe' is not on/off
cluster_size = 1000|cluster_size: cluster size 1000 is not a power of two
overlay_dirs = relative/dir|overlay_dirs: 'relative/dir' is not an absolute path
base_dirs = /a/../b|base_dirs: '/a/../b' is not a normalised absolute path
state_dir = /var/lib/x/|state_dir: '/var/lib/x/' is not a normalised absolute path
EOT
set +e
VIRT_OVERLAY_CONFIG=$T/missing.conf $VO create "$B" "$img/cfg.qcow2" 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "$T/missing.conf: No such file" "$T/err" && pass || fail "missing config: $(cat "$T/err")"

# ---- faults, with the fake daemon ----
fake=$builddir/tests/fake-qsd
fakeconf () { # SOCKET SPAWN BINARY (later lines win)
  write_conf "$T/fconf" "qsd_socket = $1" "qsd_spawn = $2" "qsd_binary = $3" "timeout_ms = 1500"
}
start_fake () { # FAULT
  rm -f "$T/fake.sock"
  FAKE_QSD_FAULT=$1 "$fake" --chardev "socket,id=m,path=$T/fake.sock" --monitor chardev=m \
    --pidfile "$T/fake.pid" --daemonize
}
fault_case () { # FAULT MESSAGE
  start_fake "$1"
  fakeconf "$T/fake.sock" no /nonexistent
  before=$(snapshot "$img")
  set +e
  VIRT_OVERLAY_CONFIG=$T/fconf timeout 20 $VO create "$B" "$img/f1.qcow2" "$img/f2.qcow2" "$img/f3.qcow2" 2> "$T/err"
  rc=$?; set -e
  [ "$rc" = 1 ] && pass || fail "$1: exit $rc"
  grep -q -F -- "$2" "$T/err" && pass || fail "$1: want '$2', got: $(cat "$T/err")"
  [ "$(snapshot "$img")" = "$before" ] && pass || fail "$1: files left behind: $(ls -a "$img")"
  stop_pidfile "$T/fake.pid"
}
fault_case error-create:2 "overlay '$img/f2.qcow2': qemu-storage-daemon: Could not write qcow2 header"
grep -c . "$T/err" | grep -qx 1 && pass || fail "error-create: only the failing overlay is reported"
t0=$(date +%s%N)
fault_case stall-create:1 "timed out"
t1=$(date +%s%N)
[ $(( (t1 - t0) / 1000000 )) -ge 1400 ] && pass || fail "stall: gave up before timeout_ms"
fault_case kill-create:2 "closed the connection"

# The fake answers only what the engine sends, as the engine sends it:
# anything else ends it, so that a test built on it cannot pass on a
# command the real daemon was never shown.
for cmd in 'blockdev-add {"node-name":"n","driver":"file","filename":"/x"}' \
           'query-jobs {"extra":1}' \
           'job-dismiss {}'; do
  start_fake none:0
  set +e
  # shellcheck disable=SC2086
  "$builddir/tests/qmp-cmd" "$T/fake.sock" ${cmd%% *} "${cmd#* }" > /dev/null 2>&1; rc=$?
  set -e
  [ "$rc" != 0 ] && pass || fail "fake-qsd answered: $cmd"
  i=0; while kill -0 "$(cat "$T/fake.pid")" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  kill -0 "$(cat "$T/fake.pid")" 2>/dev/null && fail "fake-qsd still runs after: $cmd" || pass
done

# The next call on that socket finds the dead daemon's socket, starts a
# real qsd there and succeeds.
fakeconf "$T/fake.sock" yes "$(command -v "$QSD")"
cp "$T/fconf" "$T/fconf.real"
at_exit "stop_pidfile $T/fake.sock.pid"
VIRT_OVERLAY_CONFIG=$T/fconf.real $VO create "$B" "$img/after-kill.qcow2" && pass || fail "create after qsd died"
same_as_qemu_img qcow2 "$B" "$img/after-kill.qcow2"

# No daemon and qsd_spawn off: a clear error.
fakeconf "$T/none.sock" no /nonexistent
set +e; VIRT_OVERLAY_CONFIG=$T/fconf $VO create "$B" "$img/x.qcow2" 2> "$T/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "not running and qsd_spawn is off" "$T/err" && pass || fail "no daemon: $(cat "$T/err")"
[ -e "$img/x.qcow2" ] && fail "file made without daemon" || pass

# ---- leftovers of a dead caller are removed by the next one ----
# A caller killed between blockdev-create and job-dismiss leaves its
# temporary file and a concluded job.
sock=$T/run/qsd.sock
deadpid=$(sh -c 'echo $$')
: > "$img/.virt-overlay-$deadpid-7.tmp"
"$builddir/tests/qmp-cmd" "$sock" blockdev-create \
  "{\"job-id\":\"ovl-$deadpid-7\",\"options\":{\"driver\":\"qcow2\",\"size\":1048576,\"file\":{\"driver\":\"file\",\"filename\":\"$img/.virt-overlay-$deadpid-7.tmp\"}}}" >/dev/null
"$builddir/tests/qmp-cmd" "$sock" query-jobs | grep -q "ovl-$deadpid-7" && pass || fail "no leftover job to clean"
$VO create "$B" "$img/cleaner.qcow2" && pass || fail "create after a dead caller"
[ -e "$img/.virt-overlay-$deadpid-7.tmp" ] && fail "dead caller's temp file left" || pass
"$builddir/tests/qmp-cmd" "$sock" query-jobs | grep -q "ovl-$deadpid" \
  && fail "dead caller's job left" || pass

# ---- hostile owners of a directory on the overlay's path ----
# Whoever owns a directory can swap what is in it: refused, whatever the mode.
mkdir -m 0755 "$img/users"; chown nobody "$img/users"
refuse "directory '$img/users' is owned by uid $(id -u nobody), not root" "$B" "$img/users/new.qcow2"
mkdir -m 0755 "$img/users/deeper"
refuse "directory '$img/users' is owned by uid $(id -u nobody), not root" "$B" "$img/users/deeper/new.qcow2"
# Even a swap of the temporary file (here by root, whom no check can stop)
# never makes qsd write through it: qsd opens the inode we hold, and a
# swapped file is never published.
mkdir -m 0700 "$T/secret"; echo "root only" > "$T/secret/victim"
vsum=$(sha256sum "$T/secret/victim")
mkdir -m 0711 "$img/race"
"$builddir/tests/ovl-racer" "$img/race" "$T/secret/victim" > "$T/racer.out" &
racer=$!
for _ in $(seq 1 100); do [ -s "$T/racer.out" ] && break; sleep 0.05; done
set +e; $VO create "$B" "$img/race/r.qcow2" 2> "$T/err"; rc=$?; set -e
wait "$racer" || true
grep -q '^swapped' "$T/racer.out" && pass || fail "the racer did not swap: $(cat "$T/racer.out")"
[ "$(sha256sum "$T/secret/victim")" = "$vsum" ] && pass || fail "qsd wrote through the swapped name"
# A swap before the temporary file is locked is seen at once: the file
# is made again under another name, and the overlay is ours.  A swap
# after it fails the batch, and nothing is published.
if [ "$rc" = 0 ]; then
  [ -f "$img/race/r.qcow2" ] && [ ! -L "$img/race/r.qcow2" ] &&
    "$QEMU_IMG" info -U "$img/race/r.qcow2" | grep -q "^backing file: $B" \
    && pass || fail "a swapped temporary file was published"
else
  [ "$rc" = 1 ] && pass || fail "create through a swapped temporary file: exit $rc"
  grep -q "overlay '$img/race/r.qcow2': its temporary file was replaced while it was being made" "$T/err" \
    && pass || fail "swap message: $(cat "$T/err")"
  [ -e "$img/race/r.qcow2" ] || [ -L "$img/race/r.qcow2" ] && fail "something was published" || pass
fi
rm -rf "$img/race"

# ---- small ones: paths that are not UTF-8; qsd that does not start ----
refuse "overlay path '$img/bad\\xff.qcow2' is not valid UTF-8" "$B" "$img/bad$(printf '\377').qcow2"
refuse "base path '$img/b\\xc3(.qcow2' is not valid UTF-8" "$img/b$(printf '\303(').qcow2" "$img/new.qcow2"
refuse "overlay path contains control characters" "$B" "$img/new$(printf '\033').qcow2"
refuse "base path contains control characters" "$img/b
.qcow2" "$img/new.qcow2"
# name | what qsd_binary does (recording in $0.pids what it leaves) | message
while IFS='|' read -r name body want; do
  if [ "$body" = "-" ]; then
    echo "not a program" > "$T/qsd-$name"; chmod 0644 "$T/qsd-$name"
  else
    printf '#!/bin/sh\n%s\n' "$body" > "$T/qsd-$name"; chmod 0755 "$T/qsd-$name"
  fi
  qsock=$T/run-$name/qsd.sock
  want=$(printf '%s' "$want" | sed "s|@SOCK@|$qsock|g; s|@QSD@|$T/qsd-$name|g")
  write_conf "$T/qconf" "qsd_socket = $qsock" "qsd_binary = $T/qsd-$name" "timeout_ms = 1500"
  t0=$(date +%s%N)
  set +e; VIRT_OVERLAY_CONFIG=$T/qconf FAKE=$fake timeout 20 $VO create "$B" "$img/q.qcow2" 2> "$T/err"; rc=$?; set -e
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$rc" = 1 ] && grep -q -F "$want" "$T/err" && pass || fail "qsd $name: exit $rc: $(cat "$T/err")"
  if [ "${OVL_VALGRIND:-0}" != 1 ]; then
    [ "$ms" -lt 2500 ] && pass || fail "qsd $name: took $ms ms with timeout_ms 1500"
  fi
  [ -e "$img/q.qcow2" ] && fail "file made without a daemon" || pass
  stop_pidfile "$qsock.pid"
  expect_pids_gone "$T/qsd-$name.pids" "qsd $name"
done <<'EOF'
exit3|exit 3|@QSD@ did not start: it exited with status 3
killed|kill -9 $$|@QSD@ did not start: it was killed by signal 9
not-run|-|@QSD@ did not start: it could not be run: Permission denied
never-ready|echo $$ >> "$0.pids"; sleep 1000 & echo $! >> "$0.pids"; wait|@QSD@ did not get ready on @SOCK@ within timeout_ms (1500 ms): killed it
never-listens|sleep 1000 & echo $! >> "$0.pids"; exit 0|@QSD@ did not start: it exited but nothing listens on @SOCK@
no-greeting|FAKE_QSD_FAULT=no-greeting:1 exec "$FAKE" "$@"|QMP: @SOCK@: qemu-storage-daemon did not answer: timed out waiting for its greeting
EOF

# ---- 8 concurrent callers all succeed ----
pids=""
for i in 1 2 3 4 5 6 7 8; do
  $VO create "$B" "$img/conc$i-a.qcow2" "$img/conc$i-b.qcow2" 2> "$T/conc$i.err" & pids="$pids $!"
done
ok=0
for p in $pids; do wait "$p" && ok=$((ok + 1)); done
[ "$ok" = 8 ] && pass || fail "only $ok of 8 concurrent callers succeeded: $(cat "$T"/conc*.err)"
for i in 1 2 3 4 5 6 7 8; do "$QEMU_IMG" check -q "$img/conc$i-a.qcow2" || fail "conc$i"; done

# ---- two daemons: a batch is spread over both, and a dead one is
# started again ----
write_conf "$T/conf2" "qsd_socket = $T/run2/qsd.sock" "qsd_daemons = 2"
set --; for i in $(seq 1 16); do set -- "$@" "$img/two$i.qcow2"; done
VIRT_OVERLAY_CONFIG=$T/conf2 $VO create "$B" "$@" && pass || fail "create over two daemons"
at_exit "stop_pidfile $T/run2/qsd.sock.pid; stop_pidfile $T/run2/qsd.sock.1.pid"
[ -S "$T/run2/qsd.sock" ] && [ -S "$T/run2/qsd.sock.1" ] && pass || fail "both daemons not started"
for f in "$@"; do same_as_qemu_img qcow2 "$B" "$f"; done
for sk in "$T/run2/qsd.sock" "$T/run2/qsd.sock.1"; do
  [ "$("$builddir/tests/qmp-cmd" "$sk" query-jobs)" = "[]" ] && pass || fail "jobs left in $sk"
done
kill -9 "$(cat "$T/run2/qsd.sock.1.pid")"
VIRT_OVERLAY_CONFIG=$T/conf2 $VO create "$B" "$img/two-a.qcow2" "$img/two-b.qcow2" \
  && pass || fail "create after daemon 1 died"
"$builddir/tests/qmp-cmd" "$T/run2/qsd.sock.1" query-jobs > /dev/null && pass || fail "daemon 1 not restarted"
rm -f "$img"/two*.qcow2

# ---- after 1000 creations qsd holds nothing of ours ----
if [ "${OVL_VALGRIND:-0}" != 1 ]; then
  mkdir -m 0711 "$img/k"
  for b in $(seq 1 100); do
    set --; for i in $(seq 1 10); do set -- "$@" "$img/k/$b-$i.qcow2"; done
    $VO create "$B" "$@" || { fail "batch $b of 100"; break; }
  done
  [ "$(ls "$img/k" | wc -l)" = 1000 ] && pass || fail "1000 overlays not all there"
  "$builddir/tests/qmp-cmd" "$sock" query-named-block-nodes '{"flat":true}' > "$T/nodes"
  "$builddir/tests/qmp-cmd" "$sock" query-jobs > "$T/jobs"
  grep -q '"ovl-' "$T/nodes" && fail "nodes left: $(cat "$T/nodes")" || pass
  [ "$(cat "$T/jobs")" = "[]" ] && pass || fail "jobs left: $(cat "$T/jobs")"
fi
finish
