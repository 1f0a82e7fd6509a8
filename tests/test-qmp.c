/* The QMP client: against the scripted fake server (pipelining, events
 * between a command and its reply, split output, and every fault), then
 * against the real qemu-storage-daemon. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "config.h"
#include "error.h"
#include "overlay.h"
#include "qmp.h"
#include "util.h"
#include "fakeqmp.h"
#include "testutil.h"

#define CAPS { "qmp_capabilities", FAKE_SEND, FAKE_OK }
#define GREET { NULL, FAKE_SEND, FAKE_GREETING }

static char *dir;

static int
setup (void **state)
{
  dir = t_mkdtemp ();
  return 0;
}

static int
teardown (void **state)
{
  t_rmtree (dir);
  free (dir);
  return 0;
}

static void
finish (struct fake_qmp *f)
{
  char *why = NULL;
  if (fake_qmp_finish (f, &why) == -1)
    fail_msg ("fake server: %s", why);
}

/* Run SCRIPT; connect with a 2 s budget; expect connect to succeed. */
static struct ovl_qmp *
connect_fake (struct fake_qmp *f)
{
  struct ovl_qmp *q = ovl_qmp_connect (fake_qmp_socket (f), ovl_now_ms () + 2000);
  if (!q)
    fail_msg ("connect: %s", ovl_error_msg ());
  return q;
}

