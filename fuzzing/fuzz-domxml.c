/* libFuzzer target: the domain XML reader (lib/domxml.c), the one parser
 * of bytes that whoever may define a domain controls; then the plan of
 * what it accepted. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>

#include "domxml.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct ovl_config *cfg;
  struct ovl_domain *d;
  char *plan;

  /* The defaults, as on a host with no configuration file. */
  if (!cfg && !(cfg = ovl_config_load_file ("/nonexistent", false)))
    abort ();
  d = ovl_domxml_parse ((const char *) data, size, cfg);
  if (!d)
    return 0;
  if (!(plan = ovl_domain_plan (d)))
    abort ();
  free (plan);
  ovl_domain_free (d);
  return 0;
}
