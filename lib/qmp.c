/* QMP client; see qmp.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "qmp.h"
#include "util.h"

#define MAX_QUEUED 4096         /* events or early replies held at once */
#define MAX_STALE 256           /* messages of an earlier client skipped */
#define READ_CHUNK 65536

struct pending {
  uint64_t id;
  char *execute;
  struct ovl_json *reply;       /* set once it arrived */
};

struct ovl_qmp {
  int fd;
  char *path;                   /* the socket, for messages */
  struct ovl_json_parser *parser;
  struct ovl_buf out;
  uint64_t next_id;             /* random start: see open_fd */
  struct ovl_buf sent;          /* everything written before the greeting */
  unsigned redials;             /* connections dropped before the greeting */
  size_t stale;                 /* messages meant for an earlier client, skipped */
  unsigned version;
  bool greeted;
  uint64_t caps_id;             /* qmp_capabilities in flight, or 0 */
  char *fatal;                  /* first fatal error, repeated afterwards */

  struct pending *pending;
  size_t npending, pending_cap;

  struct ovl_json **events;
  size_t nevents, events_cap;
};

static void
set_fatal (struct ovl_qmp *q)
{
  if (!q->fatal)
    q->fatal = strdup (ovl_error_msg ());
}

static int
check_fatal (struct ovl_qmp *q)
{
  if (q->fatal) {
    ovl_error ("%s", q->fatal);
    return -1;
  }
  return 0;
}

void
ovl_qmp_close (struct ovl_qmp *q)
{
  size_t i;

  if (!q)
    return;
  if (q->fd >= 0)
    close (q->fd);
  ovl_json_parser_free (q->parser);
  ovl_buf_reset (&q->out);
  ovl_buf_reset (&q->sent);
  for (i = 0; i < q->npending; i++) {
    free (q->pending[i].execute);
    ovl_json_free (q->pending[i].reply);
  }
  free (q->pending);
  for (i = 0; i < q->nevents; i++)
    ovl_json_free (q->events[i]);
  free (q->events);
  free (q->fatal);
  free (q->path);
  free (q);
}

static struct pending *
find_pending (struct ovl_qmp *q, uint64_t id)
{
  size_t i;
  for (i = 0; i < q->npending; i++)
    if (q->pending[i].id == id)
      return &q->pending[i];
  return NULL;
}

static void
remove_pending (struct ovl_qmp *q, struct pending *p)
{
  free (p->execute);
  ovl_json_free (p->reply);
  *p = q->pending[--q->npending];
}

static struct ovl_json *take_return (struct ovl_json *reply, const char *execute);

/* A message meant for an earlier client of the monitor: qsd finishes a
 * command of a client that left (killed, or gone after an error) and
 * sends its reply, and events, to whoever is connected then, before or
 * after the new client's greeting.  Skipped, up to MAX_STALE. */
static bool
skip_stale (struct ovl_qmp *q, struct ovl_json *msg)
{
  if (q->stale >= MAX_STALE)
    return false;
  q->stale++;
  ovl_json_free (msg);
  return true;
}

/* The first message must be the banner (after any replies and events
 * left for an earlier client); remember the version. */
static int
greeting (struct ovl_qmp *q, struct ovl_json *msg)
{
  long long major = 0, minor = 0, micro = 0;

  if (!ovl_json_get (msg, "QMP")) {
    if ((ovl_json_get (msg, "event") || ovl_json_get (msg, "return") ||
         ovl_json_get (msg, "error")) && skip_stale (q, msg))
      return 0;
    ovl_json_free (msg);
    ovl_error ("QMP: peer did not greet with a QMP banner");
    return -1;
  }
  ovl_json_get_int (msg, "QMP.version.qemu.major", &major);
  ovl_json_get_int (msg, "QMP.version.qemu.minor", &minor);
  ovl_json_get_int (msg, "QMP.version.qemu.micro", &micro);
  q->version = (unsigned) (major * 10000 + minor * 100 + micro);
  q->greeted = true;
  ovl_buf_reset (&q->sent);
  ovl_json_free (msg);
  return 0;
}

