/* The ledger: every file in tests/data/ledger/ parsed without any I/O,
 * saved and loaded back, cut short at every byte; the forged-line attack
 * of long domain names; ledger files that are not regular files.
 *
 * Each good NAME.ledger has NAME.expected beside it (a dump of what was
 * read); every bad one is listed in expected-errors.tsv with a part of the
 * error it must give.  OVL_REGENERATE=1 rewrites the expected dumps. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "error.h"
#include "json.h"
#include "ledger.h"
#include "util.h"
#include "testutil.h"

#define UUID "4f9c2a3e-1b7d-4e2a-9c1f-0123456789ab"

/* What was read, one line per item, strings as JSON. */
static char *
dump (const struct ovl_ledger *l)
{
  struct ovl_buf b = OVL_BUF_INIT;
  size_t i;

  assert_int_equal (ovl_buf_printf (&b, "domain "), 0);
  if (l->domain)
    assert_int_equal (ovl_json_append_string (&b, l->domain), 0);
  else
    assert_int_equal (ovl_buf_printf (&b, "(none)"), 0);
  assert_int_equal (ovl_buf_printf (&b, "\nrestore-pending %s\n",
                                    l->restore_pending ? "yes" : "no"), 0);
  if (l->migration_pending)
    assert_int_equal (ovl_buf_printf (&b, "migration-pending %lld\n",
                                      l->migration_pending), 0);
  if (l->saved)
    assert_int_equal (ovl_buf_printf (&b, "saved\n"), 0);
  if (l->restoring[0])
    assert_int_equal (ovl_buf_printf (&b, "restoring %s\n", l->restoring), 0);
  for (i = 0; i < l->n; i++) {
    const struct ovl_ledger_entry *e = &l->entries[i];
    assert_int_equal (ovl_buf_printf (&b, "overlay dev=%llu ino=%llu btime=%lld.%09u token='%s' path=",
                                      (unsigned long long) e->id.dev,
                                      (unsigned long long) e->id.ino,
                                      (long long) e->id.btime_sec, e->id.btime_nsec,
                                      e->id.token), 0);
    assert_int_equal (ovl_json_append_string (&b, e->path), 0);
    assert_int_equal (ovl_buf_printf (&b, "\n"), 0);
    if (e->adopted_from[0])
      assert_int_equal (ovl_buf_printf (&b, "adopted-from %s%s\n", e->adopted_from,
                                        e->restored ? " (restored)" : ""), 0);
  }
  return ovl_buf_steal (&b);
}

static bool
ends_with (const char *s, const char *suffix)
{
  size_t n = strlen (s), m = strlen (suffix);
  return n >= m && strcmp (s + n - m, suffix) == 0;
}

/* A state directory with domains/ in it; its ledger file path. */
static char *
ledger_path (const char *dir)
{
  char *p;
  assert_true (asprintf (&p, "%s/domains/" UUID, dir) > 0);
  return p;
}

/* Save L as the ledger of DIR and load it back. */
static struct ovl_ledger *
save_and_load (struct ovl_ledger *l, const char *dir)
{
  free (l->file);
  l->file = ledger_path (dir);
  if (ovl_ledger_save (l) == -1)
    fail_msg ("save: %s", ovl_error_msg ());
  return ovl_ledger_load (dir, UUID);
}

/* Every prefix of a good ledger is refused, except those that only lack
 * trailing whitespace, which read the same. */
static void
check_every_cut (const char *name, const char *data, size_t len, const char *expected)
{
  size_t cut;

  for (cut = 0; cut < len; cut++) {
    struct ovl_ledger *l = ovl_ledger_parse ("cut", data, cut);
    if (l) {
      char *got = dump (l);
      if (strspn (data + cut, " \t\r\n") != len - cut)
        fail_msg ("%s cut at %zu of %zu was read: %s", name, cut, len, got);
      assert_string_equal (got, expected);
      free (got);
      ovl_ledger_free (l);
    }
  }
}

