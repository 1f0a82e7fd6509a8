/* Base images: what a base is, read from its own bytes.
 *
 * A qcow2 base must carry a valid header; its virtual size comes from the
 * header (never from spawning qemu-img).  Bases with an external data file
 * or incompatible features we do not know are refused.  A raw base's size
 * is its file size, a multiple of 512, and a base declared raw that starts
 * with an image format's magic is refused: letting a guest-written raw
 * disk be probed as qcow2 is the classic way to make QEMU open any host
 * file as its backing file.
 *
 * The same goes for the base's own backing chain, read from the images'
 * headers: whatever later follows those headers (qemu-img info
 * --backing-chain, convert, an older libvirt) must stay inside base_dirs.
 * Each element is a plain path (no "json:", no protocol), inside base_dirs,
 * reached without symlinks, and its format is stated in the header that
 * names it (never probed).  A relative name is resolved against the
 * directory of the image naming it, as QEMU does, and must then be a
 * normalised path like any other.  The chain is at most OVL_CHAIN_MAX
 * images long (the base included) and must not loop.
 */
#ifndef OVL_IMAGE_H
#define OVL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"

enum ovl_format { OVL_FMT_QCOW2, OVL_FMT_RAW };

struct ovl_image {
  enum ovl_format format;
  uint64_t size;                /* virtual size in bytes */
  dev_t dev;
  ino_t ino;
  uint64_t file_size;
  struct timespec mtime;
};

/* QEMU's own limit on a backing file name in a qcow2 header. */
#define OVL_BACKING_NAME_MAX 1023
/* Images in a base's chain, the base included. */
#define OVL_CHAIN_MAX 16

/* What a header says, as far as we need it. */
struct ovl_image_header {
  uint64_t size;                /* virtual size in bytes */
  char backing[OVL_BACKING_NAME_MAX + 1];  /* backing file name, "" if none */
  bool has_backing_format;      /* the "backing file format name" extension */
  enum ovl_format backing_format;
};

const char *ovl_format_name (enum ovl_format f);
int ovl_format_parse (const char *s, enum ovl_format *out);

/* Check the base PATH of FORMAT: inside DIRS and reached without
 * symlinks, a regular file (never opening a FIFO or device) of FORMAT, and
 * its whole backing chain (see above).  OUT describes the base itself. */
int ovl_image_probe_chain (const struct ovl_dirs *dirs, const char *path,
                           enum ovl_format format, struct ovl_image *out);

/* Check the first LEN bytes of an image of FILE_SIZE bytes, declared
 * FORMAT, and say what its header holds.  No I/O (for tests and fuzzing).
 * For qcow2, LEN should be min(cluster size, file size): the backing name
 * and the header extensions are looked for in the first cluster only. */
int ovl_image_parse_header (const unsigned char *buf, size_t len, uint64_t file_size,
                            enum ovl_format format, struct ovl_image_header *out);

/* The path QEMU would open for the backing name NAME found in the header
 * of the image at PATH (absolute), into OUT of SIZE bytes: NAME itself if
 * absolute, else joined to PATH's directory.  Refuses names that are not
 * plain paths ("json:", "proto://", "proto:..."), hold control
 * characters, or are too long.  No I/O, no check against base_dirs. */
int ovl_image_backing_path (const char *path, const char *name, char *out, size_t size);

#endif
