/* The JSON stream parser, fed every sample at every chunk size and every
 * split point, plus concatenated messages, bad input (tests/data/qmp-bad.tsv:
 * file, then the expected error), the byte cap wherever the bytes stand,
 * and exact 64-bit integers.
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
#include <sys/mman.h>
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
    expected = t_golden (exp_path, got);
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

#define MiB (1024 * 1024)

/* Whatever a value is and wherever it stands, the bytes fed since the last
 * message closed are capped: fed 1 MiB at a time, input that never closes
 * a message is refused by the first feed that takes it past the cap. */
static const struct {
  const char *what, *head;
  char fill;
  size_t cap;
} cap_cases[] = {
  { "top-level string", "\"", 'x', 4096 },
  { "top-level string", "\"", 'x', 5 * MiB / 2 },
  { "top-level number", "1", '1', 4096 },
  { "top-level number", "-", '7', 3 * MiB / 2 },
  { "whitespace", " ", ' ', 4096 },
  { "whitespace after a message", "{}", ' ', 2 * MiB + 1 },
  { "string in an object", "{\"return\": \"", 'x', 4096 },
  { "string in an object", "{\"return\": \"", 'x', 3 * MiB - 1 },
};

static void
test_cap_every_value (void **state)
{
  char *chunk = malloc (MiB);
  size_t c;

  assert_non_null (chunk);
  for (c = 0; c < sizeof cap_cases / sizeof cap_cases[0]; c++) {
    struct ovl_json_parser *p = ovl_json_parser_new (cap_cases[c].cap, 0);
    size_t head = strlen (cap_cases[c].head), fed = 0, i;
    int r = 0;

    memset (chunk, cap_cases[c].fill, MiB);
    memcpy (chunk, cap_cases[c].head, head);
    for (i = 0; i < 32 && r == 0; i++) {
      r = ovl_json_parser_feed (p, chunk, MiB);
      fed += MiB;
      ovl_json_free (ovl_json_parser_next (p));
      memset (chunk, cap_cases[c].fill, head);
    }
    if (r != -1)
      fail_msg ("%s, cap %zu: 32 MiB accepted", cap_cases[c].what, cap_cases[c].cap);
    /* The failing feed is the first one past the cap. */
    if (fed - MiB > cap_cases[c].cap || fed <= cap_cases[c].cap)
      fail_msg ("%s, cap %zu: refused after %zu bytes", cap_cases[c].what, cap_cases[c].cap, fed);
    if (!strstr (ovl_error_msg (), "message too large"))
      fail_msg ("%s, cap %zu: %s", cap_cases[c].what, cap_cases[c].cap, ovl_error_msg ());
    ovl_json_parser_free (p);
  }
  free (chunk);
}

/* One huge feed is refused about max_bytes in: only the first 2 * cap
 * bytes of a 100 MiB buffer are readable, so reading on would crash. */
static void
test_cap_inside_one_feed (void **state)
{
  static const struct { const char *head; char fill; } cases[] = {
    { "\"", 'x' }, { "{\"return\": \"", 'x' }, { "[", ' ' }, { " ", ' ' }, { "123", '0' },
  };
  const size_t cap = 64 * 1024, len = 100 * MiB;
  char *big = mmap (NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  size_t c;

  assert_true (big != MAP_FAILED);
  assert_int_equal (mprotect (big, 2 * cap, PROT_READ | PROT_WRITE), 0);
  for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    struct ovl_json_parser *p = ovl_json_parser_new (cap, 0);
    memset (big, cases[c].fill, 2 * cap);
    memcpy (big, cases[c].head, strlen (cases[c].head));
    assert_int_equal (ovl_json_parser_feed (p, big, len), -1);
    assert_non_null (strstr (ovl_error_msg (), "message too large"));
    ovl_json_parser_free (p);
  }
  munmap (big, len);
}

/* Messages queued and not taken count against the cap too, so one feed
 * of many small messages cannot pile them up without limit. */
static void
test_cap_unread (void **state)
{
  struct ovl_json_parser *p = ovl_json_parser_new (4096, 0);
  size_t len = 1024 * 1024, i, n = 0;
  char *many = malloc (len);
  struct ovl_json *m;

  assert_non_null (many);
  for (i = 0; i < len; i += 2)
    memcpy (many + i, "{}", 2);
  assert_int_equal (ovl_json_parser_feed (p, many, len), -1);
  assert_non_null (strstr (ovl_error_msg (), "too much input unread"));
  ovl_json_parser_free (p);

  /* Taken as they come, the same messages all pass. */
  p = ovl_json_parser_new (4096, 0);
  for (i = 0; i < len; i += 1024) {
    assert_int_equal (ovl_json_parser_feed (p, many + i, 1024), 0);
    while ((m = ovl_json_parser_next (p))) {
      ovl_json_free (m);
      n++;
    }
  }
  assert_int_equal (ovl_json_parser_finish (p), 0);
  assert_int_equal (n, len / 2);
  ovl_json_parser_free (p);
  free (many);
}

