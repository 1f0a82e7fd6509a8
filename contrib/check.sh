#!/bin/sh
# The test command of the README: install dependencies (as root), build
# with warnings as errors, run the whole suite and the soak (make soak,
# 20 rounds), then the suite again under valgrind, with the sanitizers,
# and under gcov (the coverage figures), the fuzz targets for a minute
# each, and the Debian package (make deb), installed and tested.
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
# The end of each failing suite's log, kept for the very end of the
# output, where a CI summary that shows only the last lines sees it.
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT
# First the lines that name a failure (cmocka's ERROR/FAILED/LINE, the
# shell suites' FAIL:), then the end of the log before any sanitizer
# report: a leak report after a failed test is only its echo.
keep_failures() {
  for trs in "$1"/*.trs; do
    [ -e "$trs" ] || continue
    grep -q -E ':test-result: (FAIL|ERROR)' "$trs" || continue
    log=${trs%.trs}.log
    {
      echo "--- $2: what $(basename "$log") says failed"
      grep -n -E '^\[ +(ERROR|FAILED|LINE) +\]|^FAIL: |^# BAD |runtime error|^==[0-9]+==ERROR' "$log" |
        head -n 20
      echo "--- $2: the end of $(basename "$log"), before any sanitizer report"
      awk '/^==[0-9]+==|^=================/ { exit } { print }' "$log" | tail -n 20
      echo "--- $2: the last lines of $(basename "$log")"
      tail -n 5 "$log"
    } >> "$failures"
  done
}
OVL_REQUIRE_ALL=1 make -j1 check || status=$?
keep_failures tests "make check"
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
# Four domains started and destroyed together for 20 rounds under the
# real libvirtd, the pool on: what one start at a time never shows.
if [ "$status" = 0 ]; then
  OVL_REQUIRE_ALL=1 make soak ROUNDS=20 || { status=1; fail=$((fail + 1)); }
fi
if [ "$status" = 0 ]; then
  OVL_REQUIRE_ALL=1 make -j1 check-valgrind || status=$?
  [ "$status" = 0 ] || { fail=$((fail + 1)); keep_failures tests "valgrind"; }
fi
# The unit suites once more, built from the release tarball with
# AddressSanitizer and UndefinedBehaviorSanitizer.
if [ "$status" = 0 ]; then
  asan=$(mktemp -d)
  make dist >/dev/null
  tar -C "$asan" -xzf virt-overlay-*.tar.gz
  (cd "$asan"/virt-overlay-* &&
   ./configure -q --enable-werror \
     CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
     LDFLAGS="-fsanitize=address,undefined" &&
   make -j"$(nproc)" >/dev/null &&
   OVL_REQUIRE_ALL=1 make -j1 check \
     TESTS="tests/test-config tests/test-paths tests/test-faults tests/test-layers.sh tests/test-json tests/test-qmp tests/test-qsd tests/test-domxml tests/test-ledger tests/test-lifecycle tests/test-image tests/test-create.sh tests/test-hook.sh tests/test-pool.sh tests/test-hostile.sh tests/test-shared.sh tests/test-syslog.sh" \
     GLIBC_TUNABLES= ASAN_OPTIONS=detect_leaks=1) ||
    { status=1; fail=$((fail + 1)); keep_failures "$(echo "$asan"/virt-overlay-*)/tests" "sanitizers"; }
  rm -rf "$asan" virt-overlay-*.tar.gz
fi
# The suite under gcov, from a distribution copy: the two figures of
# lib/ (lines, and error-report sites) in every log, failing under the
# bar (see the README).
if [ "$status" = 0 ]; then
  OVL_REQUIRE_ALL=1 make coverage ||
    { status=1; fail=$((fail + 1)); keep_failures coverage-build/src/tests "coverage"; }
fi
# Every parser of untrusted bytes under libFuzzer for a minute each, in
# a private clang build (fuzz-build/).
if [ "$status" = 0 ]; then
  make fuzz FUZZ_SECONDS=60 || { status=1; fail=$((fail + 1)); }
fi
# The Debian package: built from the release tarball (lintian must
# report no error), installed with apt-get, and the end-to-end test run
# against what it installed; removed again afterwards.
if [ "$status" = 0 ] && [ "$(id -u)" = 0 ]; then
  { make deb && apt-get install -y -q ./virt-overlay_*_*.deb && make check-installed; } ||
    { status=1; fail=$((fail + 1)); }
  apt-get purge -y -q virt-overlay >/dev/null 2>&1 || true
fi
cat "$failures"
echo "suites: $pass passed, $fail failed, $skip skipped"
exit "$status"
