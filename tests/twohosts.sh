# Two libvirt "hosts" on one machine, for the migration tests: each
# libvirtd (and its virtlogd) runs in mount and UTS namespaces of its
# own, with private /etc/libvirt (its own host_uuid and hooks),
# /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
# /var/cache/libvirt, a hostname of its own, and is reached over TCP on
# 127.0.0.1 only.  Each runs this build's hook through a wrapper, with a
# configuration, state directory and qsd of its own.  Source after
# functions.sh.  With OVL_INSTALLED=1 the hook and the program are the
# installed ones (make check-installed), else this build's.
#
# The storage, at the same paths on both hosts:
#   $SHARED   a directory of the local filesystem seen by both (shared)
#   $FUSE     a bindfs mount seen by both (FUSE: no RENAME_NOREPLACE, like NFS)
#   $LOCAL    a directory each host has a private copy of (not shared)
# Bases are made in $SHARED; overlays may go anywhere of the three.
#
#   twohosts_start            set up and start both (stopped at exit)
#   twohosts_stop             stop both now, and check that nothing of
#                             the machine's own libvirt directories changed
#   hv a|b ARGS...            virsh on host a or b
#   migrate DOM FROM TO [ARGS...]   live migration, persistent, source undefined
#                             (MIG_SET=2: another migration port, for a
#                             second migration at the same time)
#   hooklog a|b               the hook's argv lines of that host, one per call

H=$T/hosts
if [ "${OVL_INSTALLED:-0}" = 1 ]; then
  OVL_HOOK=/usr/libexec/virt-overlay-hook
  OVL_CLI=/usr/bin/virt-overlay
  unset VIRT_OVERLAY_REFILL
else
  OVL_HOOK=$(cd "$builddir" && pwd)/hook/virt-overlay-hook
  OVL_CLI=$(cd "$builddir" && pwd)/cli/virt-overlay
fi
SHARED=$T/shared
FUSE=$T/fuse
LOCAL=$T/local

# Free TCP ports on 127.0.0.1, one per argument name (VAR=port), below
# the kernel's range for outgoing connections (which could take one
# before the daemon that is to listen on it binds it).
free_ports () {
  python3 - "$@" <<'EOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
taken = set()
for name in sys.argv[1:]:
    while True:
        p = random.randrange(10000, low)
        if p in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        taken.add(p)
        print("%s=%d" % (name, p))
        break
EOF
}

hv () { # a|b ARGS...
  h=$1; shift
  eval "port=\$PORT_$h"
  virsh -q -c "qemu+tcp://127.0.0.1:$port/system" "$@"
}

hooklog () { cat "$H/$1/hook.calls" 2>/dev/null || true; }

migrate () { # DOM FROM TO [ARGS...]
  d=$1 from=$2 to=$3; shift 3
  eval "port=\$PORT_$to mport=\$MPORT${MIG_SET:-}_$to"
  hv "$from" migrate --live --persistent --undefinesource --unsafe "$@" "$d" \
    "qemu+tcp://127.0.0.1:$port/system" --migrateuri "tcp://127.0.0.1:$mport"
}

# The configuration, hook wrapper and private directories of host $1.
host_setup () {
  h=$1 port=$2
  d=$H/$h
  mkdir -p "$d/etc" "$d/run-libvirt" "$d/lib" "$d/log" "$d/cache" "$d/run" "$d/state" \
    "$d/local"
  chmod 0711 "$d" "$d/local"
  # /etc/libvirt without the system's hooks and domain definitions
  (cd /etc/libvirt && tar -cf - --exclude=./hooks --exclude=./qemu .) | tar -C "$d/etc" -xf -
  mkdir -p "$d/etc/hooks/qemu.d" "$d/etc/qemu"
  cat >> "$d/etc/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
tcp_port = "$port"
listen_addr = "127.0.0.1"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
EOF
  # Both daemons number domains from 1 and would share cgroup
  # directories; QEMU runs as root, and nothing chowns an image that the
  # other host's QEMU may hold.
  cat >> "$d/etc/qemu.conf" <<EOF
cgroup_controllers = [ ]
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
EOF
  # QEMU capability probing takes seconds: start from the system's cache.
  if [ -d /var/cache/libvirt/qemu ]; then
    mkdir -p "$d/cache/qemu" && cp -a /var/cache/libvirt/qemu/capabilities "$d/cache/qemu/" 2>/dev/null || true
  fi
  write_conf "$d/conf"
  sed -i -e "s|^qsd_socket = .*|qsd_socket = $d/run/qsd.sock|" \
    -e "s|^overlay_dirs = .*|overlay_dirs = $SHARED, $FUSE, $LOCAL|" \
    -e "s|^base_dirs = .*|base_dirs = $SHARED|" \
    -e "s|^state_dir = .*|state_dir = $d/state|" \
    -e "s|^managed_save_dir = .*|managed_save_dir = /var/lib/libvirt/qemu/save|" "$d/conf"
  cat > "$d/etc/hooks/qemu.d/virt-overlay" <<EOW
#!/bin/sh
echo "\$*" >> '$d/hook.calls'
${VIRT_OVERLAY_REFILL:+VIRT_OVERLAY_REFILL='$VIRT_OVERLAY_REFILL' }VIRT_OVERLAY_CONFIG='$d/conf' exec '$OVL_HOOK' "\$@"
EOW
  chmod 0755 "$d/etc/hooks/qemu.d/virt-overlay"
}

