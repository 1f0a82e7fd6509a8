/* Base image checks; see image.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "image.h"
#include "paths.h"
#include "util.h"

#define QCOW2_MAGIC "QFI\xfb"
/* Enough for every format magic a raw base is checked for, and for the
 * fixed part of a qcow2 header (which tells the cluster size). */
#define HEADER_BYTES 512
#define QCOW2_V2_HEADER 72
#define QCOW2_V3_HEADER 104

/* Header extensions (docs/interop/qcow2.txt). */
#define QCOW2_EXT_END             0x00000000U
#define QCOW2_EXT_BACKING_FORMAT  0xe2792acaU
#define QCOW2_EXT_DATA_FILE       0x44415441U

/* Incompatible feature bits of qcow2 v3 (docs/interop/qcow2.txt). */
#define QCOW2_INCOMPAT_DIRTY        (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN        0x1fULL

/* Other formats' magic that must not appear at the start of a raw base. */
static const struct { const char *name; const char *magic; size_t len; size_t off; } magics[] = {
  { "qcow2/qcow", QCOW2_MAGIC, 4, 0 },
  { "QED", "QED\0", 4, 0 },
  { "VMDK", "KDMV", 4, 0 },
  { "VDI", "\x7f\x10\xda\xbe", 4, 64 },
  { "VHDX", "vhdxfile", 8, 0 },
  { "LUKS", "LUKS\xba\xbe", 6, 0 },
};

const char *
ovl_format_name (enum ovl_format f)
{
  return f == OVL_FMT_RAW ? "raw" : "qcow2";
}

int
ovl_format_parse (const char *s, enum ovl_format *out)
{
  if (strcmp (s, "qcow2") == 0)
    *out = OVL_FMT_QCOW2;
  else if (strcmp (s, "raw") == 0)
    *out = OVL_FMT_RAW;
  else {
    ovl_error ("unsupported backing format '%s' (qcow2 or raw)", s);
    return -1;
  }
  return 0;
}

