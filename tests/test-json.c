/* The JSON stream parser, fed every sample at every chunk size and every
 * split point, plus concatenated messages and bad input.
 *
 * Each tests/data/qmp/NAME.json has NAME.expected beside it: one compact
 * message per line.  OVL_REGENERATE=1 rewrites the expected files. */
#include <config.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "testutil.h"

/* Feed DATA in chunks of CHUNK bytes (or split once at SPLIT when CHUNK
 * is 0); return the messages, one per line, or NULL on error. */
static char *
parse_chunked (const char *data, size_t len, size_t chunk, size_t split)
{
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  struct ovl_buf out = OVL_BUF_INIT;
  struct ovl_json *msg;
  size_t off = 0;
  bool first = true;

  assert_non_null (p);
  while (off < len) {
    size_t n = chunk ? chunk : (first ? split : len - off);
    first = false;
    if (n > len - off)
      n = len - off;
    if (ovl_json_parser_feed (p, data + off, n) == -1)
      goto fail;
    off += n;
    while ((msg = ovl_json_parser_next (p))) {
      char *s = ovl_json_to_string (msg);
      ovl_buf_printf (&out, "%s\n", s);
      free (s);
      ovl_json_free (msg);
    }
  }
  if (ovl_json_parser_finish (p) == -1)
    goto fail;
  ovl_json_parser_free (p);
  return ovl_buf_steal (&out);

 fail:
  ovl_json_parser_free (p);
  ovl_buf_reset (&out);
  return NULL;
}

static void
test_samples (void **state)
{
  char *dir = t_data_path ("qmp");
  DIR *d = opendir (dir);
  struct dirent *e;
  int nsamples = 0;

  assert_non_null (d);
  while ((e = readdir (d))) {
    size_t len, n, chunk, split;
    char *path, *exp_path, *data, *expected, *got, *got2;
    size_t elen = strlen (e->d_name);

    if (elen < 6 || strcmp (e->d_name + elen - 5, ".json") != 0)
      continue;
    assert_true (asprintf (&path, "%s/%s", dir, e->d_name) > 0);
    assert_true (asprintf (&exp_path, "%s/%.*s.expected", dir, (int) (elen - 5), e->d_name) > 0);
    data = t_read_file (path, &len);
    assert_non_null (data);
    got = parse_chunked (data, len, len, 0);
    if (!got)
      fail_msg ("%s: %s", e->d_name, ovl_error_msg ());
    if (getenv ("OVL_REGENERATE")) {
      FILE *f = fopen (exp_path, "w");
      fputs (got, f);
      fclose (f);
    }
    expected = t_read_file (exp_path, NULL);
    if (!expected)
      fail_msg ("%s missing (run with OVL_REGENERATE=1)", exp_path);
    assert_string_equal (got, expected);
    /* What we print reads back as the same values: a double stays a
     * double (the fuzzer's round-trip check). */
    got2 = parse_chunked (expected, strlen (expected), strlen (expected), 0);
    if (!got2)
      fail_msg ("%s: its output does not parse: %s", e->d_name, ovl_error_msg ());
    assert_string_equal (got2, expected);
    free (got2);
    n = 0;
    for (const char *c = expected; *c; c++)
      n += *c == '\n';
    assert_true (n >= 1);

    for (chunk = 1; chunk <= len; chunk++) {
      char *again = parse_chunked (data, len, chunk, 0);
      if (!again)
        fail_msg ("%s chunk %zu: %s", e->d_name, chunk, ovl_error_msg ());
      assert_string_equal (again, expected);
      free (again);
    }
    for (split = 0; split <= len; split++) {
      char *again = parse_chunked (data, len, 0, split);
      if (!again)
        fail_msg ("%s split %zu: %s", e->d_name, split, ovl_error_msg ());
      assert_string_equal (again, expected);
      free (again);
    }
    nsamples++;
    free (got); free (expected); free (data); free (path); free (exp_path);
  }
  closedir (d);
  free (dir);
  assert_true (nsamples >= 8);
}