/* Route one complete message: a reply to its command, an event to the
 * queue.  Anything else is a protocol error. */
static int
dispatch (struct ovl_qmp *q, struct ovl_json *msg)
{
  const struct ovl_json *idv;
  struct pending *p;

  if (!q->greeted)
    return greeting (q, msg);
  if (ovl_json_get (msg, "event")) {
    if (q->nevents >= MAX_QUEUED) {
      ovl_json_free (msg);
      ovl_error ("QMP: too many unclaimed events");
      return -1;
    }
    if (OVL_RESERVE (q->events, q->events_cap, q->nevents + 1, 16) == -1) {
      ovl_json_free (msg);
      return -1;
    }
    q->events[q->nevents++] = msg;
    return 0;
  }

  if (!ovl_json_get (msg, "return") && !ovl_json_get (msg, "error")) {
    ovl_json_free (msg);
    ovl_error ("QMP: message is neither a reply nor an event");
    return -1;
  }
  idv = ovl_json_get (msg, "id");
  if (q->caps_id && idv && idv->type == OVL_JSON_INT && (uint64_t) idv->u.i == q->caps_id) {
    struct ovl_json *ret;
    const struct ovl_json *err = ovl_json_get (msg, "error");
    const char *desc = err ? ovl_json_get_string (err, "desc") : NULL;

    p = find_pending (q, q->caps_id);
    q->caps_id = 0;
    /* A session already in command mode: qsd keeps one monitor per
     * socket, and the qmp_capabilities of a client that left may be run
     * after the next client's greeting.  Negotiated all the same. */
    if (desc && strstr (desc, "negotiation is already complete")) {
      ovl_json_free (msg);
      remove_pending (q, p);
      return 0;
    }
    ret = take_return (msg, "qmp_capabilities");
    remove_pending (q, p);
    if (!ret)
      return -1;
    ovl_json_free (ret);
    return 0;
  }
  if (!idv || idv->type != OVL_JSON_INT || idv->u.i <= 0) {
    ovl_json_free (msg);
    ovl_error ("QMP: reply with a missing or unknown id");
    return -1;
  }
  p = find_pending (q, (uint64_t) idv->u.i);
  /* Ids start at random, so one that is not ours was an earlier
   * client's. */
  if (!p && skip_stale (q, msg))
    return 0;
  if (!p || p->reply) {
    ovl_json_free (msg);
    ovl_error ("QMP: reply with a missing or unknown id");
    return -1;
  }
  p->reply = msg;
  return 0;
}

static int dial (const char *path, int64_t deadline);

#define MAX_REDIALS 3

/* The daemon dropped the connection before greeting us: it never opened
 * a monitor session on it (qsd greets first and reads after), so none of
 * what we sent was run.  Seen when a client connects while qsd is still
 * tearing down the previous one's, which ended abruptly.  Connect again
 * and send it all again, a few times at most.  0, or -1 (error set). */
static int
redial (struct ovl_qmp *q, int64_t deadline)
{
  struct ovl_buf again = OVL_BUF_INIT;
  struct ovl_json_parser *parser;
  int fd, flags;

  if (q->greeted || q->redials >= MAX_REDIALS)
    return -1;
  q->redials++;
  if (!(parser = ovl_json_parser_new (0, 0)))
    return -1;
  if ((fd = dial (q->path, deadline)) == -1) {
    ovl_json_parser_free (parser);
    return -1;
  }
  if ((flags = fcntl (fd, F_GETFL)) == -1 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) == -1)
    ovl_error ("QMP: fcntl: %m");
  else if ((!q->sent.len || ovl_buf_append (&again, q->sent.data, q->sent.len) == 0) &&
           (!q->out.len || ovl_buf_append (&again, q->out.data, q->out.len) == 0))
    flags = 0;                  /* done */
  else
    flags = -1;
  if (flags == -1) {
    close (fd);
    ovl_json_parser_free (parser);
    ovl_buf_reset (&again);
    return -1;
  }
  close (q->fd);
  q->fd = fd;
  ovl_json_parser_free (q->parser);
  q->parser = parser;
  ovl_buf_reset (&q->out);
  ovl_buf_reset (&q->sent);
  q->out = again;
  return 0;
}