static void
test_roundtrip (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS,
    { "query-version", FAKE_SEND,
      "{\"return\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}, \"package\": \"\"}, \"id\": $ID}\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 3);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r;
  long long major;

  assert_int_equal (ovl_qmp_version (q), 70200);
  r = ovl_qmp_command (q, "query-version", NULL, ovl_now_ms () + 2000);
  assert_non_null (r);
  assert_int_equal (ovl_json_get_int (r, "qemu.major", &major), 0);
  assert_int_equal (major, 7);
  ovl_json_free (r);
  ovl_qmp_close (q);
  finish (f);
}

/* Three commands in flight, replies out of order with events between. */
static void
test_pipelined_out_of_order (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS,
    { "a", FAKE_SEND, "" },
    { "{\"execute\": \"b\", \"arguments\": {\"x\": 1}}", FAKE_SEND, "" },
    { "c", FAKE_SEND,
      "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"running\", \"id\": \"j1\"}, \"timestamp\": {}}\n"
      "{\"return\": 3, \"id\": $ID}\n"
      "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", \"id\": \"j2\"}, \"timestamp\": {}}\n"
      "{\"return\": 1, \"id\": $ID-2}{\"return\": 2, \"id\": $ID-1}\n"
      "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", \"id\": \"j1\"}, \"timestamp\": {}}\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 5);
  struct ovl_qmp *q = connect_fake (f);
  int64_t dl = ovl_now_ms () + 2000;
  uint64_t a = ovl_qmp_send (q, "a", NULL);
  uint64_t b = ovl_qmp_send (q, "b", "{\"x\": 1}");
  uint64_t c = ovl_qmp_send (q, "c", NULL);
  struct ovl_json *r;

  assert_true (a && b && c);
  r = ovl_qmp_wait (q, a, dl);
  assert_non_null (r);
  assert_int_equal (r->u.i, 1);
  ovl_json_free (r);
  r = ovl_qmp_wait (q, c, dl);
  assert_int_equal (r->u.i, 3);
  ovl_json_free (r);
  r = ovl_qmp_wait (q, b, dl);
  assert_int_equal (r->u.i, 2);
  ovl_json_free (r);

  /* All three events are queued; take them by matching data. */
  r = ovl_qmp_wait_event (q, dl, "JOB_STATUS_CHANGE", "id", "j1", "status", "concluded", NULL);
  assert_non_null (r);
  ovl_json_free (r);
  r = ovl_qmp_wait_event (q, dl, "JOB_STATUS_CHANGE", "id", "j2", NULL);
  assert_non_null (r);
  ovl_json_free (r);
  assert_int_equal (ovl_qmp_events_queued (q), 1);
  /* A reply cannot be taken twice. */
  assert_null (ovl_qmp_wait (q, a, dl));
  ovl_qmp_close (q);
  finish (f);
}

static void
test_split_output (void **state)
{
  static const struct fake_step script[] = {
    { NULL, FAKE_SEND_SPLIT, FAKE_GREETING },
    { "qmp_capabilities", FAKE_SEND_SPLIT, FAKE_OK },
    { "query-jobs", FAKE_SEND_SPLIT,
      "{\"event\": \"X\", \"data\": {}, \"timestamp\": {}}{\"return\": [{\"id\": \"j\", \"status\": \"concluded\", \"error\": \"boom \\\"quoted\\\"\"}], \"id\": $ID}" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 3);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000);

  assert_non_null (r);
  assert_string_equal (ovl_json_get_string (ovl_json_array_at (r, 0), "error"), "boom \"quoted\"");
  ovl_json_free (r);
  assert_int_equal (ovl_qmp_events_queued (q), 1);
  ovl_qmp_close (q);
  finish (f);
}

/* A slow reply within the deadline is waited for; past it, it is not. */
static void
test_delayed_reply (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS,
    { "query-jobs", FAKE_SEND_DELAYED, "{\"return\": [], \"id\": $ID}\n" },
    { "query-jobs", FAKE_SEND_DELAYED, "{\"return\": [], \"id\": $ID}\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 4);
  struct ovl_qmp *q = connect_fake (f);
  int64_t t0 = ovl_now_ms ();
  struct ovl_json *r = ovl_qmp_command (q, "query-jobs", NULL, t0 + 2000);

  assert_non_null (r);
  assert_true (ovl_now_ms () - t0 >= 190);
  ovl_json_free (r);
  assert_null (ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 50));
  assert_non_null (strstr (ovl_error_msg (), "timed out"));
  ovl_qmp_close (q);
  finish (f);
}

static void
test_error_reply (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS,
    { "{\"execute\": \"blockdev-add\", \"arguments\": {}}", FAKE_SEND,
      "{\"id\": $ID, \"error\": {\"class\": \"GenericError\", \"desc\": \"Could not open '/x': Permission denied\"}}\n" },
    { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 4);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r = ovl_qmp_command (q, "blockdev-add", "{}", ovl_now_ms () + 2000);

  assert_null (r);
  assert_string_equal (ovl_error_msg (),
                       "blockdev-add: GenericError: Could not open '/x': Permission denied");
  /* An error reply is not fatal for the connection. */
  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000);
  assert_non_null (r);
  assert_int_equal (ovl_json_array_len (r), 0);
  ovl_json_free (r);
  ovl_qmp_close (q);
  finish (f);
}

/* Faults that end the connection: each gives its message, and the
 * connection refuses further use with the same error. */
struct fault {
  const char *name;
  struct fake_step step;
  const char *want;
};

static const struct fault faults[] = {
  { "stall", { "query-jobs", FAKE_STALL, NULL }, "timed out" },
  { "stall-mid-message", { "query-jobs", FAKE_SEND, "{\"return\": [" }, "in the middle of a message" },
  { "close", { "query-jobs", FAKE_CLOSE, NULL }, "closed the connection" },
  { "close-mid-message", { "query-jobs", FAKE_SEND, "{\"return\": [], \"i" }, "in the middle of a message" },
  { "corrupt", { "query-jobs", FAKE_SEND, "{\"return\": [}, \"id\": $ID}\n" }, "malformed JSON" },
  { "no-return", { "query-jobs", FAKE_SEND, "{\"id\": $ID, \"foo\": 1}\n" }, "neither a reply nor an event" },
  { "twice", { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}{\"return\": [], \"id\": $ID}\n" },
    "unknown id" },
  { "no-id", { "query-jobs", FAKE_SEND, "{\"return\": []}\n" }, "missing or unknown id" },
  { "string-id", { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": \"1\"}\n" }, "missing or unknown id" },
};

static void
test_faults (void **state)
{
  size_t i;

  for (i = 0; i < sizeof faults / sizeof faults[0]; i++) {
    /* After a reply the fake must see us leave (stall), except where the
     * fault is closing the connection; a fault that stalls or closes by
     * itself never reaches the last step. */
    struct fake_step script[4] = {
      GREET, CAPS, faults[i].step,
      { NULL, strstr (faults[i].name, "close") ? FAKE_CLOSE : FAKE_STALL, NULL },
    };
    struct fake_qmp *f = fake_qmp_start (dir, script, 4);
    struct ovl_qmp *q;
    int64_t t0;
    struct ovl_json *r;
    bool stall;

    q = connect_fake (f);
    /* Only the stalls wait for the deadline: the others, given a long
     * one, fail at once with their own error, not a time-out. */
    stall = strstr (faults[i].name, "stall") != NULL;
    t0 = ovl_now_ms ();
    r = ovl_qmp_command (q, "query-jobs", NULL, t0 + (stall ? 300 : 20000));
    if (r)
      fail_msg ("%s: command succeeded", faults[i].name);
    if (!strstr (ovl_error_msg (), faults[i].want))
      fail_msg ("%s: got '%s', want '%s'", faults[i].name, ovl_error_msg (), faults[i].want);
    if (stall)
      assert_true (ovl_now_ms () - t0 >= 290);
    else if (strstr (ovl_error_msg (), "timed out") || ovl_now_ms () - t0 >= 20000)
      fail_msg ("%s: waited for the deadline: %s", faults[i].name, ovl_error_msg ());
    assert_null (ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 300));
    assert_non_null (strstr (ovl_error_msg (), faults[i].want));
    ovl_qmp_close (q);
    finish (f);
  }
}

