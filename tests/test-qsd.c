/* The QMP client against the real qemu-storage-daemon, and starting
 * qsd_binary (ovl_qsd_connect) when it misbehaves. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "qmp.h"
#include "qsd.h"
#include "util.h"
#include "testutil.h"

static char *dir;
static struct t_qsd qsd;

static int
setup (void **state)
{
  dir = t_mkdtemp ();
  if (t_qsd_start (&qsd, dir) == -1) {
    fprintf (stderr, "cannot start qemu-storage-daemon\n");
    return -1;
  }
  return 0;
}

static int
teardown (void **state)
{
  t_qsd_stop (&qsd);
  t_rmtree (dir);
  free (dir);
  return 0;
}

static void
test_version_and_jobs (void **state)
{
  struct ovl_qmp *q = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 5000);
  struct ovl_json *r;
  long long major;

  if (!q)
    fail_msg ("%s", ovl_error_msg ());
  assert_true (ovl_qmp_version (q) >= 50000);
  r = ovl_qmp_command (q, "query-version", NULL, ovl_now_ms () + 5000);
  assert_non_null (r);
  assert_int_equal (ovl_json_get_int (r, "qemu.major", &major), 0);
  assert_int_equal ((unsigned) major, ovl_qmp_version (q) / 10000);
  ovl_json_free (r);
  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 5000);
  assert_non_null (r);
  assert_int_equal (r->type, OVL_JSON_ARRAY);
  ovl_json_free (r);
  /* qsd's error class and description reach the caller. */
  assert_null (ovl_qmp_command (q, "blockdev-del", "{\"node-name\": \"no-such-node\"}",
                                ovl_now_ms () + 5000));
  assert_non_null (strstr (ovl_error_msg (), "blockdev-del: GenericError:"));
  assert_non_null (strstr (ovl_error_msg (), "no-such-node"));
  ovl_qmp_close (q);
}

static void
test_pipelined_burst (void **state)
{
  struct ovl_qmp *q = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 5000);
  uint64_t ids[100];
  int64_t dl = ovl_now_ms () + 10000;
  int i;

  assert_non_null (q);
  for (i = 0; i < 100; i++) {
    ids[i] = ovl_qmp_send (q, i % 2 ? "query-jobs" : "query-version", NULL);
    assert_true (ids[i] > 0);
  }
  /* Wait in reverse: every reply is held until claimed by its id. */
  for (i = 99; i >= 0; i--) {
    struct ovl_json *r = ovl_qmp_wait (q, ids[i], dl);
    if (!r)
      fail_msg ("reply %d: %s", i, ovl_error_msg ());
    assert_int_equal (r->type, i % 2 ? OVL_JSON_ARRAY : OVL_JSON_OBJECT);
    ovl_json_free (r);
  }
  ovl_qmp_close (q);
}

/* One client at a time: a second client is served after the first leaves. */
static void
test_second_client_waits (void **state)
{
  struct ovl_qmp *a = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 5000);
  struct ovl_qmp *b;

  assert_non_null (a);
  b = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 300);
  assert_null (b);
  /* Connected (the backlog holds it), but qsd says nothing yet. */
  assert_non_null (strstr (ovl_error_msg (), ": qemu-storage-daemon did not answer: "
                           "timed out waiting for its greeting"));
  ovl_qmp_close (a);
  b = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 5000);
  assert_non_null (b);
  ovl_qmp_close (b);
}

static void
test_quit (void **state)
{
  struct ovl_qmp *q = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 5000);
  struct ovl_json *r;
  int i;

  assert_non_null (q);
  r = ovl_qmp_command (q, "quit", NULL, ovl_now_ms () + 5000);
  assert_non_null (r);
  ovl_json_free (r);
  /* Then the daemon goes away and the connection ends. */
  assert_null (ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 5000));
  ovl_qmp_close (q);
  for (i = 0; i < 500 && t_pid_alive (qsd.pid); i++)
    usleep (10000);
  assert_false (t_pid_alive (qsd.pid));
}

/* qsd_binary stand-ins: shell scripts that record in "$0.pids" every
 * process they leave; @FAKE@ is the fake daemon.  Each must fail within
 * timeout_ms plus a little, say what it did, and leave nothing running. */
#define GRACE_MS 500
static const struct start_case {
  const char *name;
  const char *script;           /* NULL: a file that is not executable */
  const char *want;             /* in the message, @SOCK@ the socket */
} start_cases[] = {
  { "never-ready",
    "echo $$ >> \"$0.pids\"; sleep 30 & echo $! >> \"$0.pids\"; wait\n",
    "never-ready did not get ready on @SOCK@ within timeout_ms (700 ms): killed it" },
  { "exit3", "exit 3\n", "exit3 did not start: it exited with status 3" },
  { "killed", "kill -9 $$\n", "killed did not start: it was killed by signal 9" },
  { "not-run", NULL, "not-run did not start: it could not be run: Permission denied" },
  { "never-listens",
    "sleep 30 & echo $! >> \"$0.pids\"; exit 0\n",
    "never-listens did not start: it exited but nothing listens on @SOCK@" },
  { "exit3-leaves-child",
    "sleep 30 & echo $! >> \"$0.pids\"; exit 3\n",
    "exit3-leaves-child did not start: it exited with status 3" },
  { "no-greeting",
    "FAKE_QSD_FAULT=no-greeting:1 exec @FAKE@ \"$@\"\n",
    "QMP: @SOCK@: qemu-storage-daemon did not answer: timed out waiting for its greeting" },
};