/* Write what is queued and read what is available, waiting at most until
 * DEADLINE for progress.  Returns 0 after some progress, -1 on error. */
static int
pump (struct ovl_qmp *q, int64_t deadline)
{
  struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
  char buf[READ_CHUNK];
  struct ovl_json *msg;
  ssize_t n;
  int r;

  if (q->out.len)
    pfd.events |= POLLOUT;
  do
    r = poll (&pfd, 1, ovl_ms_left (deadline));
  while (r == -1 && errno == EINTR);
  if (r == -1) {
    ovl_error ("QMP: poll: %m");
    return -1;
  }
  if (r == 0) {
    /* Connected, but qsd is silent: say so, and how far it got. */
    ovl_error ("QMP: %s: qemu-storage-daemon did not answer: timed out waiting for %s%s",
               q->path,
               !q->greeted ? "its greeting" : q->caps_id ? "its reply to qmp_capabilities" :
               "its replies and events",
               ovl_json_parser_in_message (q->parser) ? " (in the middle of a message)" : "");
    return -1;
  }

  if (pfd.revents & POLLOUT) {
    n = send (q->fd, q->out.data, q->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == -1 && errno != EAGAIN && errno != EINTR) {
      if ((errno == EPIPE || errno == ECONNRESET) && redial (q, deadline) == 0)
        return 0;
      ovl_error ("QMP: send: %m");
      return -1;
    }
    if (n > 0) {
      if (!q->greeted && ovl_buf_append (&q->sent, q->out.data, (size_t) n) == -1)
        return -1;
      ovl_buf_consume (&q->out, (size_t) n);
    }
  }

  if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
    n = recv (q->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == -1) {
      if (errno == EAGAIN || errno == EINTR)
        return 0;
      if (errno == ECONNRESET && !ovl_json_parser_in_message (q->parser) && redial (q, deadline) == 0)
        return 0;
      ovl_error ("QMP: recv: %m");
      return -1;
    }
    if (n == 0 && !q->greeted && !ovl_json_parser_in_message (q->parser) &&
        redial (q, deadline) == 0)
      return 0;
    if (n == 0) {
      if (ovl_json_parser_finish (q->parser) == 0)
        ovl_error ("QMP: qemu-storage-daemon closed the connection");
      return -1;
    }
    if (ovl_json_parser_feed (q->parser, buf, (size_t) n) == -1)
      return -1;
    while ((msg = ovl_json_parser_next (q->parser)))
      if (dispatch (q, msg) == -1)
        return -1;
  }
  return 0;
}

int
ovl_qmp_flush (struct ovl_qmp *q, int64_t deadline)
{
  if (check_fatal (q) == -1)
    return -1;
  while (q->out.len)
    if (pump (q, deadline) == -1) {
      set_fatal (q);
      return -1;
    }
  return 0;
}

uint64_t
ovl_qmp_send (struct ovl_qmp *q, const char *execute, const char *args)
{
  struct pending *p;
  uint64_t id;

  if (check_fatal (q) == -1)
    return 0;
  if (q->npending >= MAX_QUEUED) {
    ovl_error ("QMP: too many commands in flight");
    return 0;
  }
  if (OVL_RESERVE (q->pending, q->pending_cap, q->npending + 1, 16) == -1)
    return 0;
  id = ++q->next_id;
  if (ovl_buf_printf (&q->out, "{\"execute\":") == -1 ||
      ovl_json_append_string (&q->out, execute) == -1 ||
      (args && ovl_buf_printf (&q->out, ",\"arguments\":%s", args) == -1) ||
      ovl_buf_printf (&q->out, ",\"id\":%llu}\n", (unsigned long long) id) == -1)
    return 0;
  p = &q->pending[q->npending];
  p->id = id;
  p->reply = NULL;
  if (!(p->execute = ovl_strdup (execute)))
    return 0;
  q->npending++;
  return id;
}

