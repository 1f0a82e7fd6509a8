/* ovl_qsd_connect, the way production reaches qemu-storage-daemon: a
 * lazy connection to a running daemon, starting the real one when
 * nothing listens (once, however many callers come at once), replacing
 * only a dead daemon's socket, and starting a qsd_binary that
 * misbehaves. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
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


static const char *
qsd_program (void)
{
  const char *q = getenv ("QSD");
  return q && *q ? q : "/usr/bin/qemu-storage-daemon";
}

/* A configuration for a daemon on SOCK. */
static struct ovl_config
config_for (const char *sock, bool spawn)
{
  struct ovl_config cfg = {
    .qsd_socket = (char *) sock, .qsd_binary = (char *) qsd_program (),
    .qsd_spawn = spawn, .qsd_daemons = 1, .timeout_ms = 10000,
  };
  return cfg;
}

static bool
exists (const char *p)
{
  struct stat st;
  return lstat (p, &st) == 0;
}

/* query-jobs through Q answers (the lazy connection's greeting comes
 * with it). */
static void
assert_answers (struct ovl_qmp *q)
{
  struct ovl_json *r;

  if (!q)
    fail_msg ("connect: %s", ovl_error_msg ());
  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 10000);
  if (!r)
    fail_msg ("query-jobs: %s", ovl_error_msg ());
  assert_int_equal (r->type, OVL_JSON_ARRAY);
  ovl_json_free (r);
}

/* How many processes run with SOCK in their command line. */
static int
daemons_on (const char *sock)
{
  DIR *d = opendir ("/proc");
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d))) {
    char path[300], buf[8192];
    FILE *f;
    size_t len, i;

    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf (path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (!(f = fopen (path, "r")))
      continue;
    len = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    for (i = 0; i < len; i++)
      if (!buf[i])
        buf[i] = ' ';
    buf[len] = '\0';
    if (t_pid_alive ((pid_t) atoi (e->d_name)) && strstr (buf, sock) && strstr (buf, "--chardev"))
      n++;
  }
  closedir (d);
  return n;
}

/* Stop the daemon on SOCK that ovl_qsd_connect started. */
static void
quit_daemon (const struct ovl_config *cfg)
{
  struct ovl_qmp *q = ovl_qmp_connect (cfg->qsd_socket, ovl_now_ms () + 5000);
  struct ovl_json *r;

  assert_non_null (q);
  r = ovl_qmp_command (q, "quit", NULL, ovl_now_ms () + 5000);
  ovl_json_free (r);
  ovl_qmp_close (q);
  for (int i = 0; i < 500 && daemons_on (cfg->qsd_socket); i++)
    usleep (10000);
  assert_int_equal (daemons_on (cfg->qsd_socket), 0);
}

/* A daemon runs: the connection is made at once, nothing is started,
 * no start lock is taken. */
static void
test_connect_running (void **state)
{
  struct ovl_config cfg = config_for (qsd.sock, true);
  char *lock;
  struct ovl_qmp *q = ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 5000);

  assert_answers (q);
  ovl_qmp_close (q);
  assert_int_not_equal (asprintf (&lock, "%s.lock", qsd.sock), -1);
  assert_false (exists (lock));
  assert_int_equal (daemons_on (qsd.sock), 1);
  free (lock);
}

/* Nothing listens and qsd_spawn is off: an error that says so. */
static void
test_spawn_off (void **state)
{
  char *sock;
  struct ovl_config cfg;

  assert_int_not_equal (asprintf (&sock, "%s/off/qsd.sock", dir), -1);
  cfg = config_for (sock, false);
  assert_null (ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 2000));
  assert_non_null (strstr (ovl_error_msg (), "qemu-storage-daemon is not running and "
                           "qsd_spawn is off: "));
  assert_non_null (strstr (ovl_error_msg (), sock));
  assert_false (exists (sock));
  free (sock);
}

/* Nothing listens: the real daemon is started in a new private
 * directory; the next caller finds it and starts no other. */