static void
test_oversize_reply (void **state)
{
  size_t n = 2 * 1024 * 1024;
  char *big = malloc (n + 64);
  struct fake_step script[4] = { GREET, CAPS, { "query-jobs", FAKE_SEND, NULL },
                                 { NULL, FAKE_STALL, NULL } };
  struct fake_qmp *f;
  struct ovl_qmp *q;

  strcpy (big, "{\"return\": \"");
  memset (big + 12, 'x', n);
  strcpy (big + 12 + n, "\", \"id\": $ID}\n");
  script[2].text = big;
  f = fake_qmp_start (dir, script, 4);
  q = connect_fake (f);
  assert_null (ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000));
  assert_non_null (strstr (ovl_error_msg (), "message too large"));
  ovl_qmp_close (q);
  finish (f);
  free (big);
}

static void
test_bad_greeting (void **state)
{
  static const struct fake_step script[] = {
    { NULL, FAKE_SEND, "{\"hello\": 1}\n" },
    { NULL, FAKE_STALL, NULL },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 2);
  struct ovl_qmp *q = ovl_qmp_connect (fake_qmp_socket (f), ovl_now_ms () + 1000);

  assert_null (q);
  assert_non_null (strstr (ovl_error_msg (), "did not greet"));
  finish (f);
}

/* What qsd sends for a client that left (killed in the middle of a
 * command): its replies and events reach the next client, before and
 * after that one's greeting.  They are skipped; ids start at random, so
 * none can pass for a reply to ours. */
#define STALE_REPLY "{\"return\": {}, \"id\": 3}\n"
#define STALE_EVENT "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"null\", \"id\": \"x\"}, \"timestamp\": {}}\n"