/* Turn a reply into its return value, or the error it carries. */
static struct ovl_json *
take_return (struct ovl_json *reply, const char *execute)
{
  const struct ovl_json *err = ovl_json_get (reply, "error");
  struct ovl_json *ret = NULL;
  size_t i;

  if (err) {
    const char *cls = ovl_json_get_string (err, "class");
    const char *desc = ovl_json_get_string (err, "desc");
    ovl_error ("%s: %s: %s", execute, cls ? cls : "GenericError",
               desc ? desc : "(no description)");
    ovl_json_free (reply);
    return NULL;
  }
  /* Detach "return" from the reply. */
  for (i = 0; i < reply->u.c.n; i++)
    if (strcmp (reply->u.c.keys[i], "return") == 0) {
      ret = reply->u.c.items[i];
      reply->u.c.items[i] = NULL;
      break;
    }
  ovl_json_free (reply);
  if (!ret)
    ovl_error ("out of memory");
  return ret;
}

struct ovl_json *
ovl_qmp_wait (struct ovl_qmp *q, uint64_t id, int64_t deadline)
{
  struct pending *p;
  struct ovl_json *reply;
  CLEANUP_FREE char *execute = NULL;

  if (check_fatal (q) == -1)
    return NULL;
  if (!(p = find_pending (q, id))) {
    ovl_error ("QMP: no command with id %llu is in flight", (unsigned long long) id);
    return NULL;
  }
  while (!p->reply) {
    if (pump (q, deadline) == -1) {
      set_fatal (q);
      return NULL;
    }
    p = find_pending (q, id);   /* the array may have moved */
  }
  reply = OVL_STEAL (p->reply);
  execute = OVL_STEAL (p->execute);
  remove_pending (q, p);
  return take_return (reply, execute);
}

struct ovl_json *
ovl_qmp_command (struct ovl_qmp *q, const char *execute, const char *args,
                 int64_t deadline)
{
  uint64_t id = ovl_qmp_send (q, execute, args);
  return id ? ovl_qmp_wait (q, id, deadline) : NULL;
}

static bool
event_matches (const struct ovl_json *ev, const char *name, va_list ap)
{
  const char *evname = ovl_json_get_string (ev, "event");
  const struct ovl_json *data = ovl_json_get (ev, "data");
  const char *key, *want, *have;

  if (!evname || strcmp (evname, name) != 0)
    return false;
  while ((key = va_arg (ap, const char *))) {
    want = va_arg (ap, const char *);
    have = ovl_json_get_string (data, key);
    if (!have || strcmp (have, want) != 0)
      return false;
  }
  return true;
}

struct ovl_json *
ovl_qmp_wait_event (struct ovl_qmp *q, int64_t deadline, const char *name, ...)
{
  size_t i, seen = 0;
  va_list ap;

  if (check_fatal (q) == -1)
    return NULL;
  for (;;) {
    for (i = seen; i < q->nevents; i++) {
      bool match;
      va_start (ap, name);
      match = event_matches (q->events[i], name, ap);
      va_end (ap);
      if (match) {
        struct ovl_json *ev = q->events[i];
        memmove (&q->events[i], &q->events[i + 1],
                 (q->nevents - i - 1) * sizeof *q->events);
        q->nevents--;
        return ev;
      }
    }
    seen = q->nevents;
    if (pump (q, deadline) == -1) {
      set_fatal (q);
      return NULL;
    }
  }
}

