#!/bin/sh
# virt-overlay status (cli/virt-overlay-admin, the part linked with
# libvirt) against the real libvirtd: domains defined for the test, their
# overlays made by running the hook the way libvirt does, the table and
# the --json output (golden: tests/data/admin/), and the errors.
. "${srcdir:-.}/tests/functions.sh"
admin_suite
sh "$srcdir/contrib/libvirtd-ensure.sh" "$HOOKS"
mkdir -m 0711 "$T/save"
VO=$builddir/cli/virt-overlay

names=""
at_exit 'for n in $names; do $VIRSH undefine "$n" >/dev/null 2>&1 || true; done'
name=ovl-admin-$$
plain=ovl-admin-plain-$$
names="$name $plain"
UUID=5b2e1c4d-7a8f-4e3b-9d2c-0123456789ab
cat > "$T/dom.xml" <<EOD
<domain type='qemu'><name>$name</name><uuid>$UUID</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>
<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>
<ovl:disk target='vda' mode='ephemeral'/><ovl:disk target='vdb' mode='persistent'/>
<ovl:disk target='vdc' mode='persistent'/></ovl:overlays></metadata><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$img/a-vda.qcow2'/>
<backingStore type='file'><format type='qcow2'/><source file='$img/base.qcow2'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$img/a-vdb.qcow2'/>
<backingStore type='file'><format type='raw'/><source file='$img/base.raw'/><backingStore/></backingStore>
<target dev='vdb' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$img/a-vdc.qcow2'/>
<backingStore type='file'><format type='qcow2'/><source file='$img/base.qcow2'/><backingStore/></backingStore>
<target dev='vdc' bus='virtio'/></disk>
</devices></domain>
EOD
cat > "$T/plain.xml" <<EOD
<domain type='qemu'><name>$plain</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>
EOD
$VIRSH define "$T/dom.xml" > /dev/null && $VIRSH define "$T/plain.xml" > /dev/null && pass ||
  fail "define"

# Overlays made as libvirt would make them: the hook's prepare, by hand
# (the domain stays shut off); then vdc's is gone again.
$VIRSH dumpxml "$name" | "$builddir/hook/virt-overlay-hook" "$name" prepare begin - && pass ||
  fail "prepare"
rm -f "$img/a-vdc.qcow2"

# normalise < JSON: the test's paths, the daemon's pid and the sizes
# allocated on this filesystem made constant.
normalise () {
  sed -e "s|$img|@IMG@|g" -e "s|$T|@T@|g" -e 's/"pid":[0-9]*/"pid":@PID@/g' \
      -e 's/"allocated":[0-9]*/"allocated":@N@/g' -e "s/$name/@NAME@/g" \
      -e 's/\[{/[\n{/g' -e 's/},{/},\n{/g'
}

# ---- --json, one domain named ----
$VO status --json "$name" > "$T/out.json" 2> "$T/err" && pass || fail "status --json: $(cat "$T/err")"
normalise < "$T/out.json" > "$T/got.json"
diff -u "$srcdir/tests/data/admin/status.json" "$T/got.json" > "$T/diff" && pass ||
  fail "status --json differs from tests/data/admin/status.json: $(cat "$T/diff")"

# ---- all domains: only those whose disks virt-overlay handles ----
$VO status --json > "$T/all.json" 2> "$T/err" && pass || fail "status --json (all): $(cat "$T/err")"
grep -q "\"name\":\"$name\"" "$T/all.json" && pass || fail "status does not list $name"
grep -q "\"name\":\"$plain\"" "$T/all.json" && fail "status lists $plain, which has no overlays" || pass

# ---- the table ----
$VO status "$name" > "$T/table" 2> "$T/err" && pass || fail "status: $(cat "$T/err")"
grep -q "^domain $name (shut off)$" "$T/table" && pass || fail "table: $(cat "$T/table")"
grep -q "^  vda    ephemeral  $img/a-vda.qcow2$" "$T/table" && pass || fail "table vda: $(cat "$T/table")"
grep -q "^         base $img/base.qcow2 (qcow2), made by virt-overlay$" "$T/table" && pass ||
  fail "table: vda's base: $(cat "$T/table")"
grep -q "^         missing (made at the next start)$" "$T/table" && pass || fail "table vdc: $(cat "$T/table")"
grep -q "^  $T/run/qsd.sock: answering, 0 jobs$" "$T/table" && pass || fail "table qsd: $(cat "$T/table")"

# ---- an overlay handed out by the warm pool says so ----
write_conf "$T/conf" "pool_size = 1"
pooled=ovl-admin-pool-$$
names="$names $pooled"
one_disk_domain "$pooled" 5b2e1c4d-7a8f-4e3b-9d2c-0123456789ac ephemeral "$img/p-vda.qcow2" |
  sed "s|</uuid>|</uuid><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>|" \
  > "$T/pooled.xml"
$VIRSH define "$T/pooled.xml" > /dev/null && $VO pool fill "$img/base.qcow2" &&
  $VIRSH dumpxml "$pooled" | VIRT_OVERLAY_REFILL=/bin/true "$builddir/hook/virt-overlay-hook" "$pooled" prepare begin - &&
  pass || fail "prepare from the pool"
$VO status --json "$pooled" | grep -q '"made-by-virt-overlay":true,"from-pool":true' && pass ||
  fail "status does not say the overlay came from the pool: $($VO status --json "$pooled")"
$VO status "$pooled" | grep -q "made by virt-overlay (from the pool)$" && pass ||
  fail "table: $($VO status "$pooled")"
$VO pool flush > /dev/null

# ---- errors ----
set +e
$VO status no-such-domain-$$ > /dev/null 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "domain no-such-domain-$$: " "$T/err" && pass || fail "unknown domain: $rc $(cat "$T/err")"
set +e
$VO status --connect test:///nonexistent-$$ > /dev/null 2> "$T/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "test:///nonexistent-$$" "$T/err" && pass || fail "bad URI: $rc $(cat "$T/err")"
# virt-overlay itself is not linked with libvirt.
ldd "$builddir/cli/virt-overlay" | grep -q libvirt && fail "virt-overlay links libvirt" || pass
ldd "$builddir/cli/virt-overlay-admin" | grep -q libvirt && pass || fail "the admin program does not link libvirt"
VIRT_OVERLAY_ADMIN=$T/missing $VO status > /dev/null 2> "$T/err" && fail "status without the admin program" ||
  grep -q "status needs $T/missing (built with libvirt)" "$T/err" && pass || fail "missing admin: $(cat "$T/err")"
finish