# Start host $1's daemons in namespaces of their own.
host_start () {
  h=$1 d=$H/$1
  unshare -m -u --propagation private -- sh -c "
    set -e
    hostname ovl-host-$h-$$
    mount --bind '$d/etc' /etc/libvirt
    mount --bind '$d/run-libvirt' /run/libvirt
    mount --bind '$d/lib' /var/lib/libvirt
    mount --bind '$d/log' /var/log/libvirt
    mount --bind '$d/cache' /var/cache/libvirt
    mount --bind '$d/local' '$LOCAL'
    virtlogd -d -p '$d/virtlogd.pid'
    libvirtd -d --listen -p '$d/libvirtd.pid'
  "
}

host_stop () {
  d=$H/$1
  for dom in $(hv "$1" list --all --name 2>/dev/null); do
    hv "$1" destroy "$dom" >/dev/null 2>&1 || true
    hv "$1" undefine --managed-save "$dom" >/dev/null 2>&1 || true
  done
  for p in libvirtd virtlogd; do
    if [ -f "$d/$p.pid" ]; then
      pid=$(cat "$d/$p.pid")
      kill "$pid" 2>/dev/null || true
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  # QEMUs its libvirtd could not stop (it died, say)
  for f in "$d"/run-libvirt/qemu/*.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  stop_pidfile "$d/run/qsd.sock.pid"
}

twohosts_start () {
  requires_root
  requires libvirtd
  requires virtlogd
  requires virsh
  requires unshare
  requires bindfs
  requires python3
  requires "$QSD"
  requires "$QEMU_IMG"
  # The system's capability cache, if libvirtd has run; a cold cache
  # only makes the start slower.
  eval "$(free_ports PORT_a PORT_b MPORT_a MPORT_b MPORT2_a MPORT2_b)"
  system_dirs > "$T/system-dirs.before"
  mkdir -m 0711 "$H" "$SHARED" "$T/fuse-src" "$FUSE" "$LOCAL"
  bindfs --no-allow-other "$T/fuse-src" "$FUSE"
  at_exit "fusermount -u '$FUSE' 2>/dev/null || umount -l '$FUSE'"
  host_setup a "$PORT_a"
  host_setup b "$PORT_b"
  at_exit "twohosts_down"
  host_start a &
  host_start b &
  wait
  for h in a b; do
    i=0
    until hv $h version >/dev/null 2>&1; do
      i=$((i + 1))
      [ $i -lt 300 ] || { echo "host $h: libvirtd does not answer" >&2; cat "$H/$h/log/libvirtd.log" 2>/dev/null | tail >&2; exit 1; }
      sleep 0.1
    done
  done
  "$QEMU_IMG" create -q -f qcow2 "$SHARED/base.qcow2" 64M
  chmod 0644 "$SHARED/base.qcow2"
}

# What of the machine's own libvirt the hosts must not touch: the
# names under its directories.
system_dirs () {
  find /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt \
    -maxdepth 3 2>/dev/null | sort
}

twohosts_down () {
  [ -e "$H/down" ] && return 0
  host_stop a
  host_stop b
  : > "$H/down"
}

twohosts_stop () {
  twohosts_down
  system_dirs > "$T/system-dirs.after"
  if cmp -s "$T/system-dirs.before" "$T/system-dirs.after"; then pass; else
    fail "the machine's libvirt directories changed: $(diff "$T/system-dirs.before" "$T/system-dirs.after" | head -n 5)"
  fi
  for h in a b; do
    for p in libvirtd virtlogd; do
      pid=$(cat "$H/$h/$p.pid" 2>/dev/null || true)
      [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null && pass || fail "host $h: $p still runs"
    done
  done
}

# Define domain NAME on host H with disks "target mode overlay" over
# $SHARED/base.qcow2.
twohosts_define () { # H NAME DISK...
  _h=$1 _n=$2; shift 2
  for _x in "$@"; do set -- "$@" "$_x $SHARED/base.qcow2 qcow2"; shift; done
  e2e_xml "$_n" "$@"
  hv "$_h" define "$T/$_n.xml" >/dev/null
}
