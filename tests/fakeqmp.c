/* Scripted fake QMP server; see fakeqmp.h. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fakeqmp.h"
#include "json.h"

struct fake_qmp {
  int listen_fd;
  char *sock;
  const struct fake_step *steps;
  size_t nsteps;
  pthread_t thread;
  char *why;
  char inbuf[65536];
  size_t inlen;
  long long ids[64];            /* ids of the commands read, in order */
  size_t nids;
};

static void __attribute__((format (printf, 2, 3)))
fake_fail (struct fake_qmp *f, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  if (!f->why && vasprintf (&f->why, fmt, ap) == -1)
    f->why = NULL;
  va_end (ap);
}

/* Read one line (one command); NULL on EOF. */
static char *
read_command (struct fake_qmp *f, int fd)
{
  for (;;) {
    char *nl = memchr (f->inbuf, '\n', f->inlen);
    ssize_t n;
    if (nl) {
      size_t len = (size_t) (nl - f->inbuf) + 1;
      char *line = strndup (f->inbuf, len - 1);
      memmove (f->inbuf, f->inbuf + len, f->inlen - len);
      f->inlen -= len;
      return line;
    }
    if (f->inlen == sizeof f->inbuf)
      return NULL;
    n = read (fd, f->inbuf + f->inlen, sizeof f->inbuf - f->inlen);
    if (n <= 0)
      return NULL;
    f->inlen += (size_t) n;
  }
}

/* LINE, without its id, in the canonical form ovl_json_to_string gives;
 * NULL if it is not a JSON object. */
static char *
canonical (const char *line, bool drop_id)
{
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  struct ovl_json *v = NULL;
  char *out = NULL;
  size_t i;

  if (p && ovl_json_parser_feed (p, line, strlen (line)) == 0 &&
      ovl_json_parser_finish (p) == 0 && (v = ovl_json_parser_next (p))) {
    if (drop_id)
      for (i = 0; i < v->u.c.n; i++)
        if (strcmp (v->u.c.keys[i], "id") == 0) {
          ovl_json_free (v->u.c.items[i]);
          free (v->u.c.keys[i]);
          memmove (&v->u.c.keys[i], &v->u.c.keys[i + 1], (v->u.c.n - i - 1) * sizeof *v->u.c.keys);
          memmove (&v->u.c.items[i], &v->u.c.items[i + 1], (v->u.c.n - i - 1) * sizeof *v->u.c.items);
          v->u.c.n--;
          break;
        }
    out = ovl_json_to_string (v);
  }
  ovl_json_free (v);
  ovl_json_parser_free (p);
  return out;
}

/* The id of the command in LINE (0 if it has none). */
static long long
top_id (const char *line)
{
  struct ovl_json_parser *p = ovl_json_parser_new (0, 0);
  struct ovl_json *v = NULL;
  long long id = 0;

  if (p && ovl_json_parser_feed (p, line, strlen (line)) == 0 &&
      ovl_json_parser_finish (p) == 0 && (v = ovl_json_parser_next (p)))
    ovl_json_get_int (v, "id", &id);
  ovl_json_free (v);
  ovl_json_parser_free (p);
  return id;
}

/* LINE is the command EXPECT says: a name (only "execute" is compared),
 * or a whole command in JSON (everything but the id is compared). */
static bool
command_is (const char *line, const char *expect)
{
  char want[256];
  char *a, *b;
  bool same;

  if (expect[0] != '{') {
    snprintf (want, sizeof want, "\"execute\":\"%s\"", expect);
    return strstr (line, want) != NULL;
  }
  a = canonical (line, true);
  b = canonical (expect, false);
  same = a && b && strcmp (a, b) == 0;
  free (a);
  free (b);
  return same;
}

/* TEXT with "$ID" replaced by the id of the command just read, and
 * "$ID-K" (K a digit) by that of the command read K before it. */
static char *
substitute_id (const struct fake_qmp *f, const char *text)
{
  char *out = NULL;
  size_t len = 0;
  FILE *m = open_memstream (&out, &len);
  const char *at;

  if (!m)
    return NULL;
  while ((at = strstr (text, "$ID"))) {
    size_t back = 0;
    fwrite (text, 1, (size_t) (at - text), m);
    text = at + 3;
    if (text[0] == '-' && text[1] >= '0' && text[1] <= '9') {
      back = (size_t) (text[1] - '0');
      text += 2;
    }
    fprintf (m, "%lld", back < f->nids ? f->ids[f->nids - 1 - back] : 0);
  }
  fputs (text, m);
  fclose (m);
  return out;
}