/* TEXT with its first KEY replaced by VALUE. */
static char *
subst (const char *text, const char *key, const char *value)
{
  const char *at = strstr (text, key);
  char *r;

  if (!at)
    r = strdup (text);
  else if (asprintf (&r, "%.*s%s%s", (int) (at - text), text, value, at + strlen (key)) == -1)
    r = NULL;
  assert_non_null (r);
  return r;
}

static char *
write_script (const struct start_case *c)
{
  const char *b = getenv ("builddir");
  char *path, *fake, *text;
  FILE *f;

  assert_int_not_equal (asprintf (&path, "%s/%s", dir, c->name), -1);
  assert_int_not_equal (asprintf (&fake, "%s/tests/fake-qsd", b && *b ? b : "."), -1);
  f = fopen (path, "w");
  assert_non_null (f);
  if (c->script) {
    text = subst (c->script, "@FAKE@", fake);
    fprintf (f, "#!/bin/sh\n%s", text);
    free (text);
  }
  assert_int_equal (fclose (f), 0);
  assert_int_equal (chmod (path, c->script ? 0755 : 0644), 0);
  free (fake);
  return path;
}

/* Every pid the script recorded is gone (a zombie counts as gone): a
 * SIGKILL sent to a process group lands a moment after kill returns. */
static void
assert_all_gone (const struct start_case *c, const char *script)
{
  char *pids, *line, *save = NULL, *path;

  assert_int_not_equal (asprintf (&path, "%s.pids", script), -1);
  pids = t_read_file (path, NULL);
  if (c->script && strstr (c->script, "$0.pids"))
    assert_non_null (pids);     /* or the check below proves nothing */
  for (line = pids ? strtok_r (pids, "\n", &save) : NULL; line;
       line = strtok_r (NULL, "\n", &save))
    for (int tries = 0; t_pid_alive ((pid_t) atoi (line)); tries++)
      if (tries < 100)
        usleep (10000);
      else
        fail_msg ("%s: process %s still runs", script, line);
  free (pids);
  free (path);
}

/* A daemon that did start (the fake one) is stopped through its pidfile. */
static void
stop_started (const char *sock)
{
  char *path, *pid;

  assert_int_not_equal (asprintf (&path, "%s.pid", sock), -1);
  if ((pid = t_read_file (path, NULL)) && atoi (pid) > 0)
    kill ((pid_t) atoi (pid), SIGKILL);
  free (pid);
  free (path);
}

static void
test_start_fails_in_time (void **state)
{
  for (size_t i = 0; i < sizeof start_cases / sizeof start_cases[0]; i++) {
    const struct start_case *c = &start_cases[i];
    char *binary = write_script (c), *sock, *want;
    struct ovl_config cfg = { .qsd_spawn = true, .qsd_daemons = 1, .timeout_ms = 700 };
    struct ovl_qmp *q;
    int64_t start = ovl_now_ms (), took;

    assert_int_not_equal (asprintf (&sock, "%s/run-%s/qsd.sock", dir, c->name), -1);
    want = subst (c->want, "@SOCK@", sock);
    cfg.qsd_socket = sock;
    cfg.qsd_binary = binary;
    q = ovl_qsd_connect (&cfg, 0, start + cfg.timeout_ms);
    /* The connection is lazy: the greeting is awaited with the first reply. */
    if (q)
      assert_null (ovl_qmp_command (q, "query-jobs", NULL, start + cfg.timeout_ms));
    took = ovl_now_ms () - start;
    if (!strstr (ovl_error_msg (), want))
      fail_msg ("%s: want '%s', got '%s'", c->name, want, ovl_error_msg ());
    if (took > cfg.timeout_ms + GRACE_MS)
      fail_msg ("%s: took %lld ms with timeout_ms %u", c->name, (long long) took, cfg.timeout_ms);
    ovl_qmp_close (q);
    stop_started (sock);
    assert_all_gone (c, binary);
    free (want);
    free (sock);
    free (binary);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_version_and_jobs),
    cmocka_unit_test (test_pipelined_burst),
    cmocka_unit_test (test_second_client_waits),
    cmocka_unit_test (test_quit),
    cmocka_unit_test (test_start_fails_in_time),
  };
  t_require (getenv ("QSD") && *getenv ("QSD") ? getenv ("QSD") : "qemu-storage-daemon");
  return cmocka_run_group_tests_name ("qsd", tests, setup, teardown);
}
