/* Scope-bound cleanup helpers built on __attribute__((cleanup)).
 *
 * Every helper accepts NULL / -1 so that a variable may be left unset on
 * any path.  To hand ownership on, steal it: OVL_STEAL (p).
 */
#ifndef OVL_CLEANUP_H
#define OVL_CLEANUP_H

#include <dirent.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
#include <errno.h>

static inline void
ovl_cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

static inline void
ovl_cleanup_close (int *fd)
{
  if (*fd >= 0) {
    int saved = errno;
    close (*fd);
    errno = saved;
  }
}

static inline void
ovl_cleanup_fclose (FILE **fp)
{
  if (*fp)
    fclose (*fp);
}

static inline void
ovl_cleanup_closedir (DIR **d)
{
  if (*d)
    closedir (*d);
}

#define CLEANUP_FREE __attribute__((cleanup (ovl_cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup (ovl_cleanup_close)))
#define CLEANUP_FCLOSE __attribute__((cleanup (ovl_cleanup_fclose)))
#define CLEANUP_CLOSEDIR __attribute__((cleanup (ovl_cleanup_closedir)))

/* Take the value out of a cleanup variable so it is not freed. */
#define OVL_STEAL(p) ({ __typeof__ (p) ovl_steal_tmp_ = (p); (p) = NULL; ovl_steal_tmp_; })
#define OVL_STEAL_FD(fd) ({ int ovl_steal_fd_ = (fd); (fd) = -1; ovl_steal_fd_; })

#endif