static void
test_spawn_real (void **state)
{
  char *sock, *pidfile, *pid1, *pid2, *sub;
  struct ovl_config cfg;
  struct ovl_qmp *q;
  struct stat st;

  assert_int_not_equal (asprintf (&sub, "%s/run/deeper", dir), -1);
  assert_int_not_equal (asprintf (&sock, "%s/qsd.sock", sub), -1);
  assert_int_not_equal (asprintf (&pidfile, "%s.pid", sock), -1);
  cfg = config_for (sock, true);
  q = ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 10000);
  assert_answers (q);
  ovl_qmp_close (q);
  assert_int_equal (stat (sub, &st), 0);
  assert_int_equal (st.st_mode & 07777, 0700);
  pid1 = t_read_file (pidfile, NULL);
  assert_non_null (pid1);
  assert_true (t_pid_alive ((pid_t) atoi (pid1)));

  q = ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 10000);
  assert_answers (q);
  ovl_qmp_close (q);
  pid2 = t_read_file (pidfile, NULL);
  assert_string_equal (pid1, pid2);
  assert_int_equal (daemons_on (sock), 1);
  quit_daemon (&cfg);
  free (pid1); free (pid2); free (pidfile); free (sock); free (sub);
}

/* Eight callers find nothing listening at once: one daemon is started,
 * and every caller gets an answer from it. */
#define CALLERS 8
static void
test_spawn_concurrent (void **state)
{
  char *sock;
  struct ovl_config cfg;
  pid_t kids[CALLERS];
  int i, status;

  assert_int_not_equal (asprintf (&sock, "%s/many/qsd.sock", dir), -1);
  cfg = config_for (sock, true);
  for (i = 0; i < CALLERS; i++) {
    kids[i] = fork ();
    assert_true (kids[i] >= 0);
    if (kids[i] == 0) {
      struct ovl_qmp *q = ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 10000);
      struct ovl_json *r = q ? ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 10000) : NULL;
      int ok = r != NULL;
      if (!ok)
        fprintf (stderr, "caller %d: %s\n", i, ovl_error_msg ());
      ovl_json_free (r);
      ovl_qmp_close (q);
      _exit (ok ? 0 : 1);
    }
  }
  for (i = 0; i < CALLERS; i++) {
    assert_int_equal (waitpid (kids[i], &status, 0), kids[i]);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  }
  assert_int_equal (daemons_on (sock), 1);
  quit_daemon (&cfg);
  free (sock);
}

/* The socket a dead daemon left is replaced; anything else at that path
 * is an error, and is left as it is. */
static void
test_stale_socket (void **state)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  char *sdir, *sock, *text;
  struct ovl_config cfg;
  struct ovl_qmp *q;
  int fd;
  FILE *f;

  assert_int_not_equal (asprintf (&sdir, "%s/stale", dir), -1);
  assert_int_not_equal (asprintf (&sock, "%s/qsd.sock", sdir), -1);
  assert_int_equal (mkdir (sdir, 0700), 0);
  /* Bound, never listened on, closed: what a killed daemon leaves. */
  snprintf (sun.sun_path, sizeof sun.sun_path, "%s", sock);
  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal (bind (fd, (struct sockaddr *) &sun, sizeof sun), 0);
  close (fd);
  cfg = config_for (sock, true);
  q = ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 10000);
  assert_answers (q);
  ovl_qmp_close (q);
  quit_daemon (&cfg);

  /* A regular file at the socket's path. */
  unlink (sock);
  f = fopen (sock, "w");
  assert_non_null (f);
  fputs ("not a socket\n", f);
  fclose (f);
  assert_null (ovl_qsd_connect (&cfg, 0, ovl_now_ms () + 2000));
  assert_non_null (strstr (ovl_error_msg (), "exists and is not a socket"));
  text = t_read_file (sock, NULL);
  assert_string_equal (text, "not a socket\n");
  assert_int_equal (daemons_on (sock), 0);
  free (text); free (sock); free (sdir);
}

/* Daemon N > 0 listens beside the first. */
static void
test_socket_names (void **state)
{
  struct ovl_config cfg = config_for ("/run/virt-overlay/qsd.sock", true);
  char *a = ovl_qsd_socket (&cfg, 0), *b = ovl_qsd_socket (&cfg, 2);

  assert_string_equal (a, "/run/virt-overlay/qsd.sock");
  assert_string_equal (b, "/run/virt-overlay/qsd.sock.2");
  free (a);
  free (b);
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
    cmocka_unit_test (test_connect_running),
    cmocka_unit_test (test_spawn_off),
    cmocka_unit_test (test_spawn_real),
    cmocka_unit_test (test_spawn_concurrent),
    cmocka_unit_test (test_stale_socket),
    cmocka_unit_test (test_socket_names),
    cmocka_unit_test (test_start_fails_in_time),
  };
  t_require (getenv ("QSD") && *getenv ("QSD") ? getenv ("QSD") : "qemu-storage-daemon");
  return cmocka_run_group_tests_name ("qsd", tests, setup, teardown);
}
