#!/bin/sh
# The main job of the README, on a fresh Debian 12 machine as root:
# install dependencies, build, and talk QMP to a qemu-storage-daemon.
set -eu
cd "$(dirname "$0")/.."
sh contrib/install-deps.sh
autoreconf -fi
./configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run
make -j"$(nproc)"
make -j"$(nproc)" check TESTS=tests/test-qsd
cat tests/test-qsd.log
