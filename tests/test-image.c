/* The image header parser and the backing name rules, driven by tables.
 *
 * Each qcow2 fixture is built here from a compact description (version,
 * cluster bits, size, incompatible bits, header length, backing name and
 * where it sits, header extensions, truncation) rather than kept as a
 * binary file, so that each row says what it tests.  Every error the
 * parser can report has a row, and so do the images it must accept. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cleanup.h"
#include "error.h"
#include "image.h"
#include "util.h"
#include "testutil.h"

#define MiB (UINT64_C (1) << 20)
#define EXT_FMT 0xe2792acaU
#define EXT_DATA_FILE 0x44415441U
#define EXT_FEATURES 0x6803f857U

struct ext {
  uint32_t type;
  uint32_t len;                 /* declared; the data is zeros unless DATA */
  const char *data;
};

struct qrow {
  const char *what;
  uint32_t version;             /* 0: 3 */
  uint32_t cluster_bits;        /* 0: 16 */
  uint64_t size;                /* 0: 64 MiB; use 1 for a real 0 */
  uint64_t incompat;
  uint32_t hdr_len;             /* 0: 72 for v2, 112 for v3 */
  const char *backing;          /* NULL: none */
  uint32_t backing_len;         /* 0: strlen (backing) */
  uint64_t backing_off;         /* 0: after the extensions; UINT64_MAX: 0 */
  const char *fmt;              /* backing format extension, or NULL */
  struct ext ext;               /* one more extension, after the format one */
  bool no_end;                  /* no end-of-extensions marker */
  bool bad_magic;
  size_t trunc;                 /* bytes given to the parser; 0: a cluster */
  uint64_t file_size;           /* 0: 3 clusters */
  const char *error;            /* NULL: accepted */
  /* Accepted: what the parser must say. */
  const char *want_backing;     /* NULL: "" */
  int want_fmt;                 /* -1 none, else enum ovl_format */
};

