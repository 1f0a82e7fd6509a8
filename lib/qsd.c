/* Connecting to, and starting, qemu-storage-daemon; see qsd.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "qsd.h"
#include "util.h"

/* Put the child on /dev/null, in its own session, with nothing else open. */
static void
detach_child (void)
{
  int null = open ("/dev/null", O_RDWR);

  setsid ();
  if (null >= 0) {
    dup2 (null, 0);
    dup2 (null, 1);
    dup2 (null, 2);
  }
#ifdef HAVE_CLOSE_RANGE
  close_range (3, ~0U, 0);
#else
  for (int fd = 3; fd < 1024; fd++)
    close (fd);
#endif
  if (chdir ("/") == -1)
    _exit (127);
  signal (SIGPIPE, SIG_DFL);
  umask (077);
}

/* QEMU option values escape ',' by doubling it. */
static char *
qemu_opt_escape (const char *s)
{
  struct ovl_buf b = OVL_BUF_INIT;
  for (; *s; s++)
    if (ovl_buf_append (&b, s, 1) == -1 ||
        (*s == ',' && ovl_buf_append (&b, ",", 1) == -1)) {
      ovl_buf_reset (&b);
      return NULL;
    }
  return ovl_buf_steal (&b);
}

static int
spawn_qsd (const struct ovl_config *cfg, const char *sock, const char *pidfile)
{
  CLEANUP_FREE char *esc = qemu_opt_escape (sock);
  CLEANUP_FREE char *chardev = NULL;
  pid_t pid;
  int status;

  if (!esc || asprintf (&chardev, "socket,id=ovl0,path=%s,server=on,wait=off", esc) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  pid = fork ();
  if (pid == -1) {
    ovl_error ("fork: %m");
    return -1;
  }
  if (pid == 0) {
    detach_child ();
    execl (cfg->qsd_binary, cfg->qsd_binary,
           "--chardev", chardev, "--monitor", "chardev=ovl0",
           "--pidfile", pidfile, "--daemonize", (char *) NULL);
    _exit (127);
  }
  /* With --daemonize the parent exits once the monitor listens. */
  while (waitpid (pid, &status, 0) == -1)
    if (errno != EINTR) {
      ovl_error ("waitpid: %m");
      return -1;
    }
  if (WIFEXITED (status) && WEXITSTATUS (status) == 127) {
    ovl_error ("cannot run %s", cfg->qsd_binary);
    return -1;
  }
  if (WIFEXITED (status) && WEXITSTATUS (status) != 0) {
    ovl_error ("%s did not start: it exited with status %d", cfg->qsd_binary,
               WEXITSTATUS (status));
    return -1;
  }
  if (WIFSIGNALED (status)) {
    ovl_error ("%s did not start: it was killed by signal %d (%s)", cfg->qsd_binary,
               WTERMSIG (status), strsignal (WTERMSIG (status)));
    return -1;
  }
  return 0;
}

/* Connect to SOCK: 1 connected (*Q), 0 nothing listens there (no
 * socket, or one a dead daemon left), -1 any other failure. */
static int
try_connect (const char *sock, int64_t deadline, struct ovl_qmp **q)
{
  if ((*q = ovl_qmp_connect_lazy (sock, deadline)))
    return 1;
  return errno == ENOENT || errno == ECONNREFUSED ? 0 : -1;
}

/* mkdir -p for the socket's directory (root-only). */
static int
make_parent_dir (const char *path)
{
  CLEANUP_FREE char *dir = ovl_strdup (path);
  char *p;

  if (!dir)
    return -1;
  for (p = dir + 1; (p = strchr (p, '/')); p++) {
    *p = '\0';
    if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
      ovl_error ("mkdir %s: %m", dir);
      return -1;
    }
    *p = '/';
  }
  return 0;
}

char *
ovl_qsd_socket (const struct ovl_config *cfg, unsigned index)
{
  char *p;
  if (index == 0)
    return ovl_strdup (cfg->qsd_socket);
  if (asprintf (&p, "%s.%u", cfg->qsd_socket, index) == -1) {
    ovl_error ("out of memory");
    return NULL;
  }
  return p;
}

struct ovl_qmp *
ovl_qsd_connect (const struct ovl_config *cfg, unsigned index, int64_t deadline)
{
  CLEANUP_FREE char *sock = ovl_qsd_socket (cfg, index);
  CLEANUP_FREE char *lockpath = NULL, *pidfile = NULL;
  CLEANUP_CLOSE int lockfd = -1;
  struct ovl_qmp *q;
  struct stat st;

  if (!sock)
    return NULL;
  if (try_connect (sock, deadline, &q) != 0)
    return q;
  if (!cfg->qsd_spawn) {
    ovl_error_prefix ("qemu-storage-daemon is not running and qsd_spawn is off: ");
    return NULL;
  }

  if (asprintf (&lockpath, "%s.lock", sock) == -1 ||
      asprintf (&pidfile, "%s.pid", sock) == -1) {
    ovl_error ("out of memory");
    return NULL;
  }
  if (make_parent_dir (sock) == -1)
    return NULL;
  lockfd = open (lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (lockfd == -1) {
    ovl_error ("%s: %m", lockpath);
    return NULL;
  }
  /* Held only while a daemon starts (milliseconds). */
  while (flock (lockfd, LOCK_EX) == -1)
    if (errno != EINTR) {
      ovl_error ("flock %s: %m", lockpath);
      return NULL;
    }

  /* Someone may have started it while we waited for the lock. */
  if (try_connect (sock, deadline, &q) != 0)
    return q;
  /* Replace a stale socket and pidfile of a dead daemon, nothing else. */
  if (lstat (sock, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      ovl_error ("%s exists and is not a socket", sock);
      return NULL;
    }
    unlink (sock);
  }
  unlink (pidfile);
  if (spawn_qsd (cfg, sock, pidfile) == -1)
    return NULL;
  return ovl_qmp_connect_lazy (sock, deadline);
}
