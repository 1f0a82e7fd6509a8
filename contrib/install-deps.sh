#!/bin/sh
# Install what virt-overlay needs to build, test and run, from Debian 12
# packages.  Run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  build-essential autoconf automake libtool pkg-config \
  libxml2-dev libxml2-utils libyajl-dev libcmocka-dev libvirt-dev \
  qemu-utils qemu-system-common qemu-system-x86 \
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients \
  valgrind procps e2fsprogs bindfs fuse3 strace attr perl python3 \
  dpkg-dev debhelper fakeroot lintian \
  clang libclang-rt-14-dev