/* Unsigned 64-bit integers are read and written exactly; the getters
 * refuse what does not fit their type. */
static void
test_u64 (void **state)
{
  const char *text = "{\"addr\": 12055409292258155293, \"max\": 18446744073709551615, "
    "\"min\": -9223372036854775808, \"small\": 7, \"neg\": -1, \"d\": 1.5}";
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  struct ovl_json *m;
  uint64_t u;
  long long i;
  char *s;

  assert_int_equal (ovl_json_parser_feed (p, text, strlen (text)), 0);
  assert_int_equal (ovl_json_parser_finish (p), 0);
  m = ovl_json_parser_next (p);
  assert_non_null (m);
  assert_int_equal (ovl_json_get_u64 (m, "addr", &u), 0);
  assert_true (u == 12055409292258155293ULL);
  assert_int_equal (ovl_json_get_int (m, "addr", &i), -1);
  assert_int_equal (ovl_json_get_u64 (m, "max", &u), 0);
  assert_true (u == UINT64_MAX);
  assert_int_equal (ovl_json_get_int (m, "min", &i), 0);
  assert_true (i == INT64_MIN);
  assert_int_equal (ovl_json_get_u64 (m, "min", &u), -1);
  assert_int_equal (ovl_json_get_u64 (m, "neg", &u), -1);
  assert_int_equal (ovl_json_get_u64 (m, "small", &u), 0);
  assert_true (u == 7);
  assert_int_equal (ovl_json_get_int (m, "small", &i), 0);
  assert_int_equal (i, 7);
  assert_int_equal (ovl_json_get_u64 (m, "d", &u), -1);
  assert_int_equal (ovl_json_get_int (m, "d", &i), -1);
  s = ovl_json_to_string (m);
  assert_string_equal (s, "{\"addr\":12055409292258155293,\"max\":18446744073709551615,"
                       "\"min\":-9223372036854775808,\"small\":7,\"neg\":-1,\"d\":1.5}");
  free (s);
  ovl_json_free (m);
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

/* The builder: every member type, nesting, order kept, and the
 * failures, each with its message and nothing leaked (valgrind). */
static char *
built (struct ovl_json *v)
{
  char *s = v ? ovl_json_to_string (v) : NULL;
  ovl_json_free (v);
  return s;
}

static void
test_build (void **state)
{
  char *s;

  s = built (ovl_json_object_build (
    "s:job-id", "ovl-1",
    "o:options", ovl_json_object_build (
      "s:driver", "qcow2",
      "o:cache", ovl_json_object_build ("b:no-flush", 1, NULL),
      "u:size", (uint64_t) 67108864,
      "u:max", UINT64_MAX,
      "S:absent", (const char *) NULL,
      "s:path", "/a \"b\"\\\x01",
      "b:off", 0,
      NULL),
    NULL));
  assert_non_null (s);
  assert_string_equal (s, "{\"job-id\":\"ovl-1\",\"options\":{\"driver\":\"qcow2\","
                       "\"cache\":{\"no-flush\":true},\"size\":67108864,"
                       "\"max\":18446744073709551615,\"path\":\"/a \\\"b\\\"\\\\\\u0001\","
                       "\"off\":false}}");
  free (s);
  s = built (ovl_json_object_build (NULL));
  assert_string_equal (s, "{}");
  free (s);

  /* A NULL string, a failed child, bad UTF-8, a bad spec: NULL, said why. */
  assert_null (ovl_json_object_build ("s:id", (const char *) NULL, NULL));
  assert_string_equal (ovl_error_msg (), "JSON member 'id': no string");
  assert_null (ovl_json_object_build ("o:a", ovl_json_object_build ("s:x", "\xff", NULL),
                                      "o:b", ovl_json_object_build ("s:y", "ok", NULL), NULL));
  assert_string_equal (ovl_error_msg (), "JSON member 'x': not valid UTF-8");
  assert_null (ovl_json_object_build ("q:x", 1, NULL));
  assert_string_equal (ovl_error_msg (), "JSON member 'q:x': expected TYPE:NAME, TYPE one of s S u b o");
  assert_null (ovl_json_object_build ("size", NULL));
  assert_string_equal (ovl_error_msg (), "JSON member 'size': expected TYPE:NAME, TYPE one of s S u b o");
  assert_true (ovl_utf8_valid ("\xc3\xa9t\xc3\xa9"));
  assert_false (ovl_utf8_valid ("\xc0\xaf"));          /* overlong '/' */
  assert_false (ovl_utf8_valid ("\xed\xa0\x80"));     /* a surrogate */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_samples),
    cmocka_unit_test (test_bad),
    cmocka_unit_test (test_oversize),
    cmocka_unit_test (test_cap_every_value),
    cmocka_unit_test (test_cap_inside_one_feed),
    cmocka_unit_test (test_cap_unread),
    cmocka_unit_test (test_u64),
    cmocka_unit_test (test_lookup_and_escape),
    cmocka_unit_test (test_build),
  };
  return cmocka_run_group_tests_name ("json", tests, NULL, NULL);
}
