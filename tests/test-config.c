/* The configuration reader: a table of texts through ovl_config_parse()
 * with the error each must give (or the value it must set), then what
 * ovl_config_load_file() accepts as a file: a regular file or a symlink
 * to one, at most 1 MiB; a FIFO is refused without blocking. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

/* lib/config.h by its path: the autoconf config.h comes first on -I. */
#include "../lib/config.h"
#include "error.h"
#include "testutil.h"

/* TEXT (which may hold a NUL), and the error it gives, or NULL and the
 * timeout_ms it must set. */
#define T(s) s, sizeof s - 1
static const struct {
  const char *text;
  size_t len;
  const char *error;
  unsigned timeout_ms;
} cases[] = {
  { T (""), NULL, 30000 },
  { T ("# only a comment\n\n   \n"), NULL, 30000 },
  { T ("timeout_ms = 1500"), NULL, 1500 },                 /* no final newline */
  { T ("timeout_ms=7 # why\ntimeout_ms = 8\n"), NULL, 8 }, /* later lines win */
  { T ("\n\ncolour = blue\n"), "t.conf:3: colour: unknown key 'colour'", 0 },
  { T ("no equals sign\n"), "t.conf:1: expected 'key = value'", 0 },
  { T ("timeout_ms = 0\n"), "t.conf:1: timeout_ms: 0 is not between 1 and 3600000", 0 },
  { T ("qsd_spawn = maybe\n"), "t.conf:1: qsd_spawn: 'maybe' is not on/off", 0 },
  { T ("state_dir = /a/\n"), "t.conf:1: state_dir: '/a/' is not a normalised absolute path", 0 },
  /* A NUL byte used to be read as part of the line by fgets() and cut
   * the line short; it is refused. */
  { T ("timeout_ms = 5\0junk\n"), "t.conf:1: NUL byte in line", 0 },
};

static void
test_table (void **state)
{
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ovl_config *c = ovl_config_parse ("t.conf", cases[i].text, cases[i].len);

    if (cases[i].error) {
      if (c)
        fail_msg ("'%s' was accepted", cases[i].text);
      if (strcmp (ovl_error_msg (), cases[i].error) != 0)
        fail_msg ("'%s': got '%s', want '%s'", cases[i].text, ovl_error_msg (),
                  cases[i].error);
    }
    else {
      if (!c)
        fail_msg ("'%s': %s", cases[i].text, ovl_error_msg ());
      assert_int_equal (c->timeout_ms, cases[i].timeout_ms);
    }
    ovl_config_free (c);
  }
}

/* The reader's line limit: a line, its newline and a NUL in 4096 bytes. */
static void
test_long_line (void **state)
{
  char buf[4200];
  struct ovl_config *c;
  size_t n;

  for (n = 4093; n <= 4096; n++) {
    memset (buf, ' ', n);
    memcpy (buf + n - 4, "#end", 4);
    buf[n] = '\n';
    c = ovl_config_parse ("t.conf", buf, n + 1);
    if (n <= 4094)
      assert_non_null (c);
    else {
      assert_null (c);
      assert_string_equal (ovl_error_msg (), "t.conf:1: line too long");
    }
    ovl_config_free (c);
  }
}

static char *
write_file (const char *dir, const char *name, const char *text, size_t len)
{
  char *path;
  FILE *f;

  assert_true (asprintf (&path, "%s/%s", dir, name) > 0);
  assert_non_null (f = fopen (path, "w"));
  assert_int_equal (fwrite (text, 1, len, f), len);
  assert_int_equal (fclose (f), 0);
  return path;
}

static void
test_files (void **state)
{
  char *dir = t_mkdtemp ();
  char *good = write_file (dir, "good.conf", "timeout_ms = 1234\n", 18);
  char *big, *link, *fifo, *missing, *want;
  char *text = malloc (1024 * 1024 + 1);
  struct ovl_config *c;

  /* A symlink to a regular file is followed. */
  assert_true (asprintf (&link, "%s/link.conf", dir) > 0);
  assert_int_equal (symlink (good, link), 0);
  assert_non_null (c = ovl_config_load_file (link, true));
  assert_int_equal (c->timeout_ms, 1234);
  ovl_config_free (c);

  /* A FIFO with no writer would block an open() without O_NONBLOCK. */
  assert_true (asprintf (&fifo, "%s/fifo.conf", dir) > 0);
  assert_int_equal (mkfifo (fifo, 0600), 0);
  assert_null (ovl_config_load_file (fifo, true));
  assert_true (asprintf (&want, "%s: not a regular file", fifo) > 0);
  assert_string_equal (ovl_error_msg (), want);
  free (want);

  /* 1 MiB of comment lines is read; one byte more is refused. */
  memset (text, '#', 1024 * 1024 + 1);
  for (size_t i = 4000; i < 1024 * 1024; i += 4000)
    text[i] = '\n';
  big = write_file (dir, "big.conf", text, 1024 * 1024);
  assert_non_null (c = ovl_config_load_file (big, true));
  ovl_config_free (c);
  free (big);
  big = write_file (dir, "big.conf", text, 1024 * 1024 + 1);
  assert_null (ovl_config_load_file (big, true));
  assert_true (asprintf (&want, "%s: larger than 1048576 bytes", big) > 0);
  assert_string_equal (ovl_error_msg (), want);
  free (want);

  /* Missing: defaults, unless it must exist. */
  assert_true (asprintf (&missing, "%s/missing.conf", dir) > 0);
  assert_non_null (c = ovl_config_load_file (missing, false));
  assert_int_equal (c->timeout_ms, 30000);
  ovl_config_free (c);
  assert_null (ovl_config_load_file (missing, true));
  assert_non_null (strstr (ovl_error_msg (), "No such file"));

  free (text);
  free (good);
  free (big);
  free (link);
  free (fifo);
  free (missing);
  t_rmtree (dir);
  free (dir);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_table),
    cmocka_unit_test (test_long_line),
    cmocka_unit_test (test_files),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