static void
test_stale_replies (void **state)
{
  static const struct fake_step script[] = {
    { NULL, FAKE_SEND, STALE_REPLY STALE_EVENT "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}, \"id\": 4}\n" },
    GREET, CAPS,
    { "query-jobs", FAKE_SEND, STALE_REPLY "{\"return\": [], \"id\": $ID}\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 4);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r;
  uint64_t id;

  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000);
  assert_non_null (r);
  assert_int_equal (ovl_json_array_len (r), 0);
  ovl_json_free (r);
  /* The stale event is not one of this client's. */
  assert_int_equal (ovl_qmp_events_queued (q), 0);
  /* Ids are not small numbers an earlier client used too. */
  id = ovl_qmp_send (q, "x", NULL);
  assert_true (id > 65536);
  ovl_qmp_close (q);
  finish (f);
}

/* A daemon that drops the connection before greeting ran nothing of
 * it: the client connects again and sends it all again, unseen by the
 * caller, a few times at most. */
static void
test_dropped_before_greeting (void **state)
{
  static const struct fake_step script[] = {
    { NULL, FAKE_DROP, NULL },
    { NULL, FAKE_DROP, NULL },
    GREET, CAPS,
    { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}\n" },
  };
  static const struct fake_step hopeless[] = {
    { NULL, FAKE_DROP, NULL }, { NULL, FAKE_DROP, NULL }, { NULL, FAKE_DROP, NULL },
    { NULL, FAKE_CLOSE, NULL },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 5);
  struct ovl_qmp *q = ovl_qmp_connect_lazy (fake_qmp_socket (f), ovl_now_ms () + 5000);
  struct ovl_json *r;

  assert_non_null (q);
  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 5000);
  if (!r)
    fail_msg ("%s", ovl_error_msg ());
  assert_int_equal (ovl_json_array_len (r), 0);
  ovl_json_free (r);
  ovl_qmp_close (q);
  finish (f);

  /* Dropped every time: an error, not a loop. */
  f = fake_qmp_start (dir, hopeless, 4);
  q = ovl_qmp_connect_lazy (fake_qmp_socket (f), ovl_now_ms () + 5000);
  assert_non_null (q);
  assert_null (ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 5000));
  if (!strstr (ovl_error_msg (), "reset") && !strstr (ovl_error_msg (), "closed the connection") &&
      !strstr (ovl_error_msg (), "Broken pipe"))
    fail_msg ("%s", ovl_error_msg ());
  ovl_qmp_close (q);
  finish (f);
}

/* A monitor that sends nothing but replies that are not ours is not
 * waited for forever: after MAX_STALE of them, an error. */
static void
test_stale_flood (void **state)
{
  char *flood = malloc (300 * sizeof STALE_REPLY + 1);
  struct fake_step script[2] = { { NULL, FAKE_SEND, NULL }, { NULL, FAKE_STALL, NULL } };
  struct fake_qmp *f;
  struct ovl_qmp *q;
  int i;

  flood[0] = '\0';
  for (i = 0; i < 300; i++)
    strcat (flood, STALE_REPLY);
  script[0].text = flood;
  f = fake_qmp_start (dir, script, 2);
  q = ovl_qmp_connect (fake_qmp_socket (f), ovl_now_ms () + 2000);
  assert_null (q);
  assert_non_null (strstr (ovl_error_msg (), "did not greet"));
  finish (f);
  free (flood);
}

static void
test_no_greeting (void **state)
{
  static const struct fake_step script[] = { { NULL, FAKE_STALL, NULL } };
  struct fake_qmp *f = fake_qmp_start (dir, script, 1);
  struct ovl_qmp *q = ovl_qmp_connect (fake_qmp_socket (f), ovl_now_ms () + 200);

  assert_null (q);
  assert_non_null (strstr (ovl_error_msg (), "timed out"));
  finish (f);
}

static void
test_no_server (void **state)
{
  char *path;
  assert_true (asprintf (&path, "%s/nothing.sock", dir) > 0);
  assert_null (ovl_qmp_connect (path, ovl_now_ms () + 200));
  assert_non_null (strstr (ovl_error_msg (), "No such file"));
  free (path);
}

/* The fake itself fails a test on an unexpected command. */
static void
test_fake_catches_unexpected (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS, { "query-jobs", FAKE_SEND, FAKE_OK },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 3);
  struct ovl_qmp *q = connect_fake (f);
  char *why = NULL;

  ovl_qmp_send (q, "quit", NULL);
  ovl_qmp_flush (q, ovl_now_ms () + 1000);
  ovl_qmp_close (q);
  assert_int_equal (fake_qmp_finish (f, &why), -1);
  assert_non_null (strstr (why, "unexpected command"));
  free (why);
}

