#!/bin/sh
# Make sure virtlogd and libvirtd run, and that libvirtd has registered
# the QEMU hooks now in qemu.d/: libvirt looks for hooks only when it
# starts, and registers qemu.d/ only if it then holds an executable.  We
# remember the pid of a libvirtd that started with one there, so repeated
# calls restart it at most once.  For machines without systemd.
#   libvirtd-ensure.sh [HOOKS_DIR]
set -eu
hooks=${1:-/etc/libvirt/hooks}
seen=/run/virt-overlay-libvirtd-hooks.pid

running () { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
have_hook () {
  for f in "$hooks/qemu" "$hooks"/qemu.d/*; do
    [ -f "$f" ] && [ -x "$f" ] && return 0
  done
  return 1
}

mkdir -p "$hooks/qemu.d"
running /run/virtlogd.pid || virtlogd -d
if running /run/libvirtd.pid && have_hook &&
   [ "$(cat "$seen" 2>/dev/null)" != "$(cat /run/libvirtd.pid)" ]; then
  pid=$(cat /run/libvirtd.pid)
  kill "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi
if ! running /run/libvirtd.pid; then
  libvirtd -d
  i=0
  until [ -s /run/libvirtd.pid ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
  if have_hook; then cat /run/libvirtd.pid > "$seen"; fi
fi
i=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "libvirtd does not answer" >&2; exit 1; }
  sleep 0.1
done
