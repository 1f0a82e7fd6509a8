#!/bin/sh
# The main job of the README, on a fresh Debian 12 machine as root:
# install dependencies, build, install the hook and its default
# configuration, make sure libvirtd sees the hook, then define a demo
# domain whose ephemeral overlay does not exist, start it, show the
# overlay and its backing chain, destroy it and show the overlay gone.
set -eu
cd "$(dirname "$0")/.."
sh contrib/install-deps.sh
autoreconf -fi
./configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run
make -j"$(nproc)"
make install
sh contrib/libvirtd-ensure.sh /etc/libvirt/hooks

images=/var/lib/libvirt/images
name=virt-overlay-demo
overlay=$images/$name.qcow2
base=$images/$name-base.qcow2
mkdir -p "$images"
chmod 0711 "$images"
[ -f "$base" ] || qemu-img create -q -f qcow2 "$base" 1G
if virsh -q domstate "$name" >/dev/null 2>&1; then
  virsh -q destroy "$name" >/dev/null 2>&1 || true
  virsh -q undefine "$name" >/dev/null
fi

step () { printf '\n== %s\n' "$*"; }
step "define $name (its overlay $overlay does not exist)"
virsh -q define xml/demo-domain.xml
ls -l "$overlay" 2>&1 || true
step "virsh start $name: the hook creates the overlay through qemu-storage-daemon"
virsh start "$name"
virsh domblklist "$name"
step "the new overlay and its backing chain"
qemu-img info -U --backing-chain "$overlay"
step "virsh destroy $name: the ephemeral overlay is removed"
virsh destroy "$name"
ls -l "$overlay" 2>&1 || true
virsh -q undefine "$name"
step "done: the hook stays installed at /etc/libvirt/hooks/qemu.d/virt-overlay"
