/* Fault injection: see faults.h.  Each wrapped function counts itself
 * when its kind is armed, and fails when its number comes up. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "faults.h"

static __thread bool armed;
static __thread enum t_fault armed_kind;
static __thread long fail_at, counted;
static __thread const char *failed;
static __thread void *failed_caller;

void
t_fault_arm (enum t_fault kind, long n)
{
  armed = true;
  armed_kind = kind;
  fail_at = n;
  counted = 0;
  failed = NULL;
}

long
t_fault_disarm (void)
{
  armed = false;
  return counted;
}

const char *
t_fault_failed (void)
{
  return failed;
}

void *
t_fault_caller (void)
{
  return failed_caller;
}

/* Whether this call of FN, of KIND, fails now; if so errno is ERR. */
static bool
fail_now (enum t_fault kind, const char *fn, int err)
{
  if (!armed || kind != armed_kind || counted++ != fail_at)
    return false;
  failed = fn;
  errno = err;
  return true;
}

#define ALLOC(fn) fail_here (T_FAULT_ALLOC, fn, ENOMEM)
#define IO(fn) fail_here (T_FAULT_SYSCALL, fn, EIO)
#define FULL(fn) fail_here (T_FAULT_SYSCALL, fn, ENOSPC)
/* The same, remembering the caller (the wrapper is its only frame). */
#define fail_here(kind, fn, err) \
  (fail_now (kind, fn, err) ? (failed_caller = __builtin_return_address (0), true) : false)

/* Declare __real_F and __wrap_F with F's prototype. */
#define WRAP(ret, fn, params) \
  ret __real_##fn params; \
  ret __wrap_##fn params; \
  ret __wrap_##fn params

/* ---- allocations ---- */

WRAP (void *, malloc, (size_t n))
{
  return ALLOC ("malloc") ? NULL : __real_malloc (n);
}

WRAP (void *, calloc, (size_t n, size_t size))
{
  return ALLOC ("calloc") ? NULL : __real_calloc (n, size);
}

WRAP (void *, realloc, (void *p, size_t n))
{
  return ALLOC ("realloc") ? NULL : __real_realloc (p, n);
}

WRAP (char *, strdup, (const char *s))
{
  return ALLOC ("strdup") ? NULL : __real_strdup (s);
}

WRAP (char *, strndup, (const char *s, size_t n))
{
  return ALLOC ("strndup") ? NULL : __real_strndup (s, n);
}

WRAP (int, vasprintf, (char **out, const char *fmt, va_list ap))
{
  return ALLOC ("vasprintf") ? -1 : __real_vasprintf (out, fmt, ap);
}

int __wrap_asprintf (char **out, const char *fmt, ...);
int
__wrap_asprintf (char **out, const char *fmt, ...)
{
  va_list ap;
  int r;

  if (ALLOC ("asprintf"))
    return -1;
  va_start (ap, fmt);
  r = __real_vasprintf (out, fmt, ap);
  va_end (ap);
  return r;
}

/* ---- files ---- */

int __real_open (const char *path, int flags, ...);
int __wrap_open (const char *path, int flags, ...);
int
__wrap_open (const char *path, int flags, ...)
{
  mode_t mode = 0;

  if (flags & (O_CREAT | __O_TMPFILE)) {
    va_list ap;
    va_start (ap, flags);
    mode = (mode_t) va_arg (ap, int);
    va_end (ap);
  }
  return IO ("open") ? -1 : __real_open (path, flags, mode);
}

int __real_openat (int dirfd, const char *path, int flags, ...);
int __wrap_openat (int dirfd, const char *path, int flags, ...);
int
__wrap_openat (int dirfd, const char *path, int flags, ...)
{
  mode_t mode = 0;

  if (flags & (O_CREAT | __O_TMPFILE)) {
    va_list ap;
    va_start (ap, flags);
    mode = (mode_t) va_arg (ap, int);
    va_end (ap);
  }
  return IO ("openat") ? -1 : __real_openat (dirfd, path, flags, mode);
}

WRAP (int, fstat, (int fd, struct stat *st))
{
  return IO ("fstat") ? -1 : __real_fstat (fd, st);
}

WRAP (int, fstatat, (int dirfd, const char *path, struct stat *st, int flags))
{
  return IO ("fstatat") ? -1 : __real_fstatat (dirfd, path, st, flags);
}

WRAP (int, lstat, (const char *path, struct stat *st))
{
  return IO ("lstat") ? -1 : __real_lstat (path, st);
}

WRAP (int, statx, (int dirfd, const char *path, int flags, unsigned mask, struct statx *stx))
{
  return IO ("statx") ? -1 : __real_statx (dirfd, path, flags, mask, stx);
}

