#!/bin/sh
# The bash completion (contrib/virt-overlay.bash) offers every command,
# pool subcommand and option the programs know (read from their code,
# so that a new one cannot be forgotten), and domain names from virsh.
. "${srcdir:-.}/tests/functions.sh"
requires bash
comp=$srcdir/contrib/virt-overlay.bash
# complete WORD... : what completing the last word offers, one per line.
complete_words () {
  bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _virt_overlay
           printf "%s\n" "${COMPREPLY[@]}"' sh "$comp" virt-overlay "$@" | sort
}
bash -n "$comp" && pass || fail "bash -n $comp"

c=$srcdir/cli/virt-overlay.c
a=$srcdir/cli/virt-overlay-admin.c
# (--help and -h share a line, which the pattern reads as -h)
{ sed -n 's/.*strcmp (argv\[1\], "\([a-z-]*\)").*/\1/p' "$c" | grep -v -x -e -h; echo --help; } |
  sort -u > "$T/commands"
[ "$(grep -c . "$T/commands")" -ge 5 ] && pass || fail "could not read the commands: $(cat "$T/commands")"
complete_words "" > "$T/got"
diff "$T/commands" "$T/got" > "$T/diff" && pass || fail "commands offered differ from the CLI's: $(cat "$T/diff")"

sed -n 's/.*strcmp (what, "\([a-z]*\)").*/\1/p' "$c" | sort -u > "$T/pool"
complete_words pool "" > "$T/got"
diff "$T/pool" "$T/got" > "$T/diff" && pass || fail "pool subcommands differ: $(cat "$T/diff")"

# create's options (those with an argument in virt-overlay.c), for create and pool fill.
sed -n 's/.*{ "\([a-z0-9-]*\)", required_argument.*/--\1/p' "$c" | sort -u > "$T/create"
complete_words create -- > "$T/got"
diff "$T/create" "$T/got" > "$T/diff" && pass || fail "create's options differ: $(cat "$T/diff")"
complete_words pool fill -- > "$T/got"
diff "$T/create" "$T/got" > "$T/diff" && pass || fail "pool fill's options differ: $(cat "$T/diff")"

# Each admin subcommand's options: its option table in virt-overlay-admin.c.
for cmd in $(sed -n 's/.*strcmp (argv\[1\], "\([a-z-]*\)") == 0)$/\1/p' "$a"); do
  awk -v f="cmd_$cmd" '$1 == f { on = 1 } on && /\{ NULL, 0/ { exit } on' "$a" |
    sed -n 's/.*{ "\([a-z0-9-]*\)", [a-z_]*argument.*/--\1/p' | grep -v -x -e --help | sort -u > "$T/want"
  [ -s "$T/want" ] && pass || fail "no options read for $cmd"
  complete_words "$cmd" -- > "$T/got"
  diff "$T/want" "$T/got" > "$T/diff" && pass || fail "$cmd's options differ: $(cat "$T/diff")"
done

# Values of options, and domain names from a virsh that names two.
[ "$(complete_words create --backing-format "" | tr '\n' ' ')" = "qcow2 raw " ] && pass ||
  fail "--backing-format values"
mkdir "$T/bin"
printf '#!/bin/sh\necho "$*" >> %s/virsh-args\nprintf "alpha\\nbeta\\n"\n' "$T" > "$T/bin/virsh"
chmod +x "$T/bin/virsh"
[ "$(PATH=$T/bin:$PATH complete_words status "" | tr '\n' ' ')" = "alpha beta " ] && pass ||
  fail "status does not offer domain names"
PATH=$T/bin:$PATH complete_words status --connect qemu:///x a > /dev/null
grep -q -- "-r -c qemu:///x list --all --name" "$T/virsh-args" && pass ||
  fail "virsh not asked read-only through --connect's URI: $(cat "$T/virsh-args")"
finish
