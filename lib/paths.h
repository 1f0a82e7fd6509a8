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

/* True if PATH is DIR or below it (both normalised). */
bool ovl_path_is_below (const char *path, const char *dir);

#endif
