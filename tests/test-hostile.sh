#!/bin/sh
# The hook on filesystems and paths that try to fool it: ext4 without
# birth times (a freed inode number is handed to the very next file), a
# FUSE filesystem without extended attributes, overlay paths it cannot
# stat.  Needs root (loop and FUSE mounts), the real qsd, mkfs.ext4 and
# bindfs.
. "${srcdir:-.}/tests/functions.sh"
requires "$QSD"
requires "$QEMU_IMG"
requires mkfs.ext4
requires bindfs
requires_root

HOOK="$builddir/hook/virt-overlay-hook"
if [ "${OVL_VALGRIND:-0}" = 1 ]; then
  HOOK="valgrind -q --error-exitcode=119 --leak-check=full --errors-for-leak-kinds=definite $HOOK"
fi
mkdir -m 0711 "$T/save"
make_bases
UUID=5a1d7c2e-0b3f-4d6a-8e9f-a1b2c3d4e5f6
at_exit "stop_pidfile $T/run/qsd.sock.pid"

# domain MODE OVERLAY: one disk on $img/base.qcow2
domain () { one_disk_domain hostile "$UUID" "$1" "$2"; }
hook () { # OP SUBOP < xml
  set +e
  $HOOK hostile "$@" - > "$T/stdout" 2> "$T/stderr"
  rc=$?
  set -e
}
expect_rc () { [ "$rc" = "$1" ] && pass || fail "$2: exit $rc, want $1 ($(cat "$T/stderr"))"; }
expect_err () { grep -q -F -- "$1" "$T/stderr" && pass || fail "want '$1' in: $(cat "$T/stderr")"; }

# ---- ext4 with 128-byte inodes: no birth time ----
truncate -s 64M "$T/e128.img"
mkfs.ext4 -q -I 128 "$T/e128.img" >/dev/null 2>&1
mkdir "$T/e128"
mount -o loop "$T/e128.img" "$T/e128"
at_exit "umount -l '$T/e128'"
chmod 0711 "$T/e128"
write_conf "$T/conf" "overlay_dirs = $T/e128"
export VIRT_OVERLAY_CONFIG=$T/conf
ov=$T/e128/e.qcow2
domain ephemeral "$ov" > "$T/e.xml"

hook prepare begin < "$T/e.xml"; expect_rc 0 "prepare on ext4 -I 128"
[ "$(stat -c %W "$ov")" = 0 ] && pass || fail "this filesystem records birth times: the case is not tested"
ino=$(stat -c %i "$ov")
# The user replaces our overlay; ext4 gives the new file the same inode.
rm "$ov"; echo "the user's data" > "$ov"
[ "$(stat -c %i "$ov")" = "$ino" ] && pass || fail "inode not reused: the case is not tested"
hook release end < "$T/e.xml"; expect_rc 0 "release of a replaced overlay"
[ "$(cat "$ov" 2>/dev/null)" = "the user's data" ] && pass || fail "release deleted the user's file"
expect_err "no longer the overlay virt-overlay made"
hook prepare begin < "$T/e.xml"; expect_rc 1 "prepare over the user's file"
expect_err "disk vda: ephemeral overlay '$ov' exists and was not created by virt-overlay"
[ "$(cat "$ov")" = "the user's data" ] && pass || fail "prepare touched the user's file"
# Without a birth time, our own overlay is still recognised (its token).
rm "$ov"
hook prepare begin < "$T/e.xml"; expect_rc 0 "prepare after the user's file went"
hook prepare begin < "$T/e.xml"; expect_rc 0 "a cold boot recreates our own overlay"
hook release end < "$T/e.xml"; expect_rc 0 "release"
[ -e "$ov" ] && fail "our overlay not removed on ext4 -I 128" || pass

# ---- a FUSE filesystem without birth times or extended attributes ----
mkdir -m 0711 "$T/fuse-src" "$T/fuse"
bindfs --xattr-none "$T/fuse-src" "$T/fuse"
at_exit "fusermount3 -u '$T/fuse' 2>/dev/null || umount -l '$T/fuse'"
chmod 0711 "$T/fuse"
write_conf "$T/conf" "overlay_dirs = $T/fuse"
domain ephemeral "$T/fuse/e.qcow2" > "$T/f.xml"
before=$(snapshot "$T/fuse-src")
hook prepare begin < "$T/f.xml"; expect_rc 1 "ephemeral without any identity"
expect_err "records neither birth times nor trusted extended attributes"
expect_err "disk vda:"
[ "$(snapshot "$T/fuse-src")" = "$before" ] && pass || fail "files made on a refused filesystem"

# ---- overlay paths that cannot be looked at are errors, not "exists" ----
write_conf "$T/conf"
echo "a file" > "$img/afile"
domain persistent "$img/afile/x.qcow2" > "$T/n.xml"
hook prepare begin < "$T/n.xml"; expect_rc 1 "overlay below a file"
expect_err "disk vda: overlay path '$img/afile/x.qcow2': '$img/afile': Not a directory"
long=$(printf '%0300d' 0)
domain ephemeral "$img/$long.qcow2" > "$T/l.xml"
hook prepare begin < "$T/l.xml"; expect_rc 1 "overlay name too long"
expect_err "disk vda: overlay path '$img/$long.qcow2' has a component longer than 255 bytes"
# ---- a watchdog bounds what has no deadline of its own: here, a domain
# XML that never ends (stdin held open) ----
write_conf "$T/conf" "timeout_ms = 300"
mkfifo "$T/slow"
for op in "prepare begin:1" "release end:0"; do
  sleep 30 > "$T/slow" & writer=$!
  t0=$(date +%s%N)
  set +e
  timeout 20 $HOOK hostile ${op%:*} - < "$T/slow" > "$T/stdout" 2> "$T/stderr"; rc=$?
  set -e
  t1=$(date +%s%N)
  kill "$writer" 2>/dev/null || true; wait "$writer" 2>/dev/null || true
  expect_rc "${op#*:}" "${op%:*} with stdin held open"
  expect_err "gave up: still running 1000 ms past timeout_ms"
  [ $(( (t1 - t0) / 1000000 )) -lt 10000 ] && pass || fail "${op%:*}: took $(( (t1 - t0) / 1000000 )) ms"
done
finish