/* Every bad sample fails with its expected message at every chunk size,
 * and the parser refuses input afterwards. */
static void
test_bad (void **state)
{
  char *tsv = t_data_path ("qmp-bad.tsv");
  char *list = t_read_file (tsv, NULL), *line, *save = NULL;
  int n = 0;

  assert_non_null (list);
  for (line = strtok_r (list, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
    char *colon = strchr (line, ':'), *rel, *path, *data;
    size_t len, chunk;

    assert_non_null (colon);
    *colon = '\0';
    assert_true (asprintf (&rel, "qmp-bad/%s", line) > 0);
    path = t_data_path (rel);
    data = t_read_file (path, &len);
    assert_non_null (data);
    for (chunk = 1; chunk <= len; chunk++) {
      char *got = parse_chunked (data, len, chunk, 0);
      if (got)
        fail_msg ("%s chunk %zu parsed: %s", line, chunk, got);
      if (!strstr (ovl_error_msg (), colon + 1))
        fail_msg ("%s chunk %zu: got '%s', want '%s'", line, chunk, ovl_error_msg (), colon + 1);
    }
    free (data); free (path); free (rel);
    n++;
  }
  free (list);
  free (tsv);
  assert_true (n >= 8);
}

static void
test_oversize (void **state)
{
  struct ovl_json_parser *p = ovl_json_parser_new (4096, 0);
  char chunk[1000];
  int i, r = 0;

  memset (chunk, 'x', sizeof chunk);
  assert_int_equal (ovl_json_parser_feed (p, "{\"return\": \"", 12), 0);
  for (i = 0; i < 10 && r == 0; i++)
    r = ovl_json_parser_feed (p, chunk, sizeof chunk);
  assert_int_equal (r, -1);
  assert_true (i <= 5);
  assert_non_null (strstr (ovl_error_msg (), "message too large"));
  /* No state survives: further input is refused, nothing is queued. */
  assert_int_equal (ovl_json_parser_feed (p, "{}", 2), -1);
  assert_null (ovl_json_parser_next (p));
  ovl_json_parser_free (p);

  /* Many small messages never add up to the cap. */
  p = ovl_json_parser_new (4096, 0);
  for (i = 0; i < 1000; i++) {
    struct ovl_json *m;
    assert_int_equal (ovl_json_parser_feed (p, "{\"return\": {}, \"id\": 1}\n", 24), 0);
    m = ovl_json_parser_next (p);
    assert_non_null (m);
    ovl_json_free (m);
  }
  ovl_json_parser_free (p);
}

static void
test_lookup_and_escape (void **state)
{
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  struct ovl_json *m;
  struct ovl_buf b = OVL_BUF_INIT;
  long long v;
  const char *text = "{\"a\": {\"b\": {\"c\": \"deep\"}, \"n\": 42}, \"l\": [1, 2]}";

  assert_int_equal (ovl_json_parser_feed (p, text, strlen (text)), 0);
  m = ovl_json_parser_next (p);
  assert_non_null (m);
  assert_string_equal (ovl_json_get_string (m, "a.b.c"), "deep");
  assert_int_equal (ovl_json_get_int (m, "a.n", &v), 0);
  assert_int_equal (v, 42);
  assert_null (ovl_json_get_string (m, "a.n"));
  assert_null (ovl_json_path (m, "a.x.y"));
  assert_int_equal (ovl_json_array_len (ovl_json_get (m, "l")), 2);
  assert_null (ovl_json_array_at (ovl_json_get (m, "l"), 2));
  ovl_json_free (m);
  ovl_json_parser_free (p);

  assert_int_equal (ovl_json_append_string (&b, "a\"b\\c\nd\x01"), 0);
  assert_string_equal (b.data, "\"a\\\"b\\\\c\\u000ad\\u0001\"");
  ovl_buf_reset (&b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_samples),
    cmocka_unit_test (test_bad),
    cmocka_unit_test (test_oversize),
    cmocka_unit_test (test_lookup_and_escape),
  };
  return cmocka_run_group_tests_name ("json", tests, NULL, NULL);
}
