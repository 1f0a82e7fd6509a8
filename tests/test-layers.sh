#!/bin/sh
# lib/ imports downward only: each module includes the headers of
# modules on lower lines of tests/data/layers.txt, never its own line's
# or a higher one's, and every module is listed.
. "${srcdir:-.}/tests/functions.sh"

layers=$srcdir/tests/data/layers.txt
level_of () { # MODULE -> its line among the layers, or nothing
  grep -v '^#' "$layers" | grep -v '^$' | awk -v m="$1" '{ for (i = 1; i <= NF; i++) if ($i == m) print NR }'
}
modules=$(cd "$srcdir/lib" && ls *.c *.h | sed 's/\.[ch]$//' | sort -u)
for m in $modules; do
  lm=$(level_of "$m")
  if [ -z "$lm" ]; then
    fail "lib/$m is in no layer of tests/data/layers.txt"
    continue
  fi
  for f in "$srcdir/lib/$m.c" "$srcdir/lib/$m.h"; do
    [ -e "$f" ] || continue
    for inc in $(sed -n 's/^#include "\([a-z0-9_-]*\)\.h".*/\1/p' "$f"); do
      [ "$inc" = "$m" ] && continue
      li=$(level_of "$inc")
      if [ -z "$li" ]; then
        fail "$(basename "$f") includes $inc.h, which is in no layer"
      elif [ "$li" -ge "$lm" ]; then
        fail "$(basename "$f") (layer $lm) includes $inc.h (layer $li): an upward or sideways dependency"
      else
        pass
      fi
    done
  done
done
# The table itself: no module twice.
dups=$(grep -v '^#' "$layers" | tr ' ' '\n' | grep -v '^$' | sort | uniq -d)
[ -z "$dups" ] && pass || fail "listed twice in layers.txt: $dups"
finish
