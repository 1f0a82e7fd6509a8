/* libFuzzer target: the ledger reader (lib/ledger.c), from memory as
 * the loader hands it a file's bytes.  A ledger sits on the host's disk,
 * but it decides what gets deleted: a torn or hand-edited one must be
 * refused or read exactly, never misread. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ovl_ledger *l = ovl_ledger_parse ("fuzz-ledger", (const char *) data, size);
  size_t i;

  if (!l)
    return 0;
  /* Only absolute paths are ever removed; each appears once. */
  for (i = 0; i < l->n; i++) {
    if (!l->entries[i].path || l->entries[i].path[0] != '/')
      abort ();
    if (ovl_ledger_find (l, l->entries[i].path) != &l->entries[i])
      abort ();
  }
  ovl_ledger_free (l);
  return 0;
}