static void
put32 (unsigned char *p, uint32_t v)
{
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void
put64 (unsigned char *p, uint64_t v)
{
  put32 (p, v >> 32);
  put32 (p + 4, (uint32_t) v);
}

/* Append an extension at *OFF (if it fits in the buffer). */
static void
put_ext (unsigned char *buf, size_t cap, size_t *off, uint32_t type, uint32_t len,
         const char *data)
{
  if (*off + 8 > cap)
    return;
  put32 (buf + *off, type);
  put32 (buf + *off + 4, len);
  *off += 8;
  if (data && *off + len <= cap)
    memcpy (buf + *off, data, len);
  *off += ((size_t) len + 7) & ~(size_t) 7;
}

/* Build the first cluster of the image R describes; *LEN is its size. */
static unsigned char *
build (const struct qrow *r, size_t *len)
{
  uint32_t version = r->version ? r->version : 3;
  uint32_t bits = r->cluster_bits ? r->cluster_bits : 16;
  size_t cap = (size_t) 1 << (bits >= 9 && bits <= 21 ? bits : 16);
  uint32_t hdr_len = r->hdr_len ? r->hdr_len : version == 2 ? 72 : 112;
  uint32_t blen = r->backing ? (r->backing_len ? r->backing_len : strlen (r->backing)) : 0;
  unsigned char *buf = calloc (1, cap);
  size_t off = version == 2 ? 72 : hdr_len < 104 ? 104 : hdr_len;
  uint64_t boff;

  assert_non_null (buf);
  memcpy (buf, r->bad_magic ? "QFI\xfc" : "QFI\xfb", 4);
  put32 (buf + 4, version);
  put32 (buf + 20, bits);
  put64 (buf + 24, r->size == 1 ? 0 : r->size ? r->size : 64 * MiB);
  put64 (buf + 72, r->incompat);
  put32 (buf + 96, 4);                  /* refcount order */
  put32 (buf + 100, hdr_len);
  if (r->fmt)
    put_ext (buf, cap, &off, EXT_FMT, strlen (r->fmt), r->fmt);
  if (r->ext.type)
    put_ext (buf, cap, &off, r->ext.type, r->ext.len, r->ext.data);
  if (!r->no_end)
    put_ext (buf, cap, &off, 0, 0, NULL);
  boff = r->backing_off == UINT64_MAX ? 0 : r->backing_off ? r->backing_off : off;
  if (r->backing) {
    put64 (buf + 8, boff);
    put32 (buf + 16, blen);
    if (boff && boff < cap && strlen (r->backing) <= cap - boff)
      memcpy (buf + boff, r->backing, strlen (r->backing));
  }
  *len = r->trunc ? r->trunc : cap;
  return buf;
}

static const struct qrow qrows[] = {
  /* Good ones. */
  { "v3, no backing", .want_fmt = -1 },
  { "v2, no backing", .version = 2, .want_fmt = -1 },
  { "v3, qcow2 backing", .backing = "/b/base.qcow2", .fmt = "qcow2",
    .want_backing = "/b/base.qcow2", .want_fmt = OVL_FMT_QCOW2 },
  { "v2, raw backing", .version = 2, .backing = "/b/base.raw", .fmt = "raw",
    .want_backing = "/b/base.raw", .want_fmt = OVL_FMT_RAW },
  { "backing format after another extension", .backing = "/b/x", .fmt = "raw",
    .ext = { EXT_FEATURES, 48, NULL }, .want_backing = "/b/x", .want_fmt = OVL_FMT_RAW },
  { "backing without a format (the chain walker refuses it)", .backing = "/b/x",
    .want_backing = "/b/x", .want_fmt = -1 },
  { "relative backing name (resolved later)", .backing = "x.qcow2", .fmt = "qcow2",
    .want_backing = "x.qcow2", .want_fmt = OVL_FMT_QCOW2 },
  { "format extension without a backing file", .fmt = "vmdk", .want_fmt = -1 },
  { "backing offset 0 means none", .backing = "/b/x", .backing_off = UINT64_MAX,
    .fmt = "qcow2", .want_fmt = -1 },
  { "empty backing name means none", .backing = "", .fmt = "qcow2", .want_fmt = -1 },
  { "512-byte clusters", .cluster_bits = 9, .backing = "/b/x", .fmt = "qcow2",
    .want_backing = "/b/x", .want_fmt = OVL_FMT_QCOW2 },
  { "2 MiB clusters", .cluster_bits = 21, .want_fmt = -1 },
  { "dirty bit accepted", .incompat = 1 << 0, .want_fmt = -1 },
  { "compression type bit accepted", .incompat = 1 << 3, .want_fmt = -1 },
  { "extended L2 bit accepted", .incompat = 1 << 4, .want_fmt = -1 },
  { "extensions fill the cluster, no end marker", .cluster_bits = 9, .hdr_len = 504,
    .ext = { 0x12345678, 0, NULL }, .no_end = true, .want_fmt = -1 },
  { "unknown extension skipped", .ext = { 0x12345678, 13, "hello, world" }, .backing = "/b/y",
    .fmt = "qcow2", .want_backing = "/b/y", .want_fmt = OVL_FMT_QCOW2 },
  { "header length 104", .hdr_len = 104, .want_fmt = -1 },
  { "biggest size", .size = UINT64_C (1) << 61, .want_fmt = -1 },
  { "cluster-long file", .file_size = 65536, .want_fmt = -1 },

  /* The fixed header. */
  { "bad magic", .bad_magic = true, .error = "not a qcow2 image (bad magic)" },
  { "3 bytes", .trunc = 3, .error = "not a qcow2 image (bad magic)" },
  { "truncated v2 header", .version = 2, .trunc = 71, .error = "truncated qcow2 header" },
  { "truncated v3 header", .trunc = 103, .error = "truncated qcow2 v3 header" },
  { "version 1", .version = 1, .error = "unsupported qcow2 version 1" },
  { "version 4", .version = 4, .error = "unsupported qcow2 version 4" },
  { "cluster bits 8", .cluster_bits = 8, .error = "invalid qcow2 cluster size 2^8" },
  { "cluster bits 22", .cluster_bits = 22, .error = "invalid qcow2 cluster size 2^22" },
  { "size 0", .size = 1, .error = "invalid qcow2 virtual size 0" },
  { "size not a multiple of 512", .size = 1000, .error = "invalid qcow2 virtual size 1000" },
  { "size too big", .size = (UINT64_C (1) << 61) + 512,
    .error = "invalid qcow2 virtual size 2305843009213694464" },
  { "header length 100", .hdr_len = 100, .error = "invalid qcow2 header length 100" },
  { "header length over the cluster", .cluster_bits = 9, .hdr_len = 1024,
    .error = "invalid qcow2 header length 1024" },
  { "header length over what was read", .hdr_len = 256, .trunc = 200,
    .error = "truncated qcow2 v3 header (header length 256)" },
  { "corrupt bit", .incompat = 1 << 1, .error = "qcow2 base is marked corrupt" },
  { "data file bit", .incompat = 1 << 2, .error = "qcow2 base has an external data file" },
  { "unknown incompatible bit", .incompat = 1 << 5 | 1 << 0,
    .error = "qcow2 base has unknown incompatible features 0x20" },
  { "high unknown incompatible bit", .incompat = UINT64_C (1) << 63,
    .error = "unknown incompatible features 0x8000000000000000" },

  /* The backing file name. */
  { "backing name too long", .backing = "/b/x", .backing_len = 1024, .fmt = "raw",
    .error = "backing file name of 1024 bytes is too long (at most 1023)" },
  { "backing name over the header", .backing = "/b/x", .backing_off = 104, .fmt = "raw",
    .error = "backing file name at offset 104 overlaps the header" },
  { "backing name beyond the first cluster", .backing = "/b/x", .backing_off = 65535,
    .fmt = "raw", .error = "backing file name at offset 65535 (4 bytes) is beyond the first cluster" },
  { "backing offset huge", .backing = "/b/x", .backing_off = UINT64_MAX - 1, .fmt = "raw",
    .error = "is beyond the first cluster" },
  { "backing name beyond the file", .backing = "/b/x", .backing_off = 400, .fmt = "raw",
    .file_size = 402, .error = "backing file name at offset 400 (4 bytes) is beyond the end of the file" },
  { "backing name beyond what was read", .backing = "/b/x", .backing_off = 400, .fmt = "raw",
    .trunc = 402, .error = "truncated qcow2 header (backing file name)" },
  { "NUL in the backing name", .backing = "/b/x", .backing_len = 6, .fmt = "raw",
    .error = "backing file name contains a NUL byte" },

  /* Header extensions. */
  { "extensions truncated", .fmt = "qcow2", .trunc = 116,
    .error = "truncated qcow2 header extension at offset 112" },
  { "extension data truncated", .fmt = "qcow2", .trunc = 121,
    .error = "truncated qcow2 header extension at offset 112" },
  { "no end marker before the backing name", .backing = "/b/x", .backing_off = 116,
    .no_end = true, .error = "truncated qcow2 header extension at offset 112" },
  { "no room for an extension before the cluster's end", .cluster_bits = 9, .hdr_len = 508,
    .error = "truncated qcow2 header extension at offset 508" },
  { "extension length overflow", .ext = { 0x12345678, 0xfffffff0, NULL },
    .error = "qcow2 header extension 0x12345678 at offset 112: length 4294967280 overruns the header" },
  { "extension over the backing name", .backing = "/b/x", .backing_off = 256, .fmt = "raw",
    .ext = { 0x12345678, 200, NULL }, .error = "length 200 overruns the header" },
  { "data file extension", .ext = { EXT_DATA_FILE, 8, "/etc/xx" },
    .error = "qcow2 base names an external data file" },
  { "two backing format extensions", .backing = "/b/x", .fmt = "raw",
    .ext = { EXT_FMT, 5, "qcow2" }, .error = "two backing format header extensions" },
  { "backing format too long", .backing = "/b/x", .fmt = "qcow2qcow2qcow2qcow2",
    .error = "invalid backing format header extension 'qcow2qcow2qcow2q'" },
  { "NUL in the backing format", .backing = "/b/x", .ext = { EXT_FMT, 4, "ra\0w" },
    .error = "invalid backing format header extension 'ra'" },
  { "backing format vmdk", .backing = "/b/x", .fmt = "vmdk",
    .error = "unsupported backing format 'vmdk' in the header (qcow2 or raw)" },
  { "backing format with an escape", .backing = "/b/x", .fmt = "\x1b[2Jraw",
    .error = "unsupported backing format '\\x1b[2Jraw'" },
  { "backing format file", .backing = "/b/x", .fmt = "file",
    .error = "unsupported backing format 'file'" },
};

static void
test_qcow2 (void **state)
{
  size_t i;

  (void) state;
  for (i = 0; i < sizeof qrows / sizeof qrows[0]; i++) {
    const struct qrow *r = &qrows[i];
    struct ovl_image_header h;
    size_t len;
    unsigned char *buf = build (r, &len);
    uint64_t file_size = r->file_size ? r->file_size : 3 * (uint64_t) len;
    int rc;

    if (r->file_size && r->file_size < len)
      len = r->file_size;
    ovl_error_clear ();
    rc = ovl_image_parse_header (buf, len, file_size, OVL_FMT_QCOW2, &h);
    free (buf);
    if (r->error) {
      if (rc != -1 || !strstr (ovl_error_msg (), r->error))
        fail_msg ("%s: want error '%s', got %d '%s'", r->what, r->error, rc, ovl_error_msg ());
      continue;
    }
    if (rc != 0)
      fail_msg ("%s: refused: %s", r->what, ovl_error_msg ());
    assert_int_equal (h.size, r->size ? r->size : 64 * MiB);
    if (strcmp (h.backing, r->want_backing ? r->want_backing : "") != 0)
      fail_msg ("%s: backing '%s'", r->what, h.backing);
    if (h.has_backing_format != (r->want_fmt != -1) ||
        (r->want_fmt != -1 && (int) h.backing_format != r->want_fmt))
      fail_msg ("%s: backing format %d/%d", r->what, h.has_backing_format, h.backing_format);
  }
}

/* The longest name QEMU allows is read whole; one more byte is refused. */
static void
test_longest_name (void **state)
{
  char name[OVL_BACKING_NAME_MAX + 2];
  struct qrow r = { "longest", .fmt = "raw", .backing = name };
  struct ovl_image_header h;
  unsigned char *buf;
  size_t len;

  (void) state;
  memset (name, 'a', sizeof name - 1);
  name[0] = '/';
  name[OVL_BACKING_NAME_MAX] = '\0';
  buf = build (&r, &len);
  assert_int_equal (ovl_image_parse_header (buf, len, 3 * len, OVL_FMT_QCOW2, &h), 0);
  assert_string_equal (h.backing, name);
  free (buf);
  name[OVL_BACKING_NAME_MAX] = 'a';
  name[OVL_BACKING_NAME_MAX + 1] = '\0';
  buf = build (&r, &len);
  assert_int_equal (ovl_image_parse_header (buf, len, 3 * len, OVL_FMT_QCOW2, &h), -1);
  assert_non_null (strstr (ovl_error_msg (), "1024 bytes is too long"));
  free (buf);
}

/* Every prefix of a good image is refused or, once the header is
 * whole, read the same; never read out of bounds (valgrind, ASan). */
static void
test_qcow2_prefixes (void **state)
{
  const struct qrow r = { "prefix", .cluster_bits = 9, .backing = "/b/x", .fmt = "qcow2" };
  struct ovl_image_header h;
  size_t len, n;
  unsigned char *buf = build (&r, &len);
  size_t accepted = 0;

  (void) state;
  for (n = 0; n <= len; n++) {
    unsigned char *copy = malloc (n ? n : 1);
    memcpy (copy, buf, n);
    if (ovl_image_parse_header (copy, n, 3 * 512, OVL_FMT_QCOW2, &h) == 0) {
      assert_string_equal (h.backing, "/b/x");
      accepted++;
    }
    free (copy);
  }
  free (buf);
  /* Accepted from the end of the backing name on. */
  assert_int_equal (accepted, len - (112 + 8 + 8 + 8 + 4) + 1);
}

struct rawrow {
  const char *what;
  const char *bytes;
  size_t len, off;
  uint64_t file_size;
  const char *error;
};

static const struct rawrow rawrows[] = {
  { "zeros", "", 0, 0, 16 * MiB, NULL },
  { "short read of a good file", "", 0, 0, 512, NULL },
  { "qcow2 magic", "QFI\xfb", 4, 0, 16 * MiB, "declared raw but carries a qcow2/qcow header" },
  { "QED magic", "QED\0", 4, 0, 16 * MiB, "declared raw but carries a QED header" },
  { "VMDK magic", "KDMV", 4, 0, 16 * MiB, "declared raw but carries a VMDK header" },
  { "VDI magic", "\x7f\x10\xda\xbe", 4, 64, 16 * MiB, "declared raw but carries a VDI header" },
  { "VHDX magic", "vhdxfile", 8, 0, 16 * MiB, "declared raw but carries a VHDX header" },
  { "LUKS magic", "LUKS\xba\xbe", 6, 0, 16 * MiB, "declared raw but carries a LUKS header" },
  { "VDI magic elsewhere is data", "\x7f\x10\xda\xbe", 4, 0, 16 * MiB, NULL },
  { "size not a multiple of 512", "", 0, 0, 16 * MiB + 1,
    "raw size 16777217 is not a positive multiple of 512" },
  { "empty", "", 0, 0, 0, "raw size 0 is not a positive multiple of 512" },
};

static void
test_raw (void **state)
{
  size_t i;

  (void) state;
  for (i = 0; i < sizeof rawrows / sizeof rawrows[0]; i++) {
    const struct rawrow *r = &rawrows[i];
    unsigned char buf[512] = { 0 };
    size_t len = r->file_size < sizeof buf ? (size_t) r->file_size : sizeof buf;
    struct ovl_image_header h;
    int rc;

    memcpy (buf + r->off, r->bytes, r->len);
    ovl_error_clear ();
    rc = ovl_image_parse_header (buf, len, r->file_size, OVL_FMT_RAW, &h);
    if (r->error) {
      if (rc != -1 || !strstr (ovl_error_msg (), r->error))
        fail_msg ("%s: want error '%s', got %d '%s'", r->what, r->error, rc, ovl_error_msg ());
      continue;
    }
    if (rc != 0)
      fail_msg ("%s: refused: %s", r->what, ovl_error_msg ());
    assert_int_equal (h.size, r->file_size);
    assert_string_equal (h.backing, "");
    assert_false (h.has_backing_format);
  }
}

static const struct {
  const char *image, *name;
  const char *want;             /* the path, or the error */
  bool ok;
} names[] = {
  { "/b/top.qcow2", "/b/base.qcow2", "/b/base.qcow2", true },
  { "/b/top.qcow2", "base.qcow2", "/b/base.qcow2", true },
  { "/b/c/top.qcow2", "d/base.qcow2", "/b/c/d/base.qcow2", true },
  /* Normalisation is the path check's job: it refuses this one. */
  { "/b/top.qcow2", "../etc/shadow", "/b/../etc/shadow", true },
  { "/top.qcow2", "base", "/base", true },
  { "/b/top.qcow2", "/b/a:b", "/b/a:b", true },
  { "/b/top.qcow2", "d/a:b", "/b/d/a:b", true },
  { "/b/top.qcow2", "json:{\"driver\":\"vvfat\",\"dir\":\"/etc\"}",
    "backing file 'json:{\"driver\":\"vvfat\",\"dir\":\"/etc\"}' is not a plain path", false },
  { "/b/top.qcow2", "nbd://127.0.0.1/x", "backing file 'nbd://127.0.0.1/x' is not a plain path", false },
  { "/b/top.qcow2", "nbd:127.0.0.1:10809", "is not a plain path", false },
  { "/b/top.qcow2", "fat:rw:/etc", "is not a plain path", false },
  { "/b/top.qcow2", "file:/etc/shadow", "is not a plain path", false },
  { "/b/top.qcow2", "/b/http://x", "backing file '/b/http://x' is not a plain path", false },
  { "/b/top.qcow2", "/b/x\x1b[2J\n", "backing file '/b/x\\x1b[2J\\x0a' has control characters", false },
  { "/b/top.qcow2", "/b/\x7f", "backing file '/b/\\x7f' has control characters", false },
};

static void
test_backing_path (void **state)
{
  size_t i;
  char out[64];

  (void) state;
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    int rc;

    ovl_error_clear ();
    rc = ovl_image_backing_path (names[i].image, names[i].name, out, sizeof out);
    if (names[i].ok) {
      if (rc != 0 || strcmp (out, names[i].want) != 0)
        fail_msg ("'%s': want '%s', got %d '%s' (%s)", names[i].name, names[i].want, rc,
                  rc ? "" : out, ovl_error_msg ());
    }
    else if (rc != -1 || !strstr (ovl_error_msg (), names[i].want))
      fail_msg ("'%s': want error '%s', got %d '%s'", names[i].name, names[i].want, rc,
                ovl_error_msg ());
  }
  /* Too long for the buffer. */
  assert_int_equal (ovl_image_backing_path ("/b/top.qcow2",
                                            "a-name-longer-than-the-buffer-we-give-it-is-refused-now",
                                            out, 32), -1);
  assert_non_null (strstr (ovl_error_msg (), "makes a path too long"));
}

