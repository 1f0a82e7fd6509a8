/* fake-qsd: a stand-in for qemu-storage-daemon that emulates the QMP
 * commands the engine sends, and fails on request.  Any other command,
 * or one of those with other arguments than the engine's (a member
 * missing, of another type, or unknown), ends it at once with a message
 * on stderr: the caller then fails, and so does its test.
 *
 *   fake-qsd --chardev socket,id=ID,path=SOCK[,...] --monitor chardev=ID
 *            [--pidfile FILE] [--daemonize]
 *
 * FAKE_QSD_FAULT selects the fault, N counting blockdev-create commands:
 *   error-create:N   job N concludes with an error
 *   stall-create:N   stop answering at command N (the client times out)
 *   kill-create:N    SIGKILL ourselves on receiving command N
 *   no-greeting:N    listen and accept, but never say a word (N unused)
 * It writes no image data: it is for batches that must fail.
 */
#include <config.h>

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

#define MAX_ITEMS 4096

static struct { char *id; char *error; } jobs[MAX_ITEMS];
static int creates;
static char fault[32];
static int fault_at;

static void
say (int fd, const char *fmt, ...) __attribute__((format (printf, 2, 3)));
static void
say (int fd, const char *fmt, ...)
{
  char *s;
  va_list ap;
  int n;
  va_start (ap, fmt);
  n = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (n > 0) {
    send (fd, s, (size_t) n, MSG_NOSIGNAL);
    free (s);
  }
}

static void
event (int fd, const char *job, const char *status)
{
  say (fd, "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, \"event\": \"JOB_STATUS_CHANGE\", "
       "\"data\": {\"status\": \"%s\", \"id\": \"%s\"}}\r\n", status, job);
}

static int
job_slot (const char *id)
{
  for (int i = 0; i < MAX_ITEMS; i++)
    if (jobs[i].id && strcmp (jobs[i].id, id) == 0)
      return i;
  return -1;
}

/* OBJ is an object with exactly the members SPEC lists: "name:T ..."
 * with T s (string), i (integer), b (boolean), o (object), or "-" for
 * no object at all. */
static bool
has_members (const struct ovl_json *obj, const char *spec)
{
  char copy[512], *tok, *save = NULL;
  size_t want = 0;

  if (strcmp (spec, "-") == 0)
    return obj == NULL;
  if (!obj || obj->type != OVL_JSON_OBJECT)
    return false;
  snprintf (copy, sizeof copy, "%s", spec);
  for (tok = strtok_r (copy, " ", &save); tok; tok = strtok_r (NULL, " ", &save)) {
    char *colon = strchr (tok, ':');
    const struct ovl_json *v;
    *colon = '\0';
    v = ovl_json_get (obj, tok);
    if (!v)
      return false;
    switch (colon[1]) {
    case 's': if (v->type != OVL_JSON_STRING) return false; break;
    case 'i': if (v->type != OVL_JSON_INT) return false; break;
    case 'b': if (v->type != OVL_JSON_BOOL) return false; break;
    case 'o': if (v->type != OVL_JSON_OBJECT) return false; break;
    }
    want++;
  }
  return obj->u.c.n == want;
}

static bool
str_is (const struct ovl_json *obj, const char *path, const char *want)
{
  const char *v = ovl_json_get_string (obj, path);
  return v && strcmp (v, want) == 0;
}

static bool
str_starts (const struct ovl_json *obj, const char *path, const char *prefix)
{
  const char *v = ovl_json_get_string (obj, path);
  return v && strncmp (v, prefix, strlen (prefix)) == 0;
}

/* The command is one the engine sends, with the engine's arguments. */
static bool
expected (const char *ex, const struct ovl_json *args)
{
  if (strcmp (ex, "qmp_capabilities") == 0 || strcmp (ex, "query-jobs") == 0 ||
      strcmp (ex, "quit") == 0)
    return has_members (args, "-");
  if (strcmp (ex, "job-dismiss") == 0)
    return has_members (args, "id:s");
  if (strcmp (ex, "blockdev-create") == 0) {
    const struct ovl_json *o = ovl_json_get (args, "options");
    const struct ovl_json *file = ovl_json_get (o, "file");
    return has_members (args, "job-id:s options:o") && str_starts (args, "job-id", "ovl-") &&
      has_members (o, "driver:s file:o size:i backing-file:s backing-fmt:s cluster-size:i "
                   "lazy-refcounts:b extended-l2:b") &&
      str_is (o, "driver", "qcow2") &&
      (str_is (o, "backing-fmt", "qcow2") || str_is (o, "backing-fmt", "raw")) &&
      str_starts (o, "backing-file", "/") &&
      has_members (file, "driver:s filename:s cache:o locking:s") &&
      str_is (file, "driver", "file") && str_starts (file, "filename", "/proc/") &&
      str_is (file, "locking", "off") &&
      has_members (ovl_json_get (file, "cache"), "no-flush:b");
  }
  return false;
}