static uint32_t
be32 (const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint64_t
be64 (const unsigned char *p)
{
  return (uint64_t) be32 (p) << 32 | be32 (p + 4);
}

/* S (at most LEN bytes, or up to its NUL) made safe for a message: a
 * header is attacker-controlled bytes, and a message ends up in logs and
 * on terminals.  Everything but printable ASCII becomes \xNN. */
static const char *
escape (const char *s, size_t len, char *buf, size_t size)
{
  size_t o = 0, i;

  for (i = 0; i < len && s[i] && o + 5 <= size; i++) {
    unsigned char c = (unsigned char) s[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      buf[o++] = (char) c;
    else
      o += (size_t) snprintf (buf + o, size - o, "\\x%02x", c);
  }
  buf[o] = '\0';
  return buf;
}
#define ESCAPED_MAX (4 * OVL_BACKING_NAME_MAX + 1)

static int
parse_raw (const unsigned char *buf, size_t len, uint64_t file_size,
           struct ovl_image_header *out)
{
  size_t i;

  for (i = 0; i < sizeof magics / sizeof magics[0]; i++)
    if (len >= magics[i].off + magics[i].len &&
        memcmp (buf + magics[i].off, magics[i].magic, magics[i].len) == 0) {
      ovl_error ("declared raw but carries a %s header", magics[i].name);
      return -1;
    }
  if (file_size == 0 || file_size % 512) {
    ovl_error ("raw size %llu is not a positive multiple of 512",
               (unsigned long long) file_size);
    return -1;
  }
  out->size = file_size;
  return 0;
}

/* The fields of a qcow2 header we look at. */
struct qcow2 {
  uint32_t version, cluster_bits, hdr_len, backing_len;
  uint64_t cluster, incompat, backing_off;
};

static int
parse_qcow2_fixed (const unsigned char *buf, size_t len, struct qcow2 *h,
                   struct ovl_image_header *out)
{
  if (len < 4 || memcmp (buf, QCOW2_MAGIC, 4) != 0) {
    ovl_error ("not a qcow2 image (bad magic)");
    return -1;
  }
  if (len < QCOW2_V2_HEADER) {
    ovl_error ("truncated qcow2 header");
    return -1;
  }
  h->version = be32 (buf + 4);
  h->backing_off = be64 (buf + 8);
  h->backing_len = be32 (buf + 16);
  h->cluster_bits = be32 (buf + 20);
  out->size = be64 (buf + 24);
  if (h->version != 2 && h->version != 3) {
    ovl_error ("unsupported qcow2 version %u", h->version);
    return -1;
  }
  if (h->cluster_bits < 9 || h->cluster_bits > 21) {
    ovl_error ("invalid qcow2 cluster size 2^%u", h->cluster_bits);
    return -1;
  }
  h->cluster = UINT64_C (1) << h->cluster_bits;
  if (out->size == 0 || out->size % 512 || out->size > (UINT64_C (1) << 61)) {
    ovl_error ("invalid qcow2 virtual size %llu", (unsigned long long) out->size);
    return -1;
  }
  h->hdr_len = QCOW2_V2_HEADER;
  h->incompat = 0;
  if (h->version == 2)
    return 0;
  if (len < QCOW2_V3_HEADER) {
    ovl_error ("truncated qcow2 v3 header");
    return -1;
  }
  h->incompat = be64 (buf + 72);
  h->hdr_len = be32 (buf + 100);
  if (h->hdr_len < QCOW2_V3_HEADER || h->hdr_len > h->cluster) {
    ovl_error ("invalid qcow2 header length %u", h->hdr_len);
    return -1;
  }
  if (h->hdr_len > len) {
    ovl_error ("truncated qcow2 v3 header (header length %u)", h->hdr_len);
    return -1;
  }
  return 0;
}

/* Incompatible features: a dirty image (lazy refcounts not yet written
 * back) is fine to read; compression types and extended L2 entries are
 * QEMU's business. */
static int
check_incompat (uint64_t incompat)
{
  if (incompat & QCOW2_INCOMPAT_DATA_FILE) {
    ovl_error ("qcow2 base has an external data file");
    return -1;
  }
  if (incompat & QCOW2_INCOMPAT_CORRUPT) {
    ovl_error ("qcow2 base is marked corrupt");
    return -1;
  }
  if (incompat & ~QCOW2_INCOMPAT_KNOWN) {
    ovl_error ("qcow2 base has unknown incompatible features 0x%llx",
               (unsigned long long) (incompat & ~QCOW2_INCOMPAT_KNOWN));
    return -1;
  }
  return 0;
}

/* The backing file name: QEMU reads it only from the first cluster and
 * takes an empty one (or offset 0) as none. */
static int
parse_backing_name (const unsigned char *buf, size_t len, uint64_t file_size,
                    const struct qcow2 *h, struct ovl_image_header *out)
{
  uint64_t off = h->backing_off;
  uint32_t n = h->backing_len;

  if (off == 0 || n == 0)
    return 0;
  if (n > OVL_BACKING_NAME_MAX) {
    ovl_error ("backing file name of %u bytes is too long (at most %d)", n, OVL_BACKING_NAME_MAX);
    return -1;
  }
  if (off < h->hdr_len) {
    ovl_error ("backing file name at offset %llu overlaps the header",
               (unsigned long long) off);
    return -1;
  }
  if (off > h->cluster || n > h->cluster - off) {
    ovl_error ("backing file name at offset %llu (%u bytes) is beyond the first cluster",
               (unsigned long long) off, n);
    return -1;
  }
  if (off + n > file_size) {
    ovl_error ("backing file name at offset %llu (%u bytes) is beyond the end of the file",
               (unsigned long long) off, n);
    return -1;
  }
  if (off + n > len) {
    ovl_error ("truncated qcow2 header (backing file name)");
    return -1;
  }
  if (memchr (buf + off, '\0', n)) {
    ovl_error ("backing file name contains a NUL byte");
    return -1;
  }
  memcpy (out->backing, buf + off, n);
  out->backing[n] = '\0';
  return 0;
}

static int
parse_backing_format (const unsigned char *p, uint32_t n, struct ovl_image_header *out)
{
  char fmt[16], esc[4 * 16 + 1];

  if (out->has_backing_format) {
    ovl_error ("two backing format header extensions");
    return -1;
  }
  if (n >= sizeof fmt || memchr (p, '\0', n)) {
    ovl_error ("invalid backing format header extension '%s'",
               escape ((const char *) p, n < 16 ? n : 16, esc, sizeof esc));
    return -1;
  }
  memcpy (fmt, p, n);
  fmt[n] = '\0';
  if (strcmp (fmt, "qcow2") == 0)
    out->backing_format = OVL_FMT_QCOW2;
  else if (strcmp (fmt, "raw") == 0)
    out->backing_format = OVL_FMT_RAW;
  else {
    ovl_error ("unsupported backing format '%s' in the header (qcow2 or raw)",
               escape (fmt, n, esc, sizeof esc));
    return -1;
  }
  out->has_backing_format = true;
  return 0;
}

/* Header extensions run from the end of the header to the backing file
 * name (or the end of the first cluster), each a be32 type, a be32
 * length and the data padded to 8 bytes, until a type 0. */
static int
parse_extensions (const unsigned char *buf, size_t len, const struct qcow2 *h,
                  struct ovl_image_header *out)
{
  uint64_t end = h->backing_off ? h->backing_off : h->cluster;
  uint64_t off = h->hdr_len;

  while (off < end) {
    uint32_t type, n;

    if (end - off < 8 || off + 8 > len) {
      ovl_error ("truncated qcow2 header extension at offset %llu", (unsigned long long) off);
      return -1;
    }
    type = be32 (buf + off);
    n = be32 (buf + off + 4);
    if (type == QCOW2_EXT_END)
      return 0;
    if (n > end - off - 8) {
      ovl_error ("qcow2 header extension 0x%08x at offset %llu: length %u overruns the header",
                 type, (unsigned long long) off, n);
      return -1;
    }
    if (off + 8 + n > len) {
      ovl_error ("truncated qcow2 header extension at offset %llu", (unsigned long long) off);
      return -1;
    }
    if (type == QCOW2_EXT_DATA_FILE) {
      ovl_error ("qcow2 base names an external data file");
      return -1;
    }
    /* The format of a backing file we do not have does not matter. */
    if (type == QCOW2_EXT_BACKING_FORMAT && out->backing[0] &&
        parse_backing_format (buf + off + 8, n, out) == -1)
      return -1;
    off += 8 + (((uint64_t) n + 7) & ~UINT64_C (7));
  }
  return 0;
}

int
ovl_image_parse_header (const unsigned char *buf, size_t len, uint64_t file_size,
                        enum ovl_format format, struct ovl_image_header *out)
{
  struct qcow2 h;

  memset (out, 0, sizeof *out);
  if (format == OVL_FMT_RAW)
    return parse_raw (buf, len, file_size, out);
  if (parse_qcow2_fixed (buf, len, &h, out) == -1 ||
      check_incompat (h.incompat) == -1 ||
      parse_backing_name (buf, len, file_size, &h, out) == -1 ||
      parse_extensions (buf, len, &h, out) == -1)
    return -1;
  return 0;
}

int
ovl_image_backing_path (const char *path, const char *name, char *out, size_t size)
{
  char esc[ESCAPED_MAX];
  const char *slash = strrchr (path, '/');
  size_t i, dlen;
  int n;

  for (i = 0; name[i]; i++)
    if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f) {
      ovl_error ("backing file '%s' has control characters in its name",
                 escape (name, OVL_BACKING_NAME_MAX, esc, sizeof esc));
      return -1;
    }
  /* QEMU reads "proto:..." before any '/' as a protocol (nbd:, fat:,
   * json:), and "proto://" anywhere is nothing we would call a path. */
  if ((name[0] != '/' && name[strcspn (name, ":/")] == ':') || strstr (name, "://")) {
    ovl_error ("backing file '%s' is not a plain path",
               escape (name, OVL_BACKING_NAME_MAX, esc, sizeof esc));
    return -1;
  }
  if (name[0] == '/')
    n = snprintf (out, size, "%s", name);
  else {
    dlen = slash ? (size_t) (slash - path) : 0;
    n = snprintf (out, size, "%.*s/%s", (int) dlen, path, name);
  }
  if (n < 0 || (size_t) n >= size) {
    ovl_error ("backing file '%s' makes a path too long",
               escape (name, OVL_BACKING_NAME_MAX, esc, sizeof esc));
    return -1;
  }
  return 0;
}

/* Read the first LEN bytes of FD (WHAT PATH, for errors) into *BUF
 * (reallocated); the count, or -1 with the error set. */
static ssize_t
read_header (int fd, unsigned char **buf, size_t len, const char *what, const char *path)
{
  unsigned char *p = realloc (*buf, len);
  ssize_t n;

  if (!p) {
    ovl_error ("out of memory");
    return -1;
  }
  *buf = p;
  do
    n = pread (fd, p, len, 0);
  while (n == -1 && errno == EINTR);
  if (n == -1)
    ovl_error ("%s '%s': read: %m", what, path);
  return n;
}

/* How much of the file the parser should see: a qcow2 header's first
 * bytes tell how big its first cluster is (at most 2 MiB). */
static size_t
header_want (const unsigned char *buf, size_t len, enum ovl_format format, off_t file_size)
{
  uint32_t bits;

  if (format != OVL_FMT_QCOW2 || len < 24 || memcmp (buf, QCOW2_MAGIC, 4) != 0)
    return len;
  bits = be32 (buf + 20);
  if (bits < 9 || bits > 21)
    return len;
  return (uint64_t) file_size < (UINT64_C (1) << bits) ? (size_t) file_size : (size_t) 1 << bits;
}

/* Open NAME in DIRFD, check it is a regular file and read the first
 * cluster's worth of its header (at most 2 MiB).  Messages say "WHAT
 * 'PATH': ...". */
static int
probe (int dirfd, const char *name, const char *what, const char *path,
       enum ovl_format format, struct ovl_image *out, struct ovl_image_header *hdr)
{
  CLEANUP_CLOSE int fd = -1;
  CLEANUP_FREE unsigned char *buf = NULL;
  struct stat st, st2;
  size_t want;
  ssize_t n;
  int r;

  /* Look before opening: opening a device or FIFO can block or have
   * side effects. */
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
    ovl_error ("%s '%s': %m", what, path);
    return -1;
  }
  if (S_ISLNK (st.st_mode)) {
    ovl_error ("%s '%s' is a symbolic link", what, path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    ovl_error ("%s '%s' is not a regular file", what, path);
    return -1;
  }
  /* Opened through the inode pinned as a regular file: one swapped in
   * meanwhile is not opened at all. */
  r = ovl_open_regular_at (dirfd, name, &fd);
  if (r == -1) {
    ovl_error ("%s '%s': %m", what, path);
    return -1;
  }
  if (r == 0) {
    ovl_error ("%s '%s' changed while it was checked", what, path);
    return -1;
  }
  if (fstat (fd, &st2) == -1) {
    ovl_error ("%s '%s': fstat: %m", what, path);
    return -1;
  }
  if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino || !S_ISREG (st2.st_mode)) {
    ovl_error ("%s '%s' changed while it was checked", what, path);
    return -1;
  }
  n = read_header (fd, &buf, HEADER_BYTES, what, path);
  want = n > 0 ? header_want (buf, (size_t) n, format, st2.st_size) : 0;
  if (n > 0 && want > (size_t) n)
    n = read_header (fd, &buf, want, what, path);
  if (n == -1)
    return -1;
  if (ovl_image_parse_header (buf, (size_t) n, (uint64_t) st2.st_size, format, hdr) == -1) {
    ovl_error_prefix ("%s '%s': ", what, path);
    return -1;
  }
  out->format = format;
  out->size = hdr->size;
  out->dev = st2.st_dev;
  out->ino = st2.st_ino;
  out->file_size = (uint64_t) st2.st_size;
  out->mtime = st2.st_mtim;
  return 0;
}