WRAP (ssize_t, read, (int fd, void *buf, size_t n))
{
  return IO ("read") ? -1 : __real_read (fd, buf, n);
}

WRAP (ssize_t, pread, (int fd, void *buf, size_t n, off_t off))
{
  return IO ("pread") ? -1 : __real_pread (fd, buf, n, off);
}

WRAP (ssize_t, write, (int fd, const void *buf, size_t n))
{
  return FULL ("write") ? -1 : __real_write (fd, buf, n);
}

WRAP (int, fsync, (int fd))
{
  return IO ("fsync") ? -1 : __real_fsync (fd);
}

WRAP (int, fdatasync, (int fd))
{
  return IO ("fdatasync") ? -1 : __real_fdatasync (fd);
}

WRAP (int, rename, (const char *from, const char *to))
{
  return IO ("rename") ? -1 : __real_rename (from, to);
}

WRAP (int, renameat, (int fd1, const char *from, int fd2, const char *to))
{
  return IO ("renameat") ? -1 : __real_renameat (fd1, from, fd2, to);
}

WRAP (int, renameat2, (int fd1, const char *from, int fd2, const char *to, unsigned flags))
{
  return IO ("renameat2") ? -1 : __real_renameat2 (fd1, from, fd2, to, flags);
}

WRAP (int, linkat, (int fd1, const char *from, int fd2, const char *to, int flags))
{
  return IO ("linkat") ? -1 : __real_linkat (fd1, from, fd2, to, flags);
}

WRAP (int, unlink, (const char *path))
{
  return IO ("unlink") ? -1 : __real_unlink (path);
}

WRAP (int, unlinkat, (int dirfd, const char *path, int flags))
{
  return IO ("unlinkat") ? -1 : __real_unlinkat (dirfd, path, flags);
}

WRAP (int, mkdir, (const char *path, mode_t mode))
{
  return FULL ("mkdir") ? -1 : __real_mkdir (path, mode);
}

WRAP (int, mkdirat, (int dirfd, const char *path, mode_t mode))
{
  return FULL ("mkdirat") ? -1 : __real_mkdirat (dirfd, path, mode);
}

WRAP (DIR *, fdopendir, (int fd))
{
  return IO ("fdopendir") ? NULL : __real_fdopendir (fd);
}

WRAP (struct dirent *, readdir, (DIR *d))
{
  return IO ("readdir") ? NULL : __real_readdir (d);
}

WRAP (int, flock, (int fd, int op))
{
  return IO ("flock") ? -1 : __real_flock (fd, op);
}

WRAP (int, fsetxattr, (int fd, const char *name, const void *value, size_t size, int flags))
{
  return FULL ("fsetxattr") ? -1 : __real_fsetxattr (fd, name, value, size, flags);
}

WRAP (ssize_t, fgetxattr, (int fd, const char *name, void *value, size_t size))
{
  return IO ("fgetxattr") ? -1 : __real_fgetxattr (fd, name, value, size);
}

/* ---- sockets, processes, randomness ---- */

WRAP (int, socket, (int domain, int type, int protocol))
{
  return IO ("socket") ? -1 : __real_socket (domain, type, protocol);
}

WRAP (int, connect, (int fd, const struct sockaddr *sa, socklen_t len))
{
  return IO ("connect") ? -1 : __real_connect (fd, sa, len);
}

WRAP (int, poll, (struct pollfd *fds, nfds_t n, int ms))
{
  return IO ("poll") ? -1 : __real_poll (fds, n, ms);
}

WRAP (ssize_t, send, (int fd, const void *buf, size_t n, int flags))
{
  return IO ("send") ? -1 : __real_send (fd, buf, n, flags);
}

WRAP (ssize_t, recv, (int fd, void *buf, size_t n, int flags))
{
  return IO ("recv") ? -1 : __real_recv (fd, buf, n, flags);
}

int __real_fcntl (int fd, int cmd, ...);
int __wrap_fcntl (int fd, int cmd, ...);
int
__wrap_fcntl (int fd, int cmd, ...)
{
  va_list ap;
  long arg;

  /* Every command lib/ uses takes an int or a pointer, or nothing. */
  va_start (ap, cmd);
  arg = va_arg (ap, long);
  va_end (ap);
  return IO ("fcntl") ? -1 : __real_fcntl (fd, cmd, arg);
}

WRAP (ssize_t, getrandom, (void *buf, size_t n, unsigned flags))
{
  return IO ("getrandom") ? -1 : __real_getrandom (buf, n, flags);
}

WRAP (int, posix_spawn, (pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                         const posix_spawnattr_t *attr, char *const argv[], char *const envp[]))
{
  if (IO ("posix_spawn"))
    return EIO;
  return __real_posix_spawn (pid, path, fa, attr, argv, envp);
}