/* Handle one command; false when the client must be dropped. */
static bool
handle (int fd, const struct ovl_json *cmd)
{
  const char *ex = ovl_json_get_string (cmd, "execute");
  const struct ovl_json *args = ovl_json_get (cmd, "arguments");
  long long id = 0;
  int i;

  ovl_json_get_int (cmd, "id", &id);
  if (!ex || !expected (ex, args)) {
    char *text = ovl_json_to_string (cmd);
    fprintf (stderr, "fake-qsd: a command the engine does not send: %s\n", text ? text : "?");
    exit (3);
  }
  if (strcmp (ex, "qmp_capabilities") == 0)
    say (fd, "{\"return\": {}, \"id\": %lld}\r\n", id);
  else if (strcmp (ex, "blockdev-create") == 0) {
    const char *job = ovl_json_get_string (args, "job-id");
    creates++;
    if (creates == fault_at && strcmp (fault, "kill-create") == 0)
      raise (SIGKILL);
    for (i = 0; jobs[i].id; i++)
      ;
    jobs[i].id = strdup (job);
    event (fd, job, "created");
    event (fd, job, "running");
    say (fd, "{\"return\": {}, \"id\": %lld}\r\n", id);
    if (creates == fault_at && strcmp (fault, "error-create") == 0) {
      jobs[i].error = strdup ("Could not write qcow2 header: Input/output error");
      event (fd, job, "aborting");
    }
    else {
      event (fd, job, "waiting");
      event (fd, job, "pending");
    }
    event (fd, job, "concluded");
  }
  else if (strcmp (ex, "query-jobs") == 0) {
    struct ovl_buf b = OVL_BUF_INIT;
    bool first = true;
    ovl_buf_printf (&b, "{\"return\": [");
    for (i = 0; i < MAX_ITEMS; i++)
      if (jobs[i].id) {
        ovl_buf_printf (&b, "%s{\"current-progress\": 1, \"status\": \"concluded\", "
                        "\"total-progress\": 1, \"type\": \"create\", \"id\": \"%s\"",
                        first ? "" : ", ", jobs[i].id);
        if (jobs[i].error)
          ovl_buf_printf (&b, ", \"error\": \"%s\"", jobs[i].error);
        ovl_buf_printf (&b, "}");
        first = false;
      }
    ovl_buf_printf (&b, "], \"id\": %lld}\r\n", id);
    say (fd, "%s", b.data);
    ovl_buf_reset (&b);
  }
  else if (strcmp (ex, "job-dismiss") == 0) {
    i = job_slot (ovl_json_get_string (args, "id"));
    if (i < 0)
      say (fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Job not found\"}, \"id\": %lld}\r\n", id);
    else {
      free (jobs[i].id); free (jobs[i].error);
      jobs[i].id = jobs[i].error = NULL;
      say (fd, "{\"return\": {}, \"id\": %lld}\r\n", id);
    }
  }
  else if (strcmp (ex, "quit") == 0) {
    say (fd, "{\"return\": {}, \"id\": %lld}\r\n", id);
    exit (0);
  }
  return true;
}

static void
serve (int fd)
{
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  char buf[65536];
  ssize_t n;
  bool stalled = false;

  if (strcmp (fault, "no-greeting") == 0)
    stalled = true;
  else
    say (fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
         "\"package\": \"fake-qsd\"}, \"capabilities\": [\"oob\"]}}\r\n");
  while ((n = read (fd, buf, sizeof buf)) > 0) {
    struct ovl_json *cmd;
    if (stalled)
      continue;
    if (ovl_json_parser_feed (p, buf, (size_t) n) == -1)
      break;
    while (!stalled && (cmd = ovl_json_parser_next (p))) {
      if (creates + 1 == fault_at && strcmp (fault, "stall-create") == 0 &&
          strcmp (ovl_json_get_string (cmd, "execute") ? : "", "blockdev-create") == 0)
        stalled = true;
      else
        handle (fd, cmd);
      ovl_json_free (cmd);
    }
  }
  ovl_json_parser_free (p);
  close (fd);
}

int
main (int argc, char **argv)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  const char *path = NULL, *pidfile = NULL, *f = getenv ("FAKE_QSD_FAULT");
  int i, lfd, ready[2] = { -1, -1 };
  bool daemonize = false;

  for (i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--chardev") == 0 && i + 1 < argc) {
      static char pathbuf[sizeof ((struct sockaddr_un *) 0)->sun_path];
      char *p = strstr (argv[++i], "path=");
      if (p) {
        snprintf (pathbuf, sizeof pathbuf, "%.*s", (int) strcspn (p + 5, ","), p + 5);
        path = pathbuf;
      }
    }
    else if (strcmp (argv[i], "--pidfile") == 0 && i + 1 < argc)
      pidfile = argv[++i];
    else if (strcmp (argv[i], "--monitor") == 0)
      i++;
    else if (strcmp (argv[i], "--daemonize") == 0)
      daemonize = true;
  }
  if (!path) {
    fprintf (stderr, "fake-qsd: no --chardev path\n");
    return 1;
  }
  if (f && sscanf (f, "%31[a-z-]:%d", fault, &fault_at) != 2) {
    fprintf (stderr, "fake-qsd: bad FAKE_QSD_FAULT '%s'\n", f);
    return 1;
  }
  /* Like qsd: with --daemonize the parent exits once we listen. */
  if (daemonize) {
    char c;
    if (pipe (ready) == -1)
      return 1;
    if (fork () > 0) {
      close (ready[1]);
      return read (ready[0], &c, 1) == 1 ? 0 : 1;
    }
    close (ready[0]);
    setsid ();
  }
  snprintf (sun.sun_path, sizeof sun.sun_path, "%s", path);
  lfd = socket (AF_UNIX, SOCK_STREAM, 0);
  unlink (path);
  if (bind (lfd, (struct sockaddr *) &sun, sizeof sun) == -1 || listen (lfd, 1) == -1) {
    perror ("fake-qsd: bind");
    return 1;
  }
  if (pidfile) {
    FILE *pf = fopen (pidfile, "w");
    if (pf) {
      fprintf (pf, "%d\n", (int) getpid ());
      fclose (pf);
    }
  }
  if (ready[1] >= 0) {
    if (write (ready[1], "x", 1) != 1)
      return 1;
    close (ready[1]);
  }
  for (;;) {
    int fd = accept (lfd, NULL, NULL);
    if (fd >= 0)
      serve (fd);
  }
}
