/* libFuzzer target: the base image header reader (lib/image.c).  The
 * input is the first bytes of a base, the file as long as the input;
 * both declared formats are tried, and a backing name the reader gives
 * is resolved as the chain walker would. */
#include <config.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ovl_image_header h;
  char path[PATH_MAX];

  if (ovl_image_parse_header (data, size, size, OVL_FMT_QCOW2, &h) == 0) {
    if (h.size == 0 || h.size % 512 || memchr (h.backing, '\0', sizeof h.backing) == NULL)
      abort ();
    if (h.backing[0] &&
        ovl_image_backing_path ("/images/sub/base.qcow2", h.backing, path, sizeof path) == 0 &&
        path[0] != '/')
      abort ();
  }
  if (ovl_image_parse_header (data, size, size, OVL_FMT_RAW, &h) == 0 && h.size != size)
    abort ();
  return 0;
}