/* A whole command is compared, arguments and all, but not its id. */
static void
test_fake_compares_arguments (void **state)
{
  static const struct fake_step script[] = {
    GREET, CAPS,
    { "{\"execute\": \"job-dismiss\", \"arguments\": {\"id\": \"j1\"}}", FAKE_SEND, FAKE_OK },
    { "{\"execute\": \"job-dismiss\", \"arguments\": {\"id\": \"j2\"}}", FAKE_SEND, FAKE_OK },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 4);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r;
  char *why = NULL;

  r = ovl_qmp_command (q, "job-dismiss", "{\"id\": \"j1\"}", ovl_now_ms () + 2000);
  if (!r)
    fail_msg ("%s", ovl_error_msg ());
  ovl_json_free (r);
  /* The same command with another argument is not the one scripted. */
  ovl_qmp_send (q, "job-dismiss", "{\"id\": \"j3\"}");
  ovl_qmp_flush (q, ovl_now_ms () + 1000);
  ovl_qmp_close (q);
  assert_int_equal (fake_qmp_finish (f, &why), -1);
  assert_non_null (strstr (why, "unexpected command"));
  assert_non_null (strstr (why, "j3"));
  free (why);
}

/* ---- against the real qemu-storage-daemon ---- */

static struct t_qsd qsd;

static int
setup_qsd (void **state)
{
  dir = t_mkdtemp ();
  if (t_qsd_start (&qsd, dir) == -1) {
    fprintf (stderr, "cannot start qemu-storage-daemon\n");
    return -1;
  }
  return 0;
}

static int
teardown_qsd (void **state)
{
  t_qsd_stop (&qsd);
  return teardown (state);
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

/* A session qsd left in command mode (an earlier client's
 * qmp_capabilities, run after it left, landed on ours): the refusal of
 * ours is no failure. */
static void
test_caps_already_done (void **state)
{
  static const struct fake_step script[] = {
    GREET,
    { "qmp_capabilities", FAKE_SEND,
      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation "
      "is already complete, command ignored\"}, \"id\": $ID}\r\n" },
    { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}\r\n" },
  };
  struct fake_qmp *f = fake_qmp_start (dir, script, 3);
  struct ovl_qmp *q = connect_fake (f);
  struct ovl_json *r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000);

  if (!r)
    fail_msg ("query-jobs: %s", ovl_error_msg ());
  ovl_json_free (r);
  ovl_qmp_close (q);
  finish (f);
}

/* A creation whose connection breaks after its blockdev-create went
 * out: qsd may still run the job, which opens /proc/OURPID/fd/N, and N
 * must not name another file by then (a base, which qsd would format).
 * The caller asks qsd afresh, on a new connection, whether the job is
 * still to come; only then is N closed.  When it cannot tell (the new
 * connection breaks too), N stays open, naming the unlinked temporary
 * file and nothing else. */
enum broken { TOLD, NOT_TOLD, TIMED_OUT };

