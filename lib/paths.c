/* Safe path walking; see paths.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "paths.h"
#include "util.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

bool
ovl_path_is_below (const char *path, const char *dir)
{
  size_t n = strlen (dir);

  if (n == 1 && dir[0] == '/')
    return path[0] == '/';
  return strncmp (path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int
check_syntax (const char *path, const char *what)
{
  const char *p = path, *c;

  if (path[0] != '/') {
    ovl_error ("%s path '%s' is not absolute", what, path);
    return -1;
  }
  if (strlen (path) >= PATH_MAX) {
    ovl_error ("%s path is too long", what);
    return -1;
  }
  while (*p == '/') {
    size_t len;
    c = p + 1;
    len = strcspn (c, "/");
    if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) {
      ovl_error ("%s path '%s' is not normalised (empty, '.' or '..' component)", what, path);
      return -1;
    }
    if (len > NAME_MAX) {
      ovl_error ("%s path '%s' has a component longer than %d bytes", what, path, NAME_MAX);
      return -1;
    }
    p = c + len;
  }
  return 0;
}

/* The walk behind the entry points; *MISSING tells a directory on the
 * way that does not exist (error set too) from every other failure.
 * WHOLE: PATH is a directory to open itself (an allowed one or below),
 * not the parent of a file. */
static int
open_parent (const char *path, const struct ovl_dirs *dirs, const char *what,
             bool strict_parent, int *dirfd, const char **name, bool *missing,
             bool whole)
{
  CLEANUP_CLOSE int fd = -1;
  const char *p, *last;
  size_t i;
  struct stat st;

  if (check_syntax (path, what) == -1)
    return -1;
  for (i = 0; i < dirs->n; i++)
    if (ovl_path_is_below (path, dirs->dir[i]) && (whole || strcmp (path, dirs->dir[i]) != 0))
      break;
  if (i == dirs->n) {
    ovl_error ("%s path '%s' is outside the allowed directories", what, path);
    return -1;
  }

  last = whole ? path + strlen (path) + 1 : strrchr (path, '/') + 1;
  fd = open ("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) {
    ovl_error ("open /: %m");
    return -1;
  }
  for (p = path + 1; p < last; ) {
    size_t len = strcspn (p, "/");
    char comp[NAME_MAX + 1];
    int nfd;

    memcpy (comp, p, len);
    comp[len] = '\0';
    nfd = openat (fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd == -1) {
      int e = errno;
      if ((e == ENOTDIR || e == ELOOP) &&
          fstatat (fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK (st.st_mode))
        ovl_error ("%s path '%s': '%.*s' is a symbolic link", what, path,
                   (int) (p + len - path), path);
      else {
        *missing = e == ENOENT;
        errno = e;
        ovl_error ("%s path '%s': '%.*s': %m", what, path, (int) (p + len - path), path);
      }
      return -1;
    }
    if (fstat (nfd, &st) == -1) {
      close (nfd);
      ovl_error ("%s: fstat: %m", path);
      return -1;
    }
    /* Whoever owns a directory can rename and replace what is in it, and
     * chmod it at will: only root and we may own one on an overlay's
     * path (systemd-tmpfiles refuses such "unsafe path transitions"). */
    if (strict_parent && st.st_uid != 0 && st.st_uid != geteuid ()) {
      close (nfd);
      ovl_error ("%s path '%s': directory '%.*s' is owned by uid %u, not root",
                 what, path, (int) (p + len - path), path, (unsigned) st.st_uid);
      return -1;
    }
    /* A directory others can write to lets them swap what we checked,
     * unless it is sticky (like /tmp). */
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
        ((p + len + 1 == last && strict_parent) || !(st.st_mode & S_ISVTX))) {
      close (nfd);
      ovl_error ("%s path '%s': directory '%.*s' is writable by group or others",
                 what, path, (int) (p + len - path), path);
      return -1;
    }
    close (fd);
    fd = nfd;
    p += len + 1;
  }
  *name = last;
  *dirfd = OVL_STEAL_FD (fd);
  return 0;
}

int
ovl_path_open_parent (const char *path, const struct ovl_dirs *dirs,
                      const char *what, bool strict_parent,
                      int *dirfd, const char **name)
{
  bool missing = false;

  return open_parent (path, dirs, what, strict_parent, dirfd, name, &missing, false);
}

int
ovl_path_open_dir (const char *dir, const struct ovl_dirs *dirs, const char *what, int *dirfd)
{
  bool missing = false;
  const char *name;

  if (strcmp (dir, "/") == 0) {
    ovl_error ("%s directory '/' is refused", what);
    return -1;
  }
  return open_parent (dir, dirs, what, true, dirfd, &name, &missing, true);
}

int
ovl_path_open_parent_if_exists (const char *path, const struct ovl_dirs *dirs,
                                const char *what, int *dirfd, const char **name)
{
  bool missing = false;

  if (open_parent (path, dirs, what, true, dirfd, name, &missing, false) == 0)
    return 1;
  if (missing) {
    ovl_error_clear ();
    return 0;
  }
  return -1;
}

int
ovl_publish_noreplace (int fromdir, const char *from, int todir, const char *to)
{
  int e;

  if (renameat2 (fromdir, from, todir, to, RENAME_NOREPLACE) == 0)
    return 0;
  /* Asked again each time: the answer is the filesystem's, not ours. */
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
    return -1;
  if (linkat (fromdir, from, todir, to, 0) == -1)
    return -1;
  if (unlinkat (fromdir, from, 0) == 0 || errno == ENOENT)
    return 0;
  /* Not moved, then: one name only, as before. */
  e = errno;
  unlinkat (todir, to, 0);
  errno = e;
  return -1;
}

static bool
same_inode (const struct stat *a, const struct stat *b)
{
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int
ovl_create_locked (int dirfd, const char *name, int mode)
{
  CLEANUP_CLOSE int fd = -1;

  fd = openat (dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd == -1)
    return -1;
  /* A reaper may come between the creation and the lock: then the name
   * is, or soon will be, gone. */
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK)
      errno = EAGAIN;
    return -1;
  }
  switch (ovl_fd_is_at (fd, dirfd, name)) {
  case -1:
    return -1;
  case 0:
    errno = EAGAIN;
    return -1;
  }
  return OVL_STEAL_FD (fd);
}

/* The work of ovl_unlink_if_unlocked; with DRY_RUN, everything but the
 * unlink. */
static int
unlink_if_unlocked (int dirfd, const char *name, bool dry_run)
{
  CLEANUP_CLOSE int fd = -1;
  struct stat a, b;

  if (fstatat (dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISREG (b.st_mode))
    return 0;
  /* Read-write: NFS emulates an exclusive flock with a write lock. */
  fd = openat (dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd == -1 && (errno == EACCES || errno == EROFS))
    fd = openat (dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd == -1)
    return errno == ENOENT ? 0 : -1;
  if (flock (fd, LOCK_EX | LOCK_NB) == -1)
    return errno == EWOULDBLOCK ? 0 : -1;
  if (fstat (fd, &a) == -1)
    return -1;
  if (fstatat (dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISREG (a.st_mode) || !same_inode (&a, &b))
    return 0;                   /* the name moved on to another file */
  if (!dry_run && unlinkat (dirfd, name, 0) == -1)
    return errno == ENOENT ? 0 : -1;
  return 1;
}

int
ovl_unlink_if_unlocked (int dirfd, const char *name)
{
  return unlink_if_unlocked (dirfd, name, false);
}

int
ovl_is_unlocked (int dirfd, const char *name)
{
  return unlink_if_unlocked (dirfd, name, true);
}