/* Write the image R describes, whole first cluster, as DIR/NAME. */
static void
write_image (const char *dir, const char *name, const struct qrow *r)
{
  char path[4096];
  size_t len;
  unsigned char *buf = build (r, &len);
  FILE *f;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  f = fopen (path, "wb");
  assert_non_null (f);
  assert_int_equal (fwrite (buf, 1, len, f), len);
  assert_int_equal (fclose (f), 0);
  free (buf);
}

/* The chain walker on files: a big first cluster with the backing name
 * far from the start, relative names, a raw end, a loop, a missing
 * format down the chain. */
static void
test_chain (void **state)
{
  char *dir = t_mkdtemp ();
  struct ovl_dirs dirs = { &dir, 1 };
  struct ovl_image img;
  char top[4096], raw[4096];
  const struct qrow rtop = { "top", .cluster_bits = 21, .size = 32 * MiB,
                             .backing = "mid.qcow2", .backing_off = 1 * MiB + 3, .fmt = "qcow2" };
  const struct qrow rmid = { "mid", .backing = "base.raw", .fmt = "raw" };
  const struct qrow rloop = { "mid", .backing = "top.qcow2", .fmt = "qcow2" };
  const struct qrow rnofmt = { "mid", .backing = "base.raw" };

  (void) state;
  snprintf (top, sizeof top, "%s/top.qcow2", dir);
  snprintf (raw, sizeof raw, "%s/base.raw", dir);
  write_image (dir, "top.qcow2", &rtop);
  write_image (dir, "mid.qcow2", &rmid);
  assert_int_equal (truncate (top, 3 * 2 * MiB), 0);
  {
    FILE *f = fopen (raw, "wb");
    assert_non_null (f);
    assert_int_equal (fclose (f), 0);
    assert_int_equal (truncate (raw, 1 * MiB), 0);
  }
  if (ovl_image_probe_chain (&dirs, top, OVL_FMT_QCOW2, &img) != 0)
    fail_msg ("good chain refused: %s", ovl_error_msg ());
  assert_int_equal (img.size, 32 * MiB);
  assert_int_equal (img.format, OVL_FMT_QCOW2);

  write_image (dir, "mid.qcow2", &rloop);
  assert_int_equal (ovl_image_probe_chain (&dirs, top, OVL_FMT_QCOW2, &img), -1);
  assert_non_null (strstr (ovl_error_msg (), "backing chain loops at '"));

  write_image (dir, "mid.qcow2", &rnofmt);
  assert_int_equal (ovl_image_probe_chain (&dirs, top, OVL_FMT_QCOW2, &img), -1);
  assert_non_null (strstr (ovl_error_msg (), "/base.raw' has no backing format in the header of '"));

  /* The raw end is checked like a raw base. */
  write_image (dir, "mid.qcow2", &rmid);
  write_image (dir, "base.raw", &rmid);
  assert_int_equal (ovl_image_probe_chain (&dirs, top, OVL_FMT_QCOW2, &img), -1);
  assert_non_null (strstr (ovl_error_msg (), "/base.raw': declared raw but carries a qcow2/qcow header"));
  t_rmtree (dir);
  free (dir);
}

