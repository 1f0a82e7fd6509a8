/* Base images: what a base is, read from its own bytes.
 *
 * A qcow2 base must carry a valid header; its virtual size comes from the
 * header (never from spawning qemu-img).  Bases with an external data file
 * or incompatible features we do not know are refused.  A raw base's size
 * is its file size, a multiple of 512, and a base declared raw that starts
 * with an image format's magic is refused: letting a guest-written raw
 * disk be probed as qcow2 is the classic way to make QEMU open any host
 * file as its backing file.
 */
#ifndef OVL_IMAGE_H
#define OVL_IMAGE_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum ovl_format { OVL_FMT_QCOW2, OVL_FMT_RAW };

struct ovl_image {
  enum ovl_format format;
  uint64_t size;                /* virtual size in bytes */
  dev_t dev;
  ino_t ino;
  uint64_t file_size;
  struct timespec mtime;
};

const char *ovl_format_name (enum ovl_format f);
int ovl_format_parse (const char *s, enum ovl_format *out);

/* Open NAME in DIRFD (no symlinks, never blocking on a FIFO or device)
 * and check it is a regular file of FORMAT.  PATH is for messages. */
int ovl_image_probe (int dirfd, const char *name, const char *path,
                     enum ovl_format format, struct ovl_image *out);

/* The same on the first bytes of an image (for tests and fuzzing). */
int ovl_image_parse_header (const unsigned char *buf, size_t len, uint64_t file_size,
                            enum ovl_format format, uint64_t *size);

#endif