static void
test_good (void **state)
{
  char *dir = t_data_path ("ledger"), *tmp = t_mkdtemp ();
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d))) {
    char *path, *exp_path, *data, *expected, *got, *saved_text;
    struct ovl_ledger *l, *again;
    size_t len, elen = strlen (e->d_name);

    if (!ends_with (e->d_name, ".ledger"))
      continue;
    assert_true (asprintf (&exp_path, "%s/%.*s.expected", dir, (int) (elen - 7), e->d_name) > 0);
    if (access (exp_path, F_OK) == -1 && !getenv ("OVL_REGENERATE")) {
      free (exp_path);
      continue;                 /* a bad one */
    }
    assert_true (asprintf (&path, "%s/%s", dir, e->d_name) > 0);
    data = t_read_file (path, &len);
    assert_non_null (data);
    l = ovl_ledger_parse (path, data, len);
    if (!l) {
      if (getenv ("OVL_REGENERATE")) {
        free (path); free (exp_path); free (data);
        continue;
      }
      fail_msg ("%s: %s", e->d_name, ovl_error_msg ());
    }
    assert_string_equal (l->file, path);
    got = dump (l);
    if (getenv ("OVL_REGENERATE")) {
      FILE *f = fopen (exp_path, "w");
      fputs (got, f);
      fclose (f);
    }
    expected = t_read_file (exp_path, NULL);
    assert_non_null (expected);
    assert_string_equal (got, expected);

    if (data[0] == '{')
      check_every_cut (e->d_name, data, len, expected);

    /* Round trip: saved (always as version 2), it reads the same; a
     * ledger that holds nothing is removed instead. */
    again = save_and_load (l, tmp);
    assert_non_null (again);
    if (ovl_ledger_is_empty (l)) {
      assert_int_equal (access (again->file, F_OK), -1);
      assert_null (again->domain);
      goto next;
    }
    free (got);
    got = dump (again);
    assert_string_equal (got, expected);
    saved_text = t_read_file (again->file, &len);
    assert_non_null (saved_text);
    assert_memory_equal (saved_text, "{\"virt-overlay-ledger\":2,", 25);
    /* One line: no string in it can start another. */
    assert_ptr_equal (strchr (saved_text, '\n'), saved_text + len - 1);

    check_every_cut (e->d_name, saved_text, len, expected);
    free (saved_text);
  next:
    ovl_ledger_free (again);
    ovl_ledger_free (l);
    free (got); free (expected); free (data); free (path); free (exp_path);
    n++;
  }
  closedir (d);
  t_rmtree (tmp);
  free (tmp);
  free (dir);
  assert_true (n >= 6);
}

