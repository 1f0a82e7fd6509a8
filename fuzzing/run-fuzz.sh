#!/bin/sh
# make fuzz: run every libFuzzer target for FUZZ_SECONDS (default 60) on a
# working copy of its seeds, print executions per second and corpus size,
# fail on any crash, leak or timeout.  FUZZ_MERGE=1 merges the inputs that
# found new coverage into fuzzing/corpus/<target>.
#
#   run-fuzz.sh SRCDIR BUILDDIR yes fuzzing/fuzz-json ...   run these
#   run-fuzz.sh SRCDIR BUILDDIR no                          private build
#
# Without --enable-fuzzing, a clang build is configured in BUILDDIR/fuzz-build.
# The source tree may itself be configured in place, which a second,
# out-of-tree configure refuses, so that build is made from a distribution
# copy of the sources (fuzz-build/src, built in fuzz-build/build).
set -eu
srcdir=$1 builddir=$2 configured=$3
shift 3
seconds=${FUZZ_SECONDS:-60}
# Merges go into the tree the user ran make in, not into a copy of it.
corpus=${FUZZ_CORPUS:-$srcdir/fuzzing/corpus}
export FUZZ_CORPUS="$corpus"

if [ "$configured" != yes ]; then
  cc=${FUZZ_CC:-clang}
  command -v "$cc" >/dev/null 2>&1 || {
    echo "make fuzz: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
  }
  fb=$builddir/fuzz-build
  rm -rf "$fb"
  mkdir -p "$fb/build"
  make -s -C "$builddir" distdir distdir="$fb/src" >/dev/null
  (cd "$fb/build" && CC=$cc ../src/configure -q --enable-fuzzing) >"$fb/configure.log" 2>&1 || {
    tail -5 "$fb/configure.log" >&2
    exit 1
  }
  exec make -s -C "$fb/build" -j2 fuzz
fi

cd "$builddir"
mkdir -p fuzzing/artifacts
status=0
for prog in "$@"; do
  t=${prog#fuzzing/fuzz-}
  work=fuzzing/work-$t
  log=fuzzing/fuzz-$t.log
  rm -rf "$work"
  mkdir -p "$work"
  seeds=0
  if [ -d "$corpus/$t" ]; then
    cp "$corpus/$t"/* "$work"/ 2>/dev/null || true
    seeds=$(ls "$work" | wc -l)
  fi
  rc=0
  "./$prog" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzzing/artifacts/$t-" \
    "$work" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-8s %10s runs %8s exec/s  corpus %s -> %s files\n' \
    "$t" "${execs:-?}" "${speed:-?}" "$seeds" "$(ls "$work" | wc -l)"
  if [ "$rc" != 0 ]; then
    echo "fuzz-$t failed (exit $rc); its log: $builddir/$log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -10 >&2
    status=1
    continue
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    mkdir -p "$corpus/$t"
    "./$prog" -merge=1 "$corpus/$t" "$work" >>"$log" 2>&1 || status=1
    echo "         merged: $corpus/$t holds $(ls "$corpus/$t" | wc -l) files"
  fi
done
exit "$status"
