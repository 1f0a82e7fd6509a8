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
#include "util.h"

/* How long a killed child may take to be reaped once the deadline has
 * passed: SIGKILL is not instant for a process in uninterruptible sleep,
 * and the hook's watchdog fires 1 s past the deadline. */
#define REAP_GRACE_MS 200

/* In the child: report errno on the error pipe (fd 3) and give up.  By
 * SIGKILL rather than _exit: this copy of the caller holds the caller's
 * heap, which a leak checker running the program (valgrind) would count
 * as this process's leaks; the parent reads the reason from the pipe. */
static void __attribute__((noreturn))
child_fail (void)
{
  int err = errno;
  ssize_t r = write (3, &err, sizeof err);
  (void) r;
  raise (SIGKILL);
  _exit (127);
}

/* Put the child on /dev/null, in its own session, with nothing else open
 * but ERRFD (moved to 3, close-on-exec) to tell the parent why exec
 * failed. */
static void
detach_child (int errfd)
{
  int null = open ("/dev/null", O_RDWR);

  setsid ();
  /* Above stdio first, so that the dup2s below cannot clobber it. */
  errfd = fcntl (errfd, F_DUPFD_CLOEXEC, 3);
  if (null >= 0) {
    dup2 (null, 0);
    dup2 (null, 1);
    dup2 (null, 2);
  }
  if (errfd != 3 && dup3 (errfd, 3, O_CLOEXEC) == -1)
    child_fail ();              /* no pipe: the parent sees SIGKILL */
#ifdef HAVE_CLOSE_RANGE
  close_range (4, ~0U, 0);
#else
  for (int fd = 4; fd < 1024; fd++)
    close (fd);
#endif
  if (chdir ("/") == -1)
    child_fail ();
  signal (SIGPIPE, SIG_DFL);
  umask (077);
}

/* Sleep a little, never past DEADLINE; *PAUSE_MS backs off to 16 ms.
 * Polling, because SIGALRM belongs to the hook's watchdog and a SIGCHLD
 * handler would be the whole program's. */
static void
pause_until (int64_t deadline, long *pause_ms)
{
  int left = ovl_ms_left (deadline);
  struct timespec ts;

  if (left >= 0 && left < *pause_ms)
    *pause_ms = left;
  ts.tv_sec = 0;
  ts.tv_nsec = *pause_ms * 1000000L;
  nanosleep (&ts, NULL);
  if (*pause_ms < 16)
    *pause_ms = *pause_ms ? *pause_ms * 2 : 1;
}

/* Wait until PID exits or DEADLINE, without reaping it (its pid, and so
 * its process group, stay ours to signal).  1 exited (*INFO), 0 still
 * running at the deadline, -1 error. */
static int
wait_exit (pid_t pid, int64_t deadline, siginfo_t *info)
{
  long pause_ms = 1;

  for (;;) {
    info->si_pid = 0;
    if (waitid (P_PID, (id_t) pid, info, WEXITED | WNOHANG | WNOWAIT) == -1) {
      if (errno == EINTR)
        continue;
      ovl_error ("waitid: %m");
      return -1;
    }
    if (info->si_pid == pid)
      return 1;
    if (ovl_ms_left (deadline) == 0)
      return 0;
    pause_until (deadline, &pause_ms);
  }
}

/* Kill the child's whole process group (it is a session leader, so this
 * takes whatever it forked and left behind, unless that made a session
 * of its own as a real daemon does), then reap it if it goes within
 * REAP_GRACE_MS; init reaps it otherwise. */
static void
stop_child (pid_t pid)
{
  int64_t until = ovl_now_ms () + REAP_GRACE_MS;
  long pause_ms = 1;

  kill (-pid, SIGKILL);
  kill (pid, SIGKILL);          /* in case it had not called setsid yet */
  while (waitpid (pid, NULL, WNOHANG) == 0 && ovl_ms_left (until) > 0)
    pause_until (until, &pause_ms);
}

/* Say why the child that exited as INFO did not start; ERRFD holds the
 * errno of a failed exec, if that is what happened. */
static void
describe_exit (const char *binary, const siginfo_t *info, int errfd)
{
  int err;

  if (read (errfd, &err, sizeof err) == (ssize_t) sizeof err)
    ovl_error ("%s did not start: it could not be run: %s", binary, strerror (err));
  else if (info->si_code == CLD_EXITED)
    ovl_error ("%s did not start: it exited with status %d", binary, info->si_status);
  else
    ovl_error ("%s did not start: it was killed by signal %d (%s)", binary,
               info->si_status, strsignal (info->si_status));
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

/* Start qsd on SOCK and wait, until DEADLINE, for it to say it is ready
 * (with --daemonize its first process exits 0 once the monitor listens).
 * 0 ready, with *PID that exited process still unreaped: the caller
 * stops or reaps it (stop_child) once it knows whether anything
 * listens.  -1 with the error saying what qsd did; nothing of it is left
 * running that we can reach. */
static int
spawn_qsd (const struct ovl_config *cfg, const char *sock, const char *pidfile,
           int64_t deadline, pid_t *pid)
{
  CLEANUP_FREE char *esc = qemu_opt_escape (sock);
  CLEANUP_FREE char *chardev = NULL;
  CLEANUP_CLOSE int errfd = -1;
  int errpipe[2];
  siginfo_t info;
  int r;

  if (!esc || asprintf (&chardev, "socket,id=ovl0,path=%s,server=on,wait=off", esc) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  if (pipe2 (errpipe, O_CLOEXEC | O_NONBLOCK) == -1) {
    ovl_error ("pipe: %m");
    return -1;
  }
  errfd = errpipe[0];
  *pid = fork ();
  if (*pid == -1) {
    ovl_error ("fork: %m");
    close (errpipe[1]);
    return -1;
  }
  if (*pid == 0) {
    detach_child (errpipe[1]);
    execl (cfg->qsd_binary, cfg->qsd_binary,
           "--chardev", chardev, "--monitor", "chardev=ovl0",
           "--pidfile", pidfile, "--daemonize", (char *) NULL);
    child_fail ();
  }
  close (errpipe[1]);

  r = wait_exit (*pid, deadline, &info);
  if (r == 1 && info.si_code == CLD_EXITED && info.si_status == 0)
    return 0;
  if (r == 1)
    describe_exit (cfg->qsd_binary, &info, errfd);
  else if (r == 0)
    ovl_error ("%s did not get ready on %s within timeout_ms (%u ms): killed it",
               cfg->qsd_binary, sock, cfg->timeout_ms);
  stop_child (*pid);
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
    stop_child (pid);
  else
    while (waitpid (pid, NULL, 0) == -1 && errno == EINTR)
      ;
  return q;
}