static void
broken_create (enum broken how)
{
  static const struct fake_step told[] = {
    GREET, CAPS, { "blockdev-create", FAKE_NEXT, NULL },
    GREET, CAPS, { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}\r\n" },
  };
  static const struct fake_step not_told[] = {
    GREET, CAPS, { "blockdev-create", FAKE_NEXT, NULL },
    { NULL, FAKE_CLOSE, NULL },
  };
  /* qsd stalls: the exchange times out, and the caller still has time
   * to ask, within its budget. */
  static const struct fake_step timed_out[] = {
    GREET, CAPS, { "blockdev-create", FAKE_STALL_NEXT, NULL },
    GREET, CAPS, { "query-jobs", FAKE_SEND, "{\"return\": [], \"id\": $ID}\r\n" },
  };
  bool can_tell = how != NOT_TOLD;
  /* Counted before the fake server and after it is gone: its thread's
   * descriptors are this process's too. */
  int before = t_open_fds (), after;
  struct fake_qmp *f = how == TOLD ? fake_qmp_start (dir, told, 6)
    : how == NOT_TOLD ? fake_qmp_start (dir, not_told, 4) : fake_qmp_start (dir, timed_out, 6);
  int64_t t0, took;
  char *img, *base, *text, *ov;
  struct ovl_config *cfg;
  struct ovl_request r = { 0 };
  struct ovl_result res = { 0 };
  int fd, i;
  struct stat st;

  assert_true (asprintf (&img, "%s/img-%d", dir, (int) how) > 0);
  assert_true (asprintf (&base, "%s/base.raw", img) > 0);
  assert_true (asprintf (&ov, "%s/ov.qcow2", img) > 0);
  assert_int_equal (mkdir (img, 0755), 0);
  fd = open (base, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, 1 << 20), 0);
  close (fd);
  assert_true (asprintf (&text, "qsd_socket = %s\nqsd_spawn = off\noverlay_dirs = %s\n"
                         "base_dirs = %s\nstate_dir = %s\ntimeout_ms = 5000\n",
                         fake_qmp_socket (f), img, img, dir) > 0);
  cfg = ovl_config_parse ("broken", text, strlen (text));
  assert_non_null (cfg);
  ovl_request_defaults (&r, cfg);
  r.base = base;
  r.base_format = OVL_FMT_RAW;
  r.overlay = ov;

  t0 = ovl_now_ms ();
  assert_int_equal (ovl_overlay_create (cfg, &r, &res, 1, t0 + 1500, NULL), -1);
  took = ovl_now_ms () - t0;
  /* Within the budget (the test's margin is for a loaded machine). */
  if (took > 1500 + 1000)
    fail_msg ("took %lld ms with a budget of 1500 ms", (long long) took);
  /* It failed at the broken connection, not before (else the fake server waits for ever). */
  if (!strstr (ovl_error_msg (), "qemu-storage-daemon") && !strstr (ovl_error_msg (), "QMP"))
    fail_msg ("failed before qsd: %s", ovl_error_msg ());
  ovl_result_clear (&res);
  finish (f);
  after = t_open_fds ();
  assert_int_equal (after, before + (can_tell ? 0 : 1));
  /* The one left open is the temporary file, unlinked. */
  for (i = 3; !can_tell && i < 1024; i++)
    if (fstat (i, &st) == 0 && S_ISREG (st.st_mode) && st.st_nlink == 0) {
      close (i);
      break;
    }
  assert_true (can_tell || i < 1024);
  assert_false (access (ov, F_OK) == 0);
  ovl_config_free (cfg);
  free (img); free (base); free (text); free (ov);
}

static void
test_broken_create_settles (void **state)
{
  broken_create (TOLD);
}

static void
test_broken_create_unsettled (void **state)
{
  broken_create (NOT_TOLD);
}

static void
test_broken_create_timed_out (void **state)
{
  broken_create (TIMED_OUT);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_roundtrip),
    cmocka_unit_test (test_pipelined_out_of_order),
    cmocka_unit_test (test_split_output),
    cmocka_unit_test (test_delayed_reply),
    cmocka_unit_test (test_error_reply),
    cmocka_unit_test (test_faults),
    cmocka_unit_test (test_oversize_reply),
    cmocka_unit_test (test_bad_greeting),
    cmocka_unit_test (test_stale_replies),
    cmocka_unit_test (test_stale_flood),
    cmocka_unit_test (test_dropped_before_greeting),
    cmocka_unit_test (test_no_greeting),
    cmocka_unit_test (test_no_server),
    cmocka_unit_test (test_fake_catches_unexpected),
    cmocka_unit_test (test_fake_compares_arguments),
    cmocka_unit_test (test_caps_already_done),
    cmocka_unit_test (test_broken_create_settles),
    cmocka_unit_test (test_broken_create_unsettled),
    cmocka_unit_test (test_broken_create_timed_out),
  };
  const struct CMUnitTest real[] = {
    cmocka_unit_test (test_version_and_jobs),
    cmocka_unit_test (test_pipelined_burst),
    cmocka_unit_test (test_second_client_waits),
    cmocka_unit_test (test_quit),         /* last: it stops the daemon */
  };
  int failed = cmocka_run_group_tests_name ("qmp, fake server", tests, setup, teardown);

  t_require (getenv ("QSD") && *getenv ("QSD") ? getenv ("QSD") : "qemu-storage-daemon");
  return failed + cmocka_run_group_tests_name ("qmp, real qemu-storage-daemon", real,
                                               setup_qsd, teardown_qsd);
}
