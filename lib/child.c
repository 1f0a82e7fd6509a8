/* Starting programs; see child.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "child.h"
#include "util.h"

extern char **environ;

/* Descriptors at or above this are out of the way of the 3, 4, ... the
 * child gets: a dup2 onto a descriptor that is also a source would
 * clobber it. */
#define HIGH_FD 64

int
ovl_child_spawn (const struct ovl_child *s, pid_t *pid)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t def;
  int high[32], e = 0;
  size_t i, n = 0;
  mode_t old = 0;
  struct stat st;

  /* posix_spawn reports a failed exec itself, but not everywhere (under
   * valgrind the child exits 127): what can be told before is. */
  if (stat (s->argv[0], &st) == -1)
    e = errno;
  else if (!S_ISREG (st.st_mode))
    e = EACCES;                 /* what exec says of a directory */
  else if (access (s->argv[0], X_OK) == -1)
    e = errno;
  if (e != 0) {
    ovl_error ("could not be run: %s", strerror (e));
    return -1;
  }
  if (s->nfds > sizeof high / sizeof high[0]) {
    ovl_error ("%s: too many descriptors to pass (%zu)", s->argv[0], s->nfds);
    return -1;
  }
  for (n = 0; n < s->nfds; n++)
    if ((high[n] = fcntl (s->fds[n], F_DUPFD_CLOEXEC, HIGH_FD)) == -1) {
      e = errno;
      break;
    }
  if (e == 0) {
    posix_spawn_file_actions_init (&fa);
    posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen (&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen (&fa, 2, "/dev/null", O_WRONLY, 0);
    for (i = 0; i < n; i++)
      posix_spawn_file_actions_adddup2 (&fa, high[i], 3 + (int) i);
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    posix_spawn_file_actions_addclosefrom_np (&fa, 3 + (int) n);
#endif
    if (s->dir)
      posix_spawn_file_actions_addchdir_np (&fa, s->dir);
    posix_spawnattr_init (&attr);
    /* A caller ignoring SIGPIPE must not hand that on. */
    sigemptyset (&def);
    sigaddset (&def, SIGPIPE);
    posix_spawnattr_setsigdefault (&attr, &def);
    posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSIGDEF |
                              (s->new_session ? POSIX_SPAWN_SETSID : 0));
    if (s->umask >= 0)
      old = umask ((mode_t) s->umask);
    e = posix_spawn (pid, s->argv[0], &fa, &attr, s->argv, environ);
    if (s->umask >= 0)
      umask (old);
    posix_spawnattr_destroy (&attr);
    posix_spawn_file_actions_destroy (&fa);
  }
  for (i = 0; i < n; i++)
    close (high[i]);
  if (e != 0) {
    ovl_error ("could not be run: %s", strerror (e));
    return -1;
  }
  return 0;
}

/* Sleep a little, never past DEADLINE; *PAUSE_MS backs off to 16 ms. */
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

int
ovl_child_wait_until (pid_t pid, int64_t deadline, siginfo_t *info)
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

void
ovl_child_kill (pid_t pid, int grace_ms)
{
  int64_t until = ovl_now_ms () + grace_ms;
  long pause_ms = 1;

  kill (-pid, SIGKILL);
  kill (pid, SIGKILL);          /* in case it had no group of its own */
  while (waitpid (pid, NULL, WNOHANG) == 0 && ovl_ms_left (until) > 0)
    pause_until (until, &pause_ms);
}
