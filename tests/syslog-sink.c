/* syslog-sink: a private syslog socket for tests.
 *
 *   syslog-sink SOCKET FILE
 *
 * Binds a datagram socket at SOCKET, as syslogd does at /dev/log, and
 * appends every message it receives to FILE, one per line, until it is
 * killed.  A test bind-mounts SOCKET's directory over /dev in a mount
 * namespace of its own, so that what a program sends to syslog(3) can be
 * read back, and nothing reaches the host's log. */
#include <config.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
main (int argc, char **argv)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  char buf[8192];
  FILE *out;
  int fd;

  if (argc != 3 || strlen (argv[1]) >= sizeof sun.sun_path) {
    fprintf (stderr, "usage: syslog-sink SOCKET FILE\n");
    return 2;
  }
  strcpy (sun.sun_path, argv[1]);
  unlink (argv[1]);
  if ((fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
      bind (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    perror ("syslog-sink");
    return 1;
  }
  if (!(out = fopen (argv[2], "a"))) {
    perror (argv[2]);
    return 1;
  }
  for (;;) {
    ssize_t n = recv (fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
      continue;
    /* One line per message, whatever it holds. */
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == '\n' || buf[i] == '\0')
        buf[i] = ' ';
    buf[n] = '\0';
    fprintf (out, "%s\n", buf);
    fflush (out);
  }
}
