/* libFuzzer target: the configuration reader (lib/config.c), from
 * memory as ovl_config_load_file() hands it a file's bytes. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>

/* lib/config.h by its path: the autoconf config.h comes first on -I. */
#include "../lib/config.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_dirs (const struct ovl_dirs *d)
{
  size_t i;

  if (d->n == 0)
    abort ();
  for (i = 0; i < d->n; i++)
    if (d->dir[i][0] != '/')
      abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ovl_config *c = ovl_config_parse ("fuzz.conf", (const char *) data, size);

  if (!c)
    return 0;
  /* What the rest of the program relies on after a successful load. */
  check_dirs (&c->overlay_dirs);
  check_dirs (&c->base_dirs);
  if (c->qsd_daemons < 1 || c->qsd_daemons > 8 || c->timeout_ms < 1 ||
      c->state_dir[0] != '/' || c->qsd_socket[0] != '/')
    abort ();
  ovl_config_free (c);
  return 0;
}
