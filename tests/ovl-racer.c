/* ovl-racer: the attacker of a temporary file, for tests.
 *
 *   ovl-racer DIR VICTIM
 *
 * Watches DIR with inotify and, the moment a temporary file of
 * virt-overlay appears there, renames it away (to NAME.stolen) and puts a
 * symbolic link to VICTIM in its place: what whoever owns DIR could do
 * between our create and qsd's open.  Prints "ready" once it watches,
 * "swapped NAME" per swap, and exits after the first swap or 20 s.
 */
#include <config.h>

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define TMP_PREFIX ".virt-overlay-"

int
main (int argc, char **argv)
{
  char buf[sizeof (struct inotify_event) + NAME_MAX + 1]
    __attribute__((aligned (__alignof__ (struct inotify_event))));
  struct pollfd pfd;
  int fd;

  if (argc != 3) {
    fprintf (stderr, "usage: ovl-racer DIR VICTIM\n");
    return 2;
  }
  if ((fd = inotify_init1 (IN_CLOEXEC)) == -1 ||
      inotify_add_watch (fd, argv[1], IN_CREATE) == -1) {
    perror ("inotify");
    return 1;
  }
  printf ("ready\n");
  fflush (stdout);
  pfd.fd = fd;
  pfd.events = POLLIN;
  while (poll (&pfd, 1, 20000) == 1) {
    ssize_t n = read (fd, buf, sizeof buf), off = 0;
    while (n > 0 && off < n) {
      struct inotify_event *e = (struct inotify_event *) (buf + off);
      size_t len = e->len ? strlen (e->name) : 0;
      off += (ssize_t) (sizeof *e + e->len);
      if (len > 4 && strncmp (e->name, TMP_PREFIX, strlen (TMP_PREFIX)) == 0 &&
          strcmp (e->name + len - 4, ".tmp") == 0) {
        char from[PATH_MAX], to[PATH_MAX];
        snprintf (from, sizeof from, "%s/%s", argv[1], e->name);
        snprintf (to, sizeof to, "%s/%s.stolen", argv[1], e->name);
        if (rename (from, to) == 0 && symlink (argv[2], from) == 0) {
          printf ("swapped %s\n", e->name);
          return 0;
        }
      }
    }
  }
  printf ("nothing to swap\n");
  return 0;
}