/* One element of the chain after the base: path checks, then the probe.
 * HDR is the header of the previous element, naming this one. */
static int
probe_backing (const struct ovl_dirs *dirs, const char *prev, struct ovl_image_header *hdr,
               char *path, size_t size, struct ovl_image *img)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;
  char esc[ESCAPED_MAX];
  enum ovl_format format = hdr->backing_format;

  if (ovl_image_backing_path (prev, hdr->backing, path, size) == -1)
    return -1;
  if (!hdr->has_backing_format) {
    ovl_error ("backing file '%s' has no backing format in the header of '%s'",
               escape (path, size, esc, sizeof esc), prev);
    return -1;
  }
  if (ovl_path_open_parent (path, dirs, "backing file", false, &dirfd, &name) == -1)
    return -1;
  return probe (dirfd, name, "backing file", path, format, img, hdr);
}

int
ovl_image_probe_chain (const struct ovl_dirs *dirs, const char *path,
                       enum ovl_format format, struct ovl_image *out)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;
  struct ovl_image_header hdr;
  struct ovl_image seen[OVL_CHAIN_MAX], img;
  char cur[2][PATH_MAX];
  size_t depth, j;

  if (ovl_path_open_parent (path, dirs, "base", false, &dirfd, &name) == -1 ||
      probe (dirfd, name, "base", path, format, out, &hdr) == -1)
    return -1;
  seen[0] = *out;
  snprintf (cur[0], sizeof cur[0], "%s", path);
  for (depth = 1; hdr.backing[0]; depth++) {
    char *prev = cur[(depth - 1) % 2], *next = cur[depth % 2];

    if (depth == OVL_CHAIN_MAX) {
      ovl_error ("base '%s': backing chain deeper than %d", path, OVL_CHAIN_MAX);
      return -1;
    }
    if (probe_backing (dirs, prev, &hdr, next, sizeof cur[0], &img) == -1) {
      ovl_error_prefix ("base '%s': ", path);
      return -1;
    }
    for (j = 0; j < depth; j++)
      if (seen[j].dev == img.dev && seen[j].ino == img.ino) {
        ovl_error ("base '%s': backing chain loops at '%s'", path, next);
        return -1;
      }
    seen[depth] = img;
  }
  return 0;
}