static void
write_all (int fd, const char *p, size_t len, bool split)
{
  while (len) {
    ssize_t n = send (fd, p, split ? 1 : len, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    p += n;
    len -= (size_t) n;
  }
}

/* The next client, within 10 s (a test that never connects fails
 * rather than hangs): its descriptor, or -1 (errno set). */
static int
accept_client (struct fake_qmp *f)
{
  struct pollfd pfd = { .fd = f->listen_fd, .events = POLLIN };

  if (poll (&pfd, 1, 10000) != 1) {
    errno = ETIMEDOUT;
    return -1;
  }
  return accept (f->listen_fd, NULL, NULL);
}

static void *
fake_thread (void *arg)
{
  struct fake_qmp *f = arg;
  int fd = accept_client (f);
  size_t i;
  char *extra;

  if (fd == -1) {
    fake_fail (f, "accept: %s", strerror (errno));
    return NULL;
  }
  for (i = 0; i < f->nsteps; i++) {
    const struct fake_step *s = &f->steps[i];
    char *line = NULL, *text;

    if (s->expect) {
      line = read_command (f, fd);
      if (!line) {
        fake_fail (f, "client left before sending %s", s->expect);
        goto out;
      }
      if (!command_is (line, s->expect)) {
        fake_fail (f, "unexpected command: %s", line);
        free (line);
        goto out;
      }
      if (f->nids < sizeof f->ids / sizeof f->ids[0])
        f->ids[f->nids++] = top_id (line);
    }
    switch (s->action) {
    case FAKE_SEND_DELAYED:
      usleep (200 * 1000);      /* a slow daemon, not a dead one */
      /* fall through */
    case FAKE_SEND:
    case FAKE_SEND_SPLIT:
      text = substitute_id (f, s->text);
      write_all (fd, text, strlen (text), s->action == FAKE_SEND_SPLIT);
      free (text);
      break;
    case FAKE_STALL:
      /* Hold the connection until the client gives up. */
      while ((extra = read_command (f, fd)))
        free (extra);
      free (line);
      goto out;
    case FAKE_CLOSE:
      free (line);
      goto out;
    case FAKE_STALL_NEXT:
      while ((extra = read_command (f, fd)))
        free (extra);
      /* fall through */
    case FAKE_DROP:
    case FAKE_NEXT:
      /* Wait for the client's first bytes, then close without reading
       * them (the client gets a reset), and serve the next client. */
      if (s->action == FAKE_DROP) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        poll (&pfd, 1, 2000);
      }
      close (fd);
      f->inlen = 0;
      if ((fd = accept_client (f)) == -1) {
        fake_fail (f, "accept: %s", strerror (errno));
        free (line);
        return NULL;
      }
      break;
    }
    free (line);
  }
  /* The script is over: anything more is unexpected. */
  if ((extra = read_command (f, fd))) {
    fake_fail (f, "command after the end of the script: %s", extra);
    free (extra);
  }
 out:
  close (fd);
  return NULL;
}

struct fake_qmp *
fake_qmp_start (const char *dir, const struct fake_step *steps, size_t n)
{
  struct fake_qmp *f = calloc (1, sizeof *f);
  struct sockaddr_un sun = { .sun_family = AF_UNIX };

  if (asprintf (&f->sock, "%s/fake.sock", dir) == -1)
    abort ();
  unlink (f->sock);
  snprintf (sun.sun_path, sizeof sun.sun_path, "%s", f->sock);
  f->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (f->listen_fd == -1 ||
      bind (f->listen_fd, (struct sockaddr *) &sun, sizeof sun) == -1 ||
      listen (f->listen_fd, 4) == -1)
    abort ();
  f->steps = steps;
  f->nsteps = n;
  pthread_create (&f->thread, NULL, fake_thread, f);
  return f;
}

const char *
fake_qmp_socket (const struct fake_qmp *f)
{
  return f->sock;
}

int
fake_qmp_finish (struct fake_qmp *f, char **why)
{
  int r;

  pthread_join (f->thread, NULL);
  close (f->listen_fd);
  unlink (f->sock);
  r = f->why ? -1 : 0;
  if (why)
    *why = f->why;
  else
    free (f->why);
  free (f->sock);
  free (f);
  return r;
}
