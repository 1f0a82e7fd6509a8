#!/bin/sh
# The manual pages: valid POD that pod2man turns into man pages, and
# complete: every configuration key the parser knows, every command and
# option of virt-overlay and every operation the hook handles appears in
# its page, and every key a page documents exists.
. "${srcdir:-.}/tests/functions.sh"
PODCHECKER=${PODCHECKER:-podchecker}
POD2MAN=${POD2MAN:-pod2man}
[ "$PODCHECKER" = no ] && PODCHECKER=podchecker
[ "$POD2MAN" = no ] && POD2MAN=pod2man
requires "$PODCHECKER"
requires "$POD2MAN"

cli=$srcdir/cli/virt-overlay.pod
hook=$srcdir/hook/virt-overlay-hook.pod
conf=$srcdir/contrib/virt-overlay.conf.pod

for pod in "$cli" "$hook" "$conf" "$srcdir/hook/virt-overlay-refill.pod" \
           "$srcdir/cli/virt-overlay-admin.pod"; do
  "$PODCHECKER" -warnings -warnings "$pod" > "$T/check" 2>&1 && pass ||
    fail "podchecker $pod: $(cat "$T/check")"
  grep -q -e WARNING -e ERROR "$T/check" && fail "podchecker $pod: $(cat "$T/check")" || pass
  "$POD2MAN" --errors=die --section=1 "$pod" > "$T/page" 2> "$T/err" && [ -s "$T/page" ] && pass ||
    fail "pod2man $pod: $(cat "$T/err")"
done

# items PAGE: the B<...> of its =item lines, one per line.
items () { sed -n 's/^=item B<\([^>]*\)>.*/\1/p' "$1" | sort -u; }

# ---- virt-overlay.conf(5) and the parser ----
sed -n 's/.*strcmp (key, "\([a-z_0-9]*\)").*/\1/p' "$srcdir/lib/config.c" | sort -u > "$T/keys"
[ "$(grep -c . "$T/keys")" -ge 10 ] && pass || fail "could not read the keys from lib/config.c"
items "$conf" > "$T/documented"
diff "$T/keys" "$T/documented" > "$T/diff" && pass ||
  fail "keys in lib/config.c (<) and in virt-overlay.conf.pod (>) differ: $(cat "$T/diff")"
# The example configuration shows every key too.
while read -r k; do
  grep -q "^#$k = " "$srcdir/contrib/virt-overlay.conf" && pass ||
    fail "contrib/virt-overlay.conf does not show $k"
done < "$T/keys"

# ---- virt-overlay(1) and the CLI ----
c=$srcdir/cli/virt-overlay.c
{
  sed -n 's/.*strcmp (argv\[1\], "\([a-z-]*\)").*/\1/p' "$c"
  sed -n 's/.*strcmp (what, "\([a-z]*\)").*/pool \1/p' "$c"
  sed -n 's/.*{ "\([a-z0-9-]*\)", required_argument.*/--\1/p' "$c"
} | grep -v -x -e -h | sort -u > "$T/cli"
[ "$(grep -c . "$T/cli")" -ge 8 ] && pass || fail "could not read the commands from $c: $(cat "$T/cli")"
items "$cli" > "$T/cli-items"
while read -r w; do
  # "pool" is documented by its subcommands' items ("pool fill", ...).
  awk -v w="$w" '$0 == w || index($0, w " ") == 1 { found = 1 } END { exit !found }' \
    "$T/cli-items" && pass || fail "virt-overlay.pod does not document '$w'"
done < "$T/cli"

# ---- virt-overlay-hook(8) and the hook ----
sed -n 's/.*strcmp (op, "\([a-z]*\)") == 0 && strcmp (subop, "\([a-z]*\)").*/\1 \2/p; s/.*strcmp (op, "\([a-z]*\)") == 0)$/\1/p' \
  "$srcdir/hook/virt-overlay-hook.c" | sort -u > "$T/ops"
[ "$(grep -c . "$T/ops")" -ge 5 ] && pass || fail "could not read the operations: $(cat "$T/ops")"
items "$hook" > "$T/hook-items"
while read -r op; do
  grep -q -x -F -- "$op" "$T/hook-items" && pass || fail "virt-overlay-hook.pod does not document '$op'"
done < "$T/ops"

# ---- virt-overlay-refill(8): every option the program takes ----
sed -n 's/.*{ "\([a-z0-9-]*\)", required_argument.*/\1/p' "$srcdir/hook/virt-overlay-refill.c" \
  > "$T/refill"
[ "$(grep -c . "$T/refill")" -ge 5 ] && pass || fail "could not read the refill's options"
while read -r o; do
  grep -q -F -- "B<--$o>" "$srcdir/hook/virt-overlay-refill.pod" && pass ||
    fail "virt-overlay-refill.pod does not document --$o"
done < "$T/refill"

# ---- the README points to the pages ----
for page in "virt-overlay(1)" "virt-overlay-hook(8)" "virt-overlay.conf(5)"; do
  grep -q -F "$page" "$srcdir/README" && pass || fail "the README does not name $page"
done
finish