static struct ovl_qmp *
open_fd (int fd, const char *path, int64_t deadline, bool lazy)
{
  struct ovl_qmp *q = ovl_calloc (1, sizeof *q);
  int flags;

  if (!q) {
    close (fd);
    return NULL;
  }
  q->fd = fd;
  if (!(q->path = ovl_strdup (path)))
    goto fail;
  if ((flags = fcntl (fd, F_GETFL)) == -1 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) == -1) {
    ovl_error ("QMP: fcntl: %m");
    goto fail;
  }
  if (!(q->parser = ovl_json_parser_new (0, 0)))
    goto fail;
  /* Ids start at a random point below 2^48 (exact in any JSON reader),
   * so that a reply qsd still sends for an earlier client that left
   * cannot pass for the reply to one of ours. */
  {
    uint32_t r;
    if (getrandom (&r, sizeof r, 0) != (ssize_t) sizeof r) {
      ovl_error ("QMP: getrandom: %m");
      goto fail;
    }
    q->next_id = (uint64_t) r << 16;
  }
  /* Negotiate at once: qsd reads it after sending its greeting, and
   * commands queued behind it are handled after it. */
  if (!(q->caps_id = ovl_qmp_send (q, "qmp_capabilities", NULL)))
    goto fail;
  if (lazy)
    return q;
  while (!q->greeted || q->caps_id)
    if (pump (q, deadline) == -1)
      goto fail;
  return q;

 fail:
  ovl_qmp_close (q);
  errno = EPROTO;               /* connected, but not to a working monitor */
  return NULL;
}

/* A connected socket to PATH, blocking; -1 with the error set. */
static int
dial (const char *path, int64_t deadline)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  CLEANUP_CLOSE int fd = -1;
  int ms = ovl_ms_left (deadline);
  struct timeval tv;

  if (strlen (path) >= sizeof sun.sun_path) {
    ovl_error ("QMP: socket path too long: %s", path);
    return -1;
  }
  strcpy (sun.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    ovl_error ("QMP: socket: %m");
    return -1;
  }
  /* A UNIX connect blocks while the listener's backlog is full, for at
   * most the send timeout: that bounds it by the deadline. */
  if (ms >= 0) {
    if (ms == 0)
      ms = 1;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  while (connect (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EINPROGRESS)
      ovl_error ("QMP: %s: qemu-storage-daemon did not answer: timed out connecting "
                 "(its backlog stayed full)", path);
    else
      ovl_error ("QMP: %s: %m", path);
    return -1;
  }
  return OVL_STEAL_FD (fd);
}

static struct ovl_qmp *
connect_path (const char *path, int64_t deadline, bool lazy)
{
  int fd = dial (path, deadline);

  if (fd == -1)
    return NULL;
  return open_fd (fd, path, deadline, lazy);
}

struct ovl_qmp *
ovl_qmp_connect (const char *path, int64_t deadline)
{
  return connect_path (path, deadline, false);
}

struct ovl_qmp *
ovl_qmp_connect_lazy (const char *path, int64_t deadline)
{
  return connect_path (path, deadline, true);
}

unsigned
ovl_qmp_version (const struct ovl_qmp *q)
{
  return q->version;
}

size_t
ovl_qmp_events_queued (const struct ovl_qmp *q)
{
  return q->nevents;
}

long
ovl_qmp_peer_pid (const struct ovl_qmp *q)
{
  struct ucred cr;
  socklen_t len = sizeof cr;

  if (getsockopt (q->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1)
    return -1;
  return (long) cr.pid;
}

uint64_t
ovl_qmp_send_json (struct ovl_qmp *q, const char *execute, struct ovl_json *args)
{
  CLEANUP_JSON struct ovl_json *a = args;
  CLEANUP_FREE char *text = NULL;

  if (!a || !(text = ovl_json_to_string (a)))
    return 0;
  return ovl_qmp_send (q, execute, text);
}
