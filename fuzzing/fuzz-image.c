/* libFuzzer target: the base image header check (lib/image.c).  The
 * input is the first bytes of a base, the file as long as the input;
 * both declared formats are tried.  Kept thin: only the call changes
 * when the header reader returns more. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>

#include "image.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint64_t vsize;

  if (ovl_image_parse_header (data, size, size, OVL_FMT_QCOW2, &vsize) == 0 &&
      (vsize == 0 || vsize % 512))
    abort ();
  if (ovl_image_parse_header (data, size, size, OVL_FMT_RAW, &vsize) == 0 &&
      vsize != size)
    abort ();
  return 0;
}
