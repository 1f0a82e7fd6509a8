#!/bin/sh
# make coverage: the suite, built with gcov from a distribution copy of
# the tree in BUILDDIR/coverage-build (the tree may be configured in
# place, which an out-of-tree build refuses), then two figures for lib/:
#
#   lines: the executable lines of lib/*.c that ran;
#   error-report sites: the lines of lib/*.c that report an error, that
#     is, call one of ERROR_CALLS below (the definitions themselves, at
#     the start of a line, do not count), that ran.
#
# The unexecuted error sites go to coverage-build/uncovered-errors.txt.
# Fails when a figure is under COVERAGE_MIN_LINES (85) or
# COVERAGE_MIN_ERRORS (75) percent, unless COVERAGE_ENFORCE=0.  TESTS,
# if set, runs only those suites.
#
#   contrib/coverage.sh SRCDIR BUILDDIR
set -eu
srcdir=$1 builddir=$2
min_lines=${COVERAGE_MIN_LINES:-85}
min_errors=${COVERAGE_MIN_ERRORS:-75}
enforce=${COVERAGE_ENFORCE:-1}
# The reporting functions of lib/: the one error channel and the
# helpers that feed it a request's or an outcome's error.
ERROR_CALLS='ovl_error|ovl_verror|ovl_error_prefix|res_fail|res_failf|say|say_refusal'

cb=$(cd "$builddir" && pwd)/coverage-build
rm -rf "$cb"
mkdir -p "$cb"
make -s -C "$builddir" distdir distdir="$cb/src" >/dev/null
cd "$cb/src"
./configure -q --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run \
  CFLAGS="--coverage -O0 -g" LDFLAGS="--coverage" > "$cb/configure.log" 2>&1 || {
  tail -5 "$cb/configure.log" >&2; exit 1; }
make -j"$(nproc)" > "$cb/build.log" 2>&1 || { tail -20 "$cb/build.log" >&2; exit 1; }
check=0
if [ -n "${TESTS:-}" ]; then
  make -j1 check TESTS="$TESTS" || check=$?
else
  make -j1 check || check=$?
fi
[ "$check" = 0 ] || echo "coverage: the suite failed (exit $check); figures below are of what ran" >&2

mkdir -p "$cb/gcov"
(cd "$cb/src" && gcov lib/libovl_a-*.o > "$cb/gcov.log" 2>&1 && mv ./*.gcov "$cb/gcov/") || {
  tail -5 "$cb/gcov.log" >&2; exit 1; }
: > "$cb/uncovered-errors.txt"
for f in "$cb/gcov"/*.c.gcov; do
  [ -e "$f" ] || continue
  src=$(sed -n '1s/^ *-: *0:Source://p' "$f")
  case $src in lib/*.c) ;; *) continue;; esac
  awk -v file="$src" -v calls="$ERROR_CALLS" -v out="$cb/uncovered-errors.txt" '
    {
      c = $0; sub(/:.*/, "", c); gsub(/ /, "", c)
      rest = substr($0, index($0, ":") + 1)
      ln = rest; sub(/:.*/, "", ln); gsub(/ /, "", ln)
      text = substr(rest, index(rest, ":") + 1)
      if (ln == 0 || c == "-") next
      ran = (c != "#####" && c != "=====")
      total++; hit += ran
      if (text ~ ("(^|[^A-Za-z0-9_])(" calls ") \\(") && text ~ /^[ \t]/) {
        etotal++; ehit += ran
        if (!ran) { t = text; sub(/^[ \t]+/, "", t); print file ":" ln ": " t >> out }
      }
    }
    END { printf "%s %d %d %d %d\n", file, hit, total, ehit, etotal }' "$f"
done | sort > "$cb/per-file.txt"

echo "coverage of lib/ by file (lines ran/lines, error sites ran/sites):"
awk '{ printf "  %-18s %5.1f%% %4d/%-4d  errors %4d/%-4d\n", $1, $3 ? 100 * $2 / $3 : 100, $2, $3, $4, $5 }' "$cb/per-file.txt"
set -- $(awk '{ h += $2; t += $3; eh += $4; et += $5 } END { print h, t, eh, et }' "$cb/per-file.txt")
[ "${2:-0}" -gt 0 ] || { echo "coverage: no gcov data for lib/" >&2; exit 1; }
lines=$(awk -v h="$1" -v t="$2" 'BEGIN { printf "%.1f", 100 * h / t }')
errors=$(awk -v h="$3" -v t="$4" 'BEGIN { printf "%.1f", t ? 100 * h / t : 100 }')
echo "coverage: lines in lib/: $lines% ($1/$2)"
echo "coverage: error-report sites in lib/: $errors% ($3/$4); the rest in coverage-build/uncovered-errors.txt"
status=0
if [ "$enforce" != 0 ]; then
  awk -v a="$lines" -v b="$min_lines" 'BEGIN { exit !(a < b) }' && {
    echo "coverage: lines under $min_lines%" >&2; status=1; }
  awk -v a="$errors" -v b="$min_errors" 'BEGIN { exit !(a < b) }' && {
    echo "coverage: error-report sites under $min_errors%" >&2; status=1; }
  [ "$check" = 0 ] || status=1
fi
exit "$status"
