/* Base image checks; see image.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "image.h"

#define QCOW2_MAGIC "QFI\xfb"
#define HEADER_BYTES 512

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

int
ovl_image_parse_header (const unsigned char *buf, size_t len, uint64_t file_size,
                        enum ovl_format format, uint64_t *size)
{
  uint32_t version, cluster_bits, hdr_len;
  uint64_t incompat;
  size_t i;

  if (format == OVL_FMT_RAW) {
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
    *size = file_size;
    return 0;
  }

  if (len < 4 || memcmp (buf, QCOW2_MAGIC, 4) != 0) {
    ovl_error ("not a qcow2 image (bad magic)");
    return -1;
  }
  if (len < 72) {
    ovl_error ("truncated qcow2 header");
    return -1;
  }
  version = be32 (buf + 4);
  cluster_bits = be32 (buf + 20);
  *size = be64 (buf + 24);
  if (version != 2 && version != 3) {
    ovl_error ("unsupported qcow2 version %u", version);
    return -1;
  }
  if (cluster_bits < 9 || cluster_bits > 21) {
    ovl_error ("invalid qcow2 cluster size 2^%u", cluster_bits);
    return -1;
  }
  if (*size == 0 || *size % 512 || *size > (UINT64_C (1) << 61)) {
    ovl_error ("invalid qcow2 virtual size %llu", (unsigned long long) *size);
    return -1;
  }
  if (version == 3) {
    if (len < 104) {
      ovl_error ("truncated qcow2 v3 header");
      return -1;
    }
    incompat = be64 (buf + 72);
    hdr_len = be32 (buf + 100);
    if (hdr_len < 104 || hdr_len > len) {
      ovl_error ("invalid qcow2 header length %u", hdr_len);
      return -1;
    }
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
  }
  return 0;
}

int
ovl_image_probe (int dirfd, const char *name, const char *path,
                 enum ovl_format format, struct ovl_image *out)
{
  CLEANUP_CLOSE int fd = -1;
  unsigned char buf[HEADER_BYTES];
  struct stat st, st2;
  ssize_t n;

  /* Look before opening: opening a device or FIFO can block or have
   * side effects. */
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
    ovl_error ("base '%s': %m", path);
    return -1;
  }
  if (S_ISLNK (st.st_mode)) {
    ovl_error ("base '%s' is a symbolic link", path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    ovl_error ("base '%s' is not a regular file", path);
    return -1;
  }
  fd = openat (dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd == -1) {
    ovl_error ("base '%s': %m", path);
    return -1;
  }
  if (fstat (fd, &st2) == -1 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino ||
      !S_ISREG (st2.st_mode)) {
    ovl_error ("base '%s' changed while it was checked", path);
    return -1;
  }
  do
    n = pread (fd, buf, sizeof buf, 0);
  while (n == -1 && errno == EINTR);
  if (n == -1) {
    ovl_error ("base '%s': read: %m", path);
    return -1;
  }
  if (ovl_image_parse_header (buf, (size_t) n, (uint64_t) st2.st_size, format,
                              &out->size) == -1) {
    ovl_error_prefix ("base '%s': ", path);
    return -1;
  }
  out->format = format;
  out->dev = st2.st_dev;
  out->ino = st2.st_ino;
  out->file_size = (uint64_t) st2.st_size;
  out->mtime = st2.st_mtim;
  return 0;
}
