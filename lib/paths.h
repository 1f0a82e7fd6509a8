/* Safe paths.  Paths in a domain XML are untrusted: each must be
 * absolute, normalised, inside a configured directory, and reached
 * without following a symlink.  We walk it one component at a time with
 * O_NOFOLLOW from "/" and hand back the parent directory as a descriptor,
 * so later operations (create, rename, unlink) happen relative to the
 * directory we checked.
 */
#ifndef OVL_PATHS_H
#define OVL_PATHS_H

#include <stdbool.h>

#include "config.h"

/* Check PATH (what = "base" or "overlay" for messages) against DIRS and
 * open its parent directory.  On success *dirfd is the parent and *name
 * points into PATH at the last component.  With STRICT (for paths we
 * create or remove in) the parent must not be group- or world-writable,
 * and every directory on the way must belong to root or to us. */
int ovl_path_open_parent (const char *path, const struct ovl_dirs *dirs,
                          const char *what, bool strict_parent,
                          int *dirfd, const char **name);

/* The same, strict, for a path that may be gone: 1 opened, 0 a directory
 * on the way does not exist (nothing set), -1 any other failure (the
 * error set: outside the directories, a symlink, a foreign owner, ...).
 * The answer is in the return value, never to be read from errno. */
int ovl_path_open_parent_if_exists (const char *path, const struct ovl_dirs *dirs,
                                    const char *what, int *dirfd, const char **name);

/* Open directory DIR itself, one of DIRS or below one, checked as a
 * strict parent is: for the pool, which lives in overlay directories. */
int ovl_path_open_dir (const char *dir, const struct ovl_dirs *dirs, const char *what,
                       int *dirfd);

/* True if PATH is DIR or below it (both normalised). */
bool ovl_path_is_below (const char *path, const char *dir);

/* Give the file FROM in FROMDIR the name TO in TODIR, never replacing
 * what is there: renameat2(RENAME_NOREPLACE) where the filesystem has it,
 * else (NFS, CephFS, FUSE refuse the flag with EINVAL) linkat, which never
 * replaces either, then unlink of FROM.  A crash between the two leaves
 * one inode under both names: whoever hands such a file out must check
 * st_nlink.  0, or -1 with errno set (EEXIST: TO exists; nothing moved). */
int ovl_publish_noreplace (int fromdir, const char *from, int todir, const char *to);

/* Liveness by lock, not by pid: a pid means nothing in another pid
 * namespace or on another host sharing the filesystem, a lock does
 * (flock; NFS clients emulate it with a whole-file POSIX lock).  The
 * maker of a file holds an exclusive flock on it for as long as it
 * lives; a reaper removes a name only when it can take that lock without
 * waiting, and only if the name is still the inode it locked. */

/* Create NAME in DIRFD (O_EXCL, no symlink followed, MODE) and lock it:
 * the descriptor (read-write), or -1 with errno set; EAGAIN means a
 * reaper took the name between creation and lock: try another name. */
int ovl_create_locked (int dirfd, const char *name, int mode);

/* Remove NAME in DIRFD if it is a regular file nobody holds locked.
 * 1 removed, 0 in use or gone, -1 error with errno set. */
int ovl_unlink_if_unlocked (int dirfd, const char *name);
/* Whether ovl_unlink_if_unlocked would remove it now (the same answers),
 * removing nothing. */
int ovl_is_unlocked (int dirfd, const char *name);

#endif
