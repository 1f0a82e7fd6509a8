/* The QMP client against the real qemu-storage-daemon. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <cmocka.h>

#include "error.h"
#include "qmp.h"
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
  assert_non_null (strstr (ovl_error_msg (), "timed out"));
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

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_version_and_jobs),
    cmocka_unit_test (test_pipelined_burst),
    cmocka_unit_test (test_second_client_waits),
    cmocka_unit_test (test_quit),
  };
  t_require (getenv ("QSD") && *getenv ("QSD") ? getenv ("QSD") : "qemu-storage-daemon");
  return cmocka_run_group_tests_name ("qsd", tests, setup, teardown);
}
