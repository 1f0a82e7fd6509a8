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
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "qsd.h"
#include "child.h"
#include "util.h"

/* How long a killed child may take to be reaped once the deadline has
 * passed: SIGKILL is not instant for a process in uninterruptible sleep,
 * and the hook's watchdog fires 1 s past the deadline. */
#define REAP_GRACE_MS 200

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

/* Say why the child that exited as INFO did not start. */
static void
describe_exit (const char *binary, const siginfo_t *info)
{
  if (info->si_code == CLD_EXITED)
    ovl_error ("%s did not start: it exited with status %d", binary, info->si_status);
  else
    ovl_error ("%s did not start: it was killed by signal %d (%s)", binary,
               info->si_status, strsignal (info->si_status));
}

/* Start qsd on SOCK and wait, until DEADLINE, for it to say it is ready
 * (with --daemonize its first process exits 0 once the monitor listens).
 * 0 ready, with *PID that exited process still unreaped: the caller
 * stops or reaps it (ovl_child_kill) once it knows whether anything
 * listens.  -1 with the error saying what qsd did; nothing of it is left
 * running that we can reach. */
static int
spawn_qsd (const struct ovl_config *cfg, const char *sock, const char *pidfile,
           int64_t deadline, pid_t *pid)
{
  CLEANUP_FREE char *esc = qemu_opt_escape (sock);
  CLEANUP_FREE char *chardev = NULL;
  siginfo_t info;
  int r;

  if (!esc || asprintf (&chardev, "socket,id=ovl0,path=%s,server=on,wait=off", esc) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  {
    char *argv[] = {
      cfg->qsd_binary, (char *) "--chardev", chardev, (char *) "--monitor",
      (char *) "chardev=ovl0", (char *) "--pidfile", (char *) pidfile,
      (char *) "--daemonize", NULL,
    };
    const struct ovl_child s = {
      .argv = argv, .new_session = true, .dir = "/", .umask = 077,
    };
    if (ovl_child_spawn (&s, pid) == -1) {
      ovl_error_prefix ("%s did not start: it ", cfg->qsd_binary);
      return -1;
    }
  }

  r = ovl_child_wait_until (*pid, deadline, &info);
  if (r == 1 && info.si_code == CLD_EXITED && info.si_status == 0)
    return 0;
  if (r == 1)
    describe_exit (cfg->qsd_binary, &info);
  else if (r == 0)
    ovl_error ("%s did not get ready on %s within timeout_ms (%u ms): killed it",
               cfg->qsd_binary, sock, cfg->timeout_ms);
  ovl_child_kill (*pid, REAP_GRACE_MS);
  return -1;
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
  char *slash;

  if (!dir)
    return -1;
  if (!(slash = strrchr (dir, '/')) || slash == dir)
    return 0;
  *slash = '\0';
  return ovl_mkdir_p (dir, 0700);
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
  pid_t pid;

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
  /* Held only while a daemon starts (milliseconds, or until the holder's
   * deadline if it never gets ready). */
  if (ovl_flock_until (lockfd, LOCK_EX, deadline, lockpath) == -1) {
    ovl_error_prefix ("qemu-storage-daemon on %s did not get ready within timeout_ms (%u ms): ",
                      sock, cfg->timeout_ms);
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
  if (spawn_qsd (cfg, sock, pidfile, deadline, &pid) == -1)
    return NULL;
  q = ovl_qmp_connect_lazy (sock, deadline);
  if (!q && (errno == ENOENT || errno == ECONNREFUSED))
    ovl_error ("%s did not start: it exited but nothing listens on %s",
               cfg->qsd_binary, sock);
  /* A real qsd runs on in a session of its own; anything left in the
   * first process's group when nothing answers is a half-started one. */
  if (!q)
    ovl_child_kill (pid, REAP_GRACE_MS);
  else
    while (waitpid (pid, NULL, 0) == -1 && errno == EINTR)
      ;
  return q;
}
