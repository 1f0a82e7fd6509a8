/* Safe paths (lib/paths.h) and the error channel (lib/error.h): a table
 * of paths with the answer or the exact error each must give, on a tree
 * made in a temporary directory; then the publishing and locking
 * primitives, and that an error may be formatted from the current one. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../lib/config.h"
#include "cleanup.h"
#include "error.h"
#include "paths.h"
#include "testutil.h"
#include "util.h"

static char *top;               /* the temporary directory */

/* TOP/REL */
static char *
at (const char *rel)
{
  static char buf[8][4096];
  static int k;
  char *p = buf[k++ % 8];
  snprintf (p, 4096, "%s%s%s", top, *rel ? "/" : "", rel);
  return p;
}

/* The tree: ok/ (0755), open/ (0777), sticky/ (1777), link -> ok,
 * owned/ (uid 4242), ok/sub/. */
static int
setup (void **state)
{
  top = t_mkdtemp ();
  if (mkdir (at ("ok"), 0755) || mkdir (at ("ok/sub"), 0755) ||
      mkdir (at ("open"), 0755) || chmod (at ("open"), 0777) ||
      mkdir (at ("sticky"), 0755) || chmod (at ("sticky"), 01777) ||
      symlink ("ok", at ("link")) || mkdir (at ("owned"), 0755) ||
      chown (at ("owned"), 4242, 4242))
    return -1;
  return 0;
}

static int
teardown (void **state)
{
  t_rmtree (top);
  free (top);
  return 0;
}

enum entry { PARENT, PARENT_LAX, IF_EXISTS, DIR_ITSELF };
static const struct {
  enum entry how;
  const char *rel;              /* below TOP; a leading '/' means absolute as is */
  int want;                     /* return value */
  const char *error;            /* with "@" for TOP, or NULL */
} cases[] = {
  { PARENT, "ok/x.qcow2", 0, NULL },
  { PARENT, "ok/sub/x.qcow2", 0, NULL },
  { PARENT, "/relative", -1, NULL },   /* replaced below: not absolute */
  { PARENT, "ok//x", -1, "overlay path '@/ok//x' is not normalised (empty, '.' or '..' component)" },
  { PARENT, "ok/../x", -1, "overlay path '@/ok/../x' is not normalised (empty, '.' or '..' component)" },
  { PARENT, "ok/./x", -1, "overlay path '@/ok/./x' is not normalised (empty, '.' or '..' component)" },
  { PARENT, "link/x", -1, "overlay path '@/link/x': '@/link' is a symbolic link" },
  { PARENT, "missing/x", -1, "overlay path '@/missing/x': '@/missing': No such file or directory" },
  { PARENT, "open/x", -1, "overlay path '@/open/x': directory '@/open' is writable by group or others" },
  { PARENT, "sticky/x", -1, "overlay path '@/sticky/x': directory '@/sticky' is writable by group or others" },
  { PARENT_LAX, "sticky/x", 0, NULL },
  { PARENT, "owned/x", -1, "overlay path '@/owned/x': directory '@/owned' is owned by uid 4242, not root" },
  { PARENT_LAX, "owned/x", 0, NULL },
  { IF_EXISTS, "ok/x", 1, NULL },
  { IF_EXISTS, "missing/x", 0, NULL },
  { IF_EXISTS, "link/x", -1, "overlay path '@/link/x': '@/link' is a symbolic link" },
  { DIR_ITSELF, "", 0, NULL },                       /* an allowed directory itself */
  { DIR_ITSELF, "ok/sub", 0, NULL },
  { DIR_ITSELF, "link", -1, "overlay path '@/link': '@/link' is a symbolic link" },
  { DIR_ITSELF, "open", -1, "overlay path '@/open': directory '@/open' is writable by group or others" },
  { DIR_ITSELF, "ok/", -1, "overlay path '@/ok/' is not normalised (empty, '.' or '..' component)" },
  { DIR_ITSELF, "/", -1, "overlay directory '/' is refused" },
  { DIR_ITSELF, "/etc", -1, "overlay path '/etc' is outside the allowed directories" },
  { PARENT, "/etc/x", -1, "overlay path '/etc/x' is outside the allowed directories" },
};

/* EXPECTED with every '@' replaced by TOP. */
static char *
expand (const char *expected)
{
  static char buf[4096];
  size_t o = 0;
  for (; *expected && o + strlen (top) + 1 < sizeof buf; expected++) {
    if (*expected == '@') {
      strcpy (buf + o, top);
      o += strlen (top);
    }
    else
      buf[o++] = *expected;
  }
  buf[o] = '\0';
  return buf;
}

static void
test_table (void **state)
{
  char *dirs_list[] = { top };
  struct ovl_dirs dirs = { dirs_list, 1 };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[4096];
    int fd = -1, r = -2;
    const char *name = NULL;

    if (strcmp (cases[i].rel, "/relative") == 0)
      snprintf (path, sizeof path, "relative/x");
    else if (cases[i].rel[0] == '/')
      snprintf (path, sizeof path, "%s", cases[i].rel);
    else
      snprintf (path, sizeof path, "%s", at (cases[i].rel));
    ovl_error_clear ();
    switch (cases[i].how) {
    case PARENT: r = ovl_path_open_parent (path, &dirs, "overlay", true, &fd, &name); break;
    case PARENT_LAX: r = ovl_path_open_parent (path, &dirs, "overlay", false, &fd, &name); break;
    case IF_EXISTS: r = ovl_path_open_parent_if_exists (path, &dirs, "overlay", &fd, &name); break;
    case DIR_ITSELF: r = ovl_path_open_dir (path, &dirs, "overlay", &fd); break;
    }
    if (r != cases[i].want)
      fail_msg ("case %zu (%s): returned %d, want %d (%s)", i, path, r, cases[i].want,
                ovl_error_msg ());
    if (strcmp (cases[i].rel, "/relative") == 0)
      assert_string_equal (ovl_error_msg (), "overlay path 'relative/x' is not absolute");
    else if (cases[i].error)
      assert_string_equal (ovl_error_msg (), expand (cases[i].error));
    if (r == 1 || (r == 0 && cases[i].how != IF_EXISTS)) {
      assert_true (fd >= 0);
      if (cases[i].how != DIR_ITSELF)
        assert_string_equal (name, strrchr (path, '/') + 1);
      close (fd);
    }
    else
      assert_int_equal (fd, -1);
  }
}