static void
test_bad (void **state)
{
  char *tsv = t_data_path ("ledger/expected-errors.tsv");
  char *list = t_read_file (tsv, NULL), *line, *save = NULL;
  int n = 0;

  assert_non_null (list);
  for (line = strtok_r (list, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
    char *tab = strchr (line, '\t'), *rel, *path, *data, *exp_path;
    size_t len;

    assert_non_null (tab);
    *tab = '\0';
    assert_true (asprintf (&rel, "ledger/%s", line) > 0);
    path = t_data_path (rel);
    data = t_read_file (path, &len);
    if (!data)
      fail_msg ("%s is missing", path);
    if (ovl_ledger_parse (path, data, len))
      fail_msg ("%s was read", line);
    if (!strstr (ovl_error_msg (), tab + 1))
      fail_msg ("%s: got '%s', want '%s'", line, ovl_error_msg (), tab + 1);
    /* The message names the ledger file. */
    if (strncmp (ovl_error_msg (), "ledger ", 7) != 0 || !strstr (ovl_error_msg (), path))
      fail_msg ("%s: '%s' does not name the file", line, ovl_error_msg ());
    /* A bad one has no expected dump. */
    assert_true (asprintf (&exp_path, "%.*s.expected", (int) (strlen (path) - 7), path) > 0);
    assert_int_equal (access (exp_path, F_OK), -1);
    free (exp_path); free (data); free (path); free (rel);
    n++;
  }
  free (list);
  free (tsv);
  assert_true (n >= 40);
}

static struct ovl_ledger *
new_ledger (const char *dir)
{
  struct ovl_ledger *l = ovl_ledger_load (dir, UUID);
  assert_non_null (l);
  assert_int_equal (l->n, 0);
  assert_null (l->domain);
  return l;
}

/* The attack of the old line format: a name that fills the old 8192-byte
 * line buffer, then what looks like an entry.  It stays a name. */
static void
test_forged_name (void **state)
{
  char *tmp = t_mkdtemp ();
  const char *forged = "ephemeral 2049 4242 1700000000 0 /path/victim.qcow2";
  struct ovl_ledger *l = new_ledger (tmp), *again;
  struct ovl_file_id id = { .dev = 1, .ino = 2, .btime_sec = 3, .btime_nsec = 4 };
  char *name = malloc (8184 + strlen (forged) + 1);

  assert_non_null (name);
  memset (name, 'A', 8184);
  strcpy (name + 8184, forged);
  l->domain = name;
  assert_non_null (ovl_ledger_add (l, "/img/real.qcow2", &id));
  again = save_and_load (l, tmp);
  assert_non_null (again);
  assert_string_equal (again->domain, name);
  assert_int_equal (again->n, 1);
  assert_string_equal (again->entries[0].path, "/img/real.qcow2");
  assert_null (ovl_ledger_find (again, "/path/victim.qcow2"));

  /* And once more: the name does not stop the next load. */
  ovl_ledger_remove (again, &again->entries[0]);
  again->restore_pending = 1700000000;
  ovl_ledger_free (l);
  l = save_and_load (again, tmp);
  assert_non_null (l);
  assert_int_equal (l->n, 0);
  assert_string_equal (l->domain, again->domain);
  assert_int_equal (strlen (l->domain), 8184 + strlen (forged));
  ovl_ledger_free (l);
  ovl_ledger_free (again);
  t_rmtree (tmp);
  free (tmp);
}

/* A name as long as libvirt's 4 MiB domain XML allows, and more, with
 * characters that need escaping. */
static void
test_big_name (void **state)
{
  char *tmp = t_mkdtemp ();
  struct ovl_ledger *l = new_ledger (tmp), *again;
  size_t len = 5 * 1000 * 1000, i;
  char *name = malloc (len + 1);

  assert_non_null (name);
  for (i = 0; i < len; i++)
    name[i] = "ab\"\\ e"[i % 6];
  name[len] = '\0';
  l->domain = name;
  l->restore_pending = 1700000000;
  again = save_and_load (l, tmp);
  assert_non_null (again);
  assert_string_equal (again->domain, name);
  assert_int_equal (again->restore_pending, 1700000000);
  ovl_ledger_free (again);
  ovl_ledger_free (l);
  t_rmtree (tmp);
  free (tmp);
}

/* What could not be read back is not written: the old ledger stays. */
static void
test_save_refuses_unreadable (void **state)
{
  char *tmp = t_mkdtemp ();
  struct ovl_ledger *l = new_ledger (tmp), *again;
  size_t big = OVL_LEDGER_MAX_BYTES + 1;
  const char *bad_names[] = { "\xff\xfe not UTF-8", NULL };
  struct ovl_file_id id = { .dev = 1, .ino = 2 };
  char *file = ledger_path (tmp), *before, *after;
  size_t i;

  l->domain = strdup ("good");
  assert_non_null (ovl_ledger_add (l, "/img/a.qcow2", &id));
  again = save_and_load (l, tmp);
  assert_non_null (again);
  ovl_ledger_free (again);
  before = t_read_file (file, NULL);
  assert_non_null (before);

  bad_names[1] = malloc (big + 1);
  assert_non_null (bad_names[1]);
  memset ((char *) bad_names[1], 'x', big);
  ((char *) bad_names[1])[big] = '\0';
  for (i = 0; i < 2; i++) {
    free (l->domain);
    l->domain = strdup (bad_names[i]);
    assert_int_equal (ovl_ledger_save (l), -1);
    assert_non_null (strstr (ovl_error_msg (), "not saved"));
    after = t_read_file (file, NULL);
    assert_string_equal (after, before);
    free (after);
  }
  /* A bad token, likewise. */
  free (l->domain);
  l->domain = strdup ("good");
  strcpy (l->entries[0].id.token, "NOT-HEX");
  assert_int_equal (ovl_ledger_save (l), -1);
  assert_non_null (strstr (ovl_error_msg (), "\"token\""));
  after = t_read_file (file, NULL);
  assert_string_equal (after, before);
  free (after);

  free ((char *) bad_names[1]);
  free (before);
  free (file);
  ovl_ledger_free (l);
  t_rmtree (tmp);
  free (tmp);
}

static void
test_entry_cap (void **state)
{
  struct ovl_buf b = OVL_BUF_INIT;
  struct ovl_ledger *l;
  int i;

  for (int n = OVL_LEDGER_MAX_ENTRIES; n <= OVL_LEDGER_MAX_ENTRIES + 1; n++) {
    assert_int_equal (ovl_buf_printf (&b, "{\"virt-overlay-ledger\":2,\"overlays\":["), 0);
    for (i = 0; i < n; i++)
      assert_int_equal (ovl_buf_printf (&b, "%s{\"path\":\"/i/%d\",\"dev\":1,\"ino\":%d,"
                                        "\"btime\":[0,0]}", i ? "," : "", i, i), 0);
    assert_int_equal (ovl_buf_printf (&b, "]}"), 0);
    l = ovl_ledger_parse ("many", b.data, b.len);
    if (n == OVL_LEDGER_MAX_ENTRIES) {
      assert_non_null (l);
      assert_int_equal (l->n, n);
      assert_null (ovl_ledger_add (l, "/one/more", &l->entries[0].id));
      ovl_ledger_free (l);
    }
    else {
      assert_null (l);
      assert_non_null (strstr (ovl_error_msg (), "more than 1024 overlays"));
    }
    ovl_buf_reset (&b);
  }
}

static void
on_alarm (int sig)
{
  (void) sig;
  static const char msg[] = "loading a FIFO ledger blocked\n";
  (void) write (2, msg, sizeof msg - 1);
  _exit (1);
}

/* Only a regular file is read: a FIFO would block for ever, a symbolic
 * link may point anywhere, a directory cannot be read.  An alarm turns a
 * regression into a failure rather than a hang. */
static void
test_not_regular (void **state)
{
  static const struct { const char *what, *error; } cases[] = {
    { "fifo", "not a regular file" },
    { "symlink", "symbolic link" },
    { "directory", "not a regular file" },
    { "too-large", "larger than" },
  };
  char *tmp = t_mkdtemp (), *domains, *file, *target;
  size_t c;

  assert_true (asprintf (&domains, "%s/domains", tmp) > 0);
  assert_int_equal (mkdir (domains, 0700), 0);
  file = ledger_path (tmp);
  assert_true (asprintf (&target, "%s/target", tmp) > 0);
  {
    FILE *f = fopen (target, "w");
    assert_non_null (f);
    fputs ("{\"virt-overlay-ledger\":2,\"overlays\":[]}\n", f);
    fclose (f);
  }
  signal (SIGALRM, on_alarm);
  for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *w = cases[c].what;
    int fd;

    if (strcmp (w, "fifo") == 0)
      assert_int_equal (mkfifo (file, 0600), 0);
    else if (strcmp (w, "symlink") == 0)
      assert_int_equal (symlink (target, file), 0);
    else if (strcmp (w, "directory") == 0)
      assert_int_equal (mkdir (file, 0700), 0);
    else {
      assert_true ((fd = open (file, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
      assert_int_equal (ftruncate (fd, OVL_LEDGER_MAX_BYTES + 1), 0);
      close (fd);
    }
    alarm (10);
    if (ovl_ledger_load (tmp, UUID))
      fail_msg ("%s ledger was read", w);
    alarm (0);
    if (!strstr (ovl_error_msg (), cases[c].error) || !strstr (ovl_error_msg (), file))
      fail_msg ("%s: got '%s'", w, ovl_error_msg ());
    assert_int_equal (strcmp (w, "directory") == 0 ? rmdir (file) : unlink (file), 0);
  }
  signal (SIGALRM, SIG_DFL);

  /* The symlink's target itself is a good ledger; and no file at all is
   * an empty one. */
  assert_int_equal (rename (target, file), 0);
  {
    struct ovl_ledger *l = ovl_ledger_load (tmp, UUID);
    assert_non_null (l);
    ovl_ledger_free (l);
  }
  assert_int_equal (unlink (file), 0);
  {
    struct ovl_ledger *l = ovl_ledger_load (tmp, UUID);
    assert_non_null (l);
    assert_int_equal (l->n, 0);
    assert_string_equal (l->file, file);
    ovl_ledger_free (l);
  }
  free (target); free (file); free (domains);
  t_rmtree (tmp);
  free (tmp);
}

/* Whether process PID has FILE open. */
static bool
has_open (pid_t pid, const char *file)
{
  char dir[64], link[384], target[4096];
  DIR *d;
  struct dirent *e;
  bool found = false;
  ssize_t n;

  snprintf (dir, sizeof dir, "/proc/%d/fd", (int) pid);
  if (!(d = opendir (dir)))
    return false;
  while (!found && (e = readdir (d))) {
    snprintf (link, sizeof link, "%s/%s", dir, e->d_name);
    n = readlink (link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = '\0';
      found = strncmp (target, file, strlen (file)) == 0;
    }
  }
  closedir (d);
  return found;
}

/* A caller waiting for the lock while its holder removes the lock file
 * (as gc does) takes the lock again on the new file: never are there
 * two holders, one on the old file and one on the new.
 *
 * No step waits on a guess of how long another takes: the waiter says
 * when it has let go of the descriptor the fork gave it (so that what
 * /proc shows open is its own), and holds its lock until told to go. */
static void
test_lock_file_removed (void **state)
{
  char *tmp = t_mkdtemp (), *lockfile;
  struct ovl_ledger *held, *again;
  int up[2], down[2], status, i;
  pid_t pid;
  char c;

  assert_true (asprintf (&lockfile, "%s/domains/" UUID ".lock", tmp) > 0);
  held = ovl_ledger_open (tmp, UUID, ovl_now_ms () + 5000);
  if (!held)
    fail_msg ("first open: %s", ovl_error_msg ());
  assert_int_equal (pipe (up), 0);
  assert_int_equal (pipe (down), 0);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    struct ovl_ledger *l;
    struct stat a, b;
    bool same;

    close (up[0]);
    close (down[1]);
    close (held->lockfd);       /* the parent's, which a fork shares */
    held->lockfd = -1;
    ovl_ledger_free (held);
    if (write (up[1], "c", 1) != 1)
      _exit (2);
    l = ovl_ledger_open (tmp, UUID, ovl_now_ms () + 60000);
    if (!l)
      fprintf (stderr, "waiter: %s\n", ovl_error_msg ());
    same = l && fstat (l->lockfd, &a) == 0 && stat (lockfile, &b) == 0 &&
      a.st_ino == b.st_ino && a.st_dev == b.st_dev;
    /* Held, on the file that has the name, until the parent says. */
    if (write (up[1], same ? "y" : "n", 1) != 1)
      _exit (2);
    if (read (down[0], &c, 1) != 1)
      _exit (2);
    ovl_ledger_free (l);
    free (lockfile);
    free (tmp);
    _exit (same ? 0 : 1);
  }
  close (up[1]);
  close (down[0]);
  /* The waiter has closed what it inherited... */
  assert_int_equal (read (up[0], &c, 1), 1);
  assert_int_equal (c, 'c');
  /* ...and has the old file open of its own, waiting for its lock. */
  for (i = 0; i < 6000 && !has_open (pid, lockfile); i++)
    usleep (10000);
  if (!has_open (pid, lockfile))
    fail_msg ("the waiter never opened %s", lockfile);
  usleep (50000);
  assert_int_equal (unlink (lockfile), 0);
  ovl_ledger_free (held);
  assert_int_equal (read (up[0], &c, 1), 1);
  if (c != 'y')
    fail_msg ("the waiter's lock is not on the file named %s", lockfile);
  /* The waiter holds the lock of the name: a third caller waits. */
  again = ovl_ledger_open (tmp, UUID, ovl_now_ms () + 200);
  if (again)
    fail_msg ("a third caller took the lock the waiter holds");
  if (!strstr (ovl_error_msg (), "still held"))
    fail_msg ("third caller: %s", ovl_error_msg ());
  assert_int_equal (write (down[1], "g", 1), 1);
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  again = ovl_ledger_open (tmp, UUID, ovl_now_ms () + 5000);
  if (!again)
    fail_msg ("after the waiter: %s", ovl_error_msg ());
  ovl_ledger_free (again);
  close (up[0]);
  close (down[1]);
  free (lockfile);
  t_rmtree (tmp);
  free (tmp);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_good),
    cmocka_unit_test (test_bad),
    cmocka_unit_test (test_forged_name),
    cmocka_unit_test (test_big_name),
    cmocka_unit_test (test_save_refuses_unreadable),
    cmocka_unit_test (test_entry_cap),
    cmocka_unit_test (test_not_regular),
    cmocka_unit_test (test_lock_file_removed),
  };
  return cmocka_run_group_tests_name ("ledger", tests, NULL, NULL);
}
