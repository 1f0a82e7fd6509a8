#!/bin/sh
# The test command of the README: install dependencies (as root), build
# with warnings as errors, run the whole suite, then again under valgrind.
# A suite that needs a tool we installed must not skip here.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && [ "${OVL_NO_INSTALL:-0}" != 1 ]; then
  sh contrib/install-deps.sh
fi
autoreconf -fi
./configure --enable-werror --prefix=/usr --sysconfdir=/etc \
  --localstatedir=/var --runstatedir=/run
make -j"$(nproc)"

status=0
OVL_REQUIRE_ALL=1 make -j1 check || status=$?
# The cmocka summary of every suite, then the suites that skipped.
grep -h -E '^\[  (PASSED|FAILED|SKIPPED) +\]' tests/*.log 2>/dev/null || true
skipped=$(grep -l ':test-result: SKIP' tests/*.trs 2>/dev/null || true)
if [ -n "$skipped" ]; then
  echo "suites skipped although their tools are installed: $skipped" >&2
  status=1
fi
pass=$(cat tests/*.trs 2>/dev/null | grep -c ':test-result: PASS' || true)
fail=$(cat tests/*.trs 2>/dev/null | grep -c -E ':test-result: (FAIL|ERROR)' || true)
skip=$(cat tests/*.trs 2>/dev/null | grep -c ':test-result: SKIP' || true)
if [ "$status" = 0 ]; then
  OVL_REQUIRE_ALL=1 make -j1 check-valgrind || status=$?
  [ "$status" = 0 ] || fail=$((fail + 1))
fi
echo "suites: $pass passed, $fail failed, $skip skipped"
exit "$status"