/* Publishing never replaces; the lock decides what a reaper may remove. */
static void
test_publish_and_locks (void **state)
{
  CLEANUP_CLOSE int d = open (at ("ok"), O_RDONLY | O_DIRECTORY);
  int fd, held;

  assert_true (d >= 0);
  fd = openat (d, "a", O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true (fd >= 0);
  close (fd);
  fd = openat (d, "b", O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true (fd >= 0);
  close (fd);
  assert_int_equal (ovl_publish_noreplace (d, "a", d, "b"), -1);
  assert_int_equal (errno, EEXIST);
  assert_int_equal (faccessat (d, "a", F_OK, 0), 0);
  assert_int_equal (ovl_publish_noreplace (d, "a", d, "c"), 0);
  assert_int_equal (faccessat (d, "a", F_OK, 0), -1);
  assert_int_equal (faccessat (d, "c", F_OK, 0), 0);

  /* A held file is left, a free one removed, a missing one is 0. */
  held = ovl_create_locked (d, "held.tmp", 0600);
  assert_true (held >= 0);
  assert_int_equal (ovl_create_locked (d, "held.tmp", 0600), -1);
  assert_int_equal (errno, EEXIST);
  assert_int_equal (ovl_unlink_if_unlocked (d, "held.tmp"), 0);
  assert_int_equal (faccessat (d, "held.tmp", F_OK, 0), 0);
  close (held);
  assert_int_equal (ovl_unlink_if_unlocked (d, "held.tmp"), 1);
  assert_int_equal (ovl_unlink_if_unlocked (d, "held.tmp"), 0);
  /* Not a regular file: never removed. */
  assert_int_equal (mkdirat (d, "adir", 0700), 0);
  assert_true (ovl_unlink_if_unlocked (d, "adir") != 1);
  assert_int_equal (faccessat (d, "adir", F_OK, 0), 0);
}

static void
test_is_below (void **state)
{
  assert_true (ovl_path_is_below ("/a/b", "/a"));
  assert_true (ovl_path_is_below ("/a", "/a"));
  assert_false (ovl_path_is_below ("/ab", "/a"));
  assert_true (ovl_path_is_below ("/x", "/"));
  assert_false (ovl_path_is_below ("x", "/"));
}

/* One error channel: a message may be made from the current one, and
 * control characters never reach it raw. */
static void
test_error_channel (void **state)
{
  ovl_error ("inner %d", 1);
  ovl_error ("outer: %s", ovl_error_msg ());
  assert_string_equal (ovl_error_msg (), "outer: inner 1");
  ovl_error_prefix ("disk %s: ", "vda");
  assert_string_equal (ovl_error_msg (), "disk vda: outer: inner 1");
  ovl_error ("a\nb\tc\x01");
  assert_string_equal (ovl_error_msg (), "a\\nb\\tc\\x01");
  ovl_error_clear ();
  assert_string_equal (ovl_error_msg (), "unknown error");
}

/* The helpers written once: mkdir -p, trim and the growable array. */
static void
test_mkdir_p_and_trim (void **state)
{
  struct stat st;
  char s[] = " \t key = value \n";
  char blank[] = "   ";

  assert_int_equal (ovl_mkdir_p (at ("deep/er/est"), 0700), 0);
  assert_int_equal (stat (at ("deep/er/est"), &st), 0);
  assert_true (S_ISDIR (st.st_mode) && (st.st_mode & 0777) == 0700);
  assert_int_equal (ovl_mkdir_p (at ("deep/er/est"), 0700), 0);   /* already there */
  assert_int_equal (mknod (at ("deep/file"), S_IFREG | 0600, 0), 0);
  assert_int_equal (ovl_mkdir_p (at ("deep/file/x"), 0700), -1);
  assert_string_equal (ovl_error_msg (), expand ("mkdir @/deep/file/x: Not a directory"));
  assert_string_equal (ovl_trim (s), "key = value");
  {
    int *v = NULL;
    size_t cap = 0, i;
    for (i = 0; i < 100; i++) {
      assert_int_equal (OVL_RESERVE (v, cap, i + 1, 4), 0);
      v[i] = (int) i;
    }
    assert_int_equal (cap, 128);                       /* 4 doubled, never more */
    assert_int_equal (v[99], 99);
    assert_int_equal (ovl_reserve (&v, &cap, SIZE_MAX / 2, 16, 4), -1);
    assert_string_equal (ovl_error_msg (), "out of memory");
    assert_int_equal (cap, 128);                       /* unchanged on failure */
    free (v);
  }
  assert_string_equal (ovl_trim (blank), "");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_table),
    cmocka_unit_test (test_publish_and_locks),
    cmocka_unit_test (test_is_below),
    cmocka_unit_test (test_error_channel),
    cmocka_unit_test (test_mkdir_p_and_trim),
  };
  return cmocka_run_group_tests (tests, setup, teardown);
}
