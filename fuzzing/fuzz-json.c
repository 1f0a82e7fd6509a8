/* libFuzzer target: the JSON stream parser (lib/json.c), fed in chunks.
 *
 * The first NPLAN bytes are the chunking plan (byte B: feed B bytes, 0:
 * the rest at once); the remaining bytes are the stream.  It goes through
 * a parser with tiny caps, so that inputs of fuzzer size reach the size
 * and depth limits, and through one with the defaults.  Every message
 * drained is serialised, parsed again in one piece and serialised again:
 * the two strings must be equal, or the QMP we log is not what we read.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define NPLAN 8

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
round_trip (const struct ovl_json *v, unsigned max_depth)
{
  char *s = ovl_json_to_string (v), *s2;
  struct ovl_json_parser *p;
  struct ovl_json *v2;

  if (!s)
    abort ();
  /* Escapes may make the text longer than what was fed: no size cap. */
  p = ovl_json_parser_new (strlen (s) + 1, max_depth);
  if (!p || ovl_json_parser_feed (p, s, strlen (s)) == -1 ||
      ovl_json_parser_finish (p) == -1)
    abort ();
  v2 = ovl_json_parser_next (p);
  if (!v2 || ovl_json_parser_next (p))
    abort ();
  s2 = ovl_json_to_string (v2);
  if (!s2 || strcmp (s, s2) != 0)
    abort ();
  free (s2);
  ovl_json_free (v2);
  ovl_json_parser_free (p);
  free (s);
}

static void
drain (struct ovl_json_parser *p, unsigned max_depth)
{
  struct ovl_json *v;

  while ((v = ovl_json_parser_next (p))) {
    if (v->type != OVL_JSON_OBJECT && v->type != OVL_JSON_ARRAY)
      abort ();
    round_trip (v, max_depth);
    ovl_json_free (v);
  }
}

static void
run (const uint8_t *plan, const uint8_t *data, size_t size,
     size_t max_bytes, unsigned max_depth)
{
  struct ovl_json_parser *p = ovl_json_parser_new (max_bytes, max_depth);
  size_t off = 0, i = 0;
  int r = 0;

  if (!p)
    abort ();
  while (off < size && r == 0) {
    size_t n = plan[i++ % NPLAN];

    if (n == 0 || n > size - off)
      n = size - off;
    r = ovl_json_parser_feed (p, data + off, n);
    off += n;
    drain (p, max_depth ? max_depth : OVL_JSON_DEFAULT_MAX_DEPTH);
  }
  if (r == 0)
    r = ovl_json_parser_finish (p);
  /* A failed parser stays failed, and nothing is left half-built. */
  if (r == -1 && (ovl_json_parser_feed (p, "{}", 2) != -1 ||
                  ovl_json_parser_in_message (p) || ovl_json_parser_next (p)))
    abort ();
  ovl_json_parser_free (p);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < NPLAN)
    return 0;
  run (data, data + NPLAN, size - NPLAN, 256, 4);
  run (data, data + NPLAN, size - NPLAN, 0, 0);
  return 0;
}
