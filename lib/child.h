/* Starting programs, once: the qemu-storage-daemon (qsd.c) and the
 * pool's refiller (pool.c).
 *
 * A child is started with posix_spawn (vfork-like: a large caller is
 * not copied), in a session of its own, with stdin, stdout and stderr on
 * /dev/null, the descriptors asked for as 3, 4, ..., and nothing else
 * open: libvirt reads the hook's stdout and stderr to EOF, so a child
 * that kept them would hold libvirt until it ends.  A program that
 * cannot be run is an error of the spawn itself (posix_spawn reports the
 * exec's errno).  Waiting is bounded by a deadline and never reaps, so
 * that the pid, and the process group, stay the caller's to signal.
 */
#ifndef OVL_CHILD_H
#define OVL_CHILD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ovl_child {
  char *const *argv;            /* argv[0] is the program's path */
  const int *fds;               /* given to the child as 3, 4, ... */
  size_t nfds;
  bool new_session;             /* setsid: a process group of its own */
  const char *dir;              /* working directory, or NULL */
  int umask;                    /* the child's umask, or -1: the caller's */
};

/* Start S.  0 with *PID, or -1 with the error set ("could not be run:
 * REASON" when exec failed: the caller names the program).  With S->umask set, the caller's umask is
 * changed around the spawn: callers are single-threaded. */
int ovl_child_spawn (const struct ovl_child *s, pid_t *pid);

/* Wait until PID exits or DEADLINE (ovl_now_ms() scale), polling (no
 * SIGCHLD handler: that would be the whole program's) and without
 * reaping.  1 exited (*INFO), 0 still running at the deadline, -1 error. */
int ovl_child_wait_until (pid_t pid, int64_t deadline, siginfo_t *info);

/* Kill PID's whole process group (and PID), then reap it if it goes
 * within GRACE_MS; init reaps it otherwise. */
void ovl_child_kill (pid_t pid, int grace_ms);

#endif