/* ovl_open_regular_at opens a regular file and nothing else, not even
 * for a moment: inotify sees no open of a FIFO, a directory or a
 * symlink's target it is pointed at. */
static void
test_open_regular_at (void **state)
{
  static const char *const others[] = { "fifo", "dir", "link" };
  char *tmp = t_mkdtemp (), *p;
  CLEANUP_CLOSE int dirfd = open (tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CLEANUP_CLOSE int in = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
  char events[4096];
  size_t i;
  int fd = -1;

  assert_true (dirfd >= 0 && in >= 0);
  assert_int_equal (mkfifoat (dirfd, "fifo", 0600), 0);
  assert_int_equal (mkdirat (dirfd, "dir", 0700), 0);
  assert_int_equal (symlinkat ("fifo", dirfd, "link"), 0);
  fd = openat (dirfd, "file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, "data", 4), 4);
  close (fd);
  for (i = 0; i < 2; i++) {
    assert_true (asprintf (&p, "%s/%s", tmp, others[i]) > 0);
    assert_true (inotify_add_watch (in, p, IN_OPEN) >= 0);
    free (p);
  }
  for (i = 0; i < sizeof others / sizeof others[0]; i++) {
    fd = -1;
    if (ovl_open_regular_at (dirfd, others[i], &fd) != 0)
      fail_msg ("%s was opened", others[i]);
    assert_int_equal (fd, -1);
  }
  assert_int_equal (ovl_open_regular_at (dirfd, "missing", &fd), 0);
  if (read (in, events, sizeof events) != -1)
    fail_msg ("something not a regular file saw an open");
  /* The file itself, readable. */
  assert_int_equal (ovl_open_regular_at (dirfd, "file", &fd), 1);
  assert_int_equal (read (fd, events, sizeof events), 4);
  assert_memory_equal (events, "data", 4);
  close (fd);
  t_rmtree (tmp);
  free (tmp);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_qcow2),
    cmocka_unit_test (test_open_regular_at),
    cmocka_unit_test (test_qcow2_prefixes),
    cmocka_unit_test (test_longest_name),
    cmocka_unit_test (test_raw),
    cmocka_unit_test (test_backing_path),
    cmocka_unit_test (test_chain),
  };
  return cmocka_run_group_tests_name ("image", tests, NULL, NULL);
}
