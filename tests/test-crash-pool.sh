#!/bin/sh
# test-crash.sh with the warm pool on: the kills land in pool claims and
# takes too.
OVL_CRASH_POOL=1
export OVL_CRASH_POOL
. "${srcdir:-.}/tests/test-crash.sh"
