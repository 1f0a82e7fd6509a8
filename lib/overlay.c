/* The overlay engine; see overlay.h. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "overlay.h"
#include "paths.h"
#include "qmp.h"
#include "qsd.h"
#include "util.h"

/* Per-request working state, private to one batch. */
struct work {
  const struct ovl_request *r;
  struct ovl_result *res;
  int dirfd;
  const char *name;             /* last component of r->overlay */
  int tmpfd;
  char tmpname[64];
  char fdpath[64];              /* what qsd opens: our descriptor's /proc link */
  struct ovl_file_id made;      /* the temporary file's identity, token included */
  char id[48];                  /* node name and job id */
  unsigned long seq;
  uint64_t create_id, dismiss_id;
  bool job_created, renamed;
  bool settled;                 /* no job of ours can open fdpath any more */
  bool pooled;                  /* claimed from the supplier: no qsd work */
  void *claim;                  /* the supplier's handle */
  unsigned daemon;              /* which qsd makes it */
  bool first_in_dir;            /* the first request in its directory */
};

static unsigned long batch_seq;

/* This batch's lock beside the qsd socket (see overlay.h): NAME in the
 * socket's directory DIRFD, held locked as FD while jobs may be ours. */
struct caller_lock {
  int dirfd, fd;
  char caller[17];              /* the random id in our job ids */
  char base[NAME_MAX + 1];      /* the socket's own name */
  char name[NAME_MAX + 1];
};
#define CALLER_LOCK_INFIX ".caller-"

void
ovl_request_defaults (struct ovl_request *r, const struct ovl_config *cfg)
{
  r->cluster_size = cfg->cluster_size;
  r->lazy_refcounts = cfg->lazy_refcounts;
  r->extended_l2 = cfg->extended_l2;
  r->base_format = OVL_FMT_QCOW2;
}

int
ovl_request_set_option (struct ovl_request *r, const char *name, const char *value)
{
  if (strcmp (name, "backing-format") == 0)
    return ovl_format_parse (value, &r->base_format);
  if (strcmp (name, "cluster-size") == 0)
    return ovl_parse_u64 (value, &r->cluster_size) == 0 ?
      ovl_check_cluster_size (r->cluster_size) : -1;
  if (strcmp (name, "lazy-refcounts") == 0)
    return ovl_parse_bool (value, &r->lazy_refcounts);
  if (strcmp (name, "extended-l2") == 0)
    return ovl_parse_bool (value, &r->extended_l2);
  if (strcmp (name, "size") == 0)
    return ovl_parse_u64 (value, &r->size);
  ovl_error ("unknown option '%s'", name);
  return -1;
}

void
ovl_result_clear (struct ovl_result *res)
{
  free (res->error);
  res->error = NULL;
}

/* Record the current error against RES (keeps the first one). */
static void
res_fail (struct ovl_result *res)
{
  if (!res->error)
    res->error = strdup (ovl_error_msg ());
}

/* Set the error and record it against RES; the arguments may include
 * the current error message itself (ovl_error formats first). */
static void __attribute__((format (printf, 2, 3)))
res_failf (struct ovl_result *res, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  ovl_verror (fmt, ap);
  va_end (ap);
  res_fail (res);
}

/* A component of PATH starts with our reserved prefix. */
static bool
has_reserved_component (const char *path)
{
  return strstr (path, "/" OVL_RESERVED) != NULL;
}

int
ovl_request_check_base (const struct ovl_config *cfg, const struct ovl_request *r,
                        struct ovl_result *res, bool reserved_names)
{
  if (!reserved_names && has_reserved_component (r->base)) {
    res_failf (res, "base path '%s' uses a name reserved for virt-overlay", r->base);
    return -1;
  }
  if (ovl_image_probe_chain (&cfg->base_dirs, r->base, r->base_format, &res->base) == -1) {
    res_fail (res);
    return -1;
  }
  res->size = r->size ? r->size : res->base.size;
  if (res->size < res->base.size) {
    res_failf (res, "size %llu is smaller than the base's %llu bytes",
               (unsigned long long) res->size, (unsigned long long) res->base.size);
    return -1;
  }
  if (res->size % 512) {
    res_failf (res, "size %llu is not a multiple of 512", (unsigned long long) res->size);
    return -1;
  }
  return 0;
}

/* PATH (WHAT: "base" or "overlay") can travel in QMP, messages and the
 * ledger: UTF-8 without control characters. */
static int
check_text (struct ovl_result *res, const char *what, const char *path)
{
  char shown[256];
  size_t k = 0;

  if (ovl_has_control (path)) {
    res_failf (res, "%s path contains control characters", what);
    return -1;
  }
  if (ovl_utf8_valid (path))
    return 0;
  /* Show it with every byte outside ASCII as \xNN. */
  for (; *path && k + 5 < sizeof shown; path++)
    k += (unsigned char) *path < 0x80 ? (size_t) snprintf (shown + k, 2, "%c", *path)
      : (size_t) snprintf (shown + k, 5, "\\x%02x", (unsigned char) *path);
  shown[k] = '\0';
  res_failf (res, "%s path '%s' is not valid UTF-8", what, shown);
  return -1;
}

#define NO_IDENTITY "its filesystem records neither birth times nor trusted extended " \
  "attributes, so virt-overlay could not tell its own overlay from a replacement; " \
  "ephemeral mode is refused there"

/* Whether files made in directory DIRFD can be recognised later: its
 * filesystem records birth times, or keeps trusted.* attributes. */
static bool
dir_keeps_identity (int dirfd)
{
  struct statx stx;
  char c;

  if (statx (dirfd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) == 0 && (stx.stx_mask & STATX_BTIME))
    return true;
  return fgetxattr (dirfd, OVL_TOKEN_XATTR, &c, 1) != -1 || errno != ENOTSUP;
}

/* Checks that need no daemon.  Opens the overlay's directory into *DIRFD. */
static int
check_request (const struct ovl_config *cfg, const struct ovl_request *r,
               struct ovl_result *res, bool reserved_names, int *dirfd, const char **name)
{
  CLEANUP_CLOSE int odir = -1;
  const char *oname;
  struct stat st;

  if (check_text (res, "base", r->base) == -1 || check_text (res, "overlay", r->overlay) == -1)
    return -1;
  if (strcmp (r->base, r->overlay) == 0) {
    res_failf (res, "overlay '%s' is the same file as its base", r->overlay);
    return -1;
  }
  if (ovl_check_cluster_size (r->cluster_size) == -1) {
    res_fail (res);
    return -1;
  }
  if (r->extended_l2 && r->cluster_size < 16384) {
    res_failf (res, "extended L2 needs a cluster size of at least 16384, not %llu",
               (unsigned long long) r->cluster_size);
    return -1;
  }
  if (!reserved_names && has_reserved_component (r->overlay)) {
    res_failf (res, "overlay path '%s' uses a name reserved for virt-overlay", r->overlay);
    return -1;
  }
  if (ovl_request_check_base (cfg, r, res, reserved_names) == -1)
    return -1;
  if (ovl_path_open_parent (r->overlay, &cfg->overlay_dirs, "overlay", true, &odir, &oname) == -1) {
    res_fail (res);
    return -1;
  }
  if (r->need_identity && !dir_keeps_identity (odir)) {
    res_failf (res, "overlay '%s': " NO_IDENTITY, r->overlay);
    return -1;
  }
  if (fstatat (odir, oname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (st.st_dev == res->base.dev && st.st_ino == res->base.ino)
      res_failf (res, "overlay '%s' is the same file as its base", r->overlay);
    else if (S_ISLNK (st.st_mode))
      res_failf (res, "overlay '%s' already exists (a symbolic link)", r->overlay);
    else
      res_failf (res, "overlay '%s' already exists", r->overlay);
    return -1;
  }
  if (errno != ENOENT) {
    res_failf (res, "overlay '%s': %m", r->overlay);
    return -1;
  }
  *name = oname;
  *dirfd = OVL_STEAL_FD (odir);
  return 0;
}

/* What is at PATH against ID; for OVL_OURS, *DIRFD and *NAME locate it. */
static int
presence (const struct ovl_config *cfg, const char *path, const struct ovl_file_id *id,
          int *dirfd, const char **name)
{
  CLEANUP_CLOSE int fd = -1;
  struct ovl_file_id now;
  bool is_reg;
  int r;

  r = ovl_path_open_parent_if_exists (path, &cfg->overlay_dirs, "overlay", &fd, name);
  if (r != 1)
    return r == 0 ? OVL_PRESENCE_ABSENT : -1;
  if (ovl_file_id_at (fd, *name, &now, &is_reg) == -1) {
    if (errno == ENOENT)
      return OVL_PRESENCE_ABSENT;
    ovl_error ("overlay '%s': %m", path);
    return -1;
  }
  /* Device and inode alone would let a user's new file pass for ours. */
  if (!id || !is_reg || !ovl_file_id_is_strong (id) || !ovl_file_id_equal (&now, id))
    return OVL_PRESENCE_OTHER;
  *dirfd = OVL_STEAL_FD (fd);
  return OVL_PRESENCE_OURS;
}

int
ovl_overlay_presence (const struct ovl_config *cfg, const char *path,
                      const struct ovl_file_id *id)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;

  return presence (cfg, path, id, &dirfd, &name);
}

/* Whether a process holds QEMU's image lock on NAME: QEMU locks bytes
 * from 100 (permissions) and 200 (shared permissions) while an image is
 * open.  libvirt runs prepare before QEMU starts and release after it
 * ends; anyone else (a script, a second caller) must not remove an
 * overlay a guest is running on.  1 in use, 0 not, -1 when it cannot be
 * told (errno set): then it is not removed either. */
static int
in_use (int dirfd, const char *name)
{
  CLEANUP_CLOSE int fd = -1;
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 200 };
  int r = ovl_open_regular_at (dirfd, name, &fd);

  if (r == 0)
    errno = ENOENT;             /* no regular file by that name */
  if (r != 1 || fcntl (fd, F_OFD_GETLK, &fl) == -1)
    return -1;
  return fl.l_type != F_UNLCK;
}

/* Open PATH, reached as ovl_overlay_presence does, into *FD if it is a
 * regular file of one link made for OWNER (see ovl_overlay_made_for),
 * its identity in *ID: 1, 0 not, -1 error. */
static int
open_made_for (const struct ovl_config *cfg, const char *path, const char *owner,
               struct ovl_file_id *id, int *fdp)
{
  CLEANUP_CLOSE int dirfd = -1;
  CLEANUP_CLOSE int fd = -1;
  const char *name;
  struct statx stx;
  int r;

  if (has_reserved_component (path))
    return 0;                   /* a temporary or pooled file is nobody's disk */
  r = ovl_path_open_parent_if_exists (path, &cfg->overlay_dirs, "overlay", &dirfd, &name);
  if (r != 1)
    return r;
  if ((r = ovl_open_regular_at (dirfd, name, &fd)) != 1) {
    if (r == -1)
      ovl_error ("overlay '%s': %m", path);
    return r;
  }
  /* The count as the server has it now: FUSE and NFS clients cache it. */
  if (statx (fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_NLINK, &stx) == -1 ||
      ovl_file_id_at (fd, "", id, NULL) == -1 ||
      (r = ovl_file_owner_is (fd, owner)) == -1) {
    ovl_error ("overlay '%s': %m", path);
    return -1;
  }
  /* A second name would be a second way to reach, and remove, it. */
  if (!(stx.stx_mask & STATX_NLINK) || stx.stx_nlink != 1 || !id->token[0] || r != 1)
    return 0;
  *fdp = OVL_STEAL_FD (fd);
  return 1;
}

int
ovl_overlay_made_for (const struct ovl_config *cfg, const char *path, const char *owner,
                      struct ovl_file_id *id)
{
  CLEANUP_CLOSE int fd = -1;

  return open_made_for (cfg, path, owner, id, &fd);
}

int
ovl_overlay_take (const struct ovl_config *cfg, const char *path, const char *owner,
                  const struct ovl_file_id *seen, const char *token)
{
  CLEANUP_CLOSE int fd = -1;
  struct ovl_file_id now;
  int r = open_made_for (cfg, path, owner, &now, &fd);

  if (r != 1)
    return r;
  if (!ovl_file_id_equal (&now, seen))
    return 0;
  if (fsetxattr (fd, OVL_TOKEN_XATTR, token, strlen (token), XATTR_REPLACE) == -1) {
    ovl_error ("overlay '%s': setting the " OVL_TOKEN_XATTR " attribute: %m", path);
    return -1;
  }
  return 1;
}

int
ovl_overlay_let_go (const struct ovl_config *cfg, const char *path, const char *owner,
                    const char *mine, const char *after)
{
  CLEANUP_CLOSE int fd = -1;
  struct ovl_file_id now;
  char cur[OVL_TOKEN_LEN + 1];
  ssize_t n;
  int r = open_made_for (cfg, path, owner, &now, &fd);

  if (r != 1)
    return r;
  n = fgetxattr (fd, OVL_RELEASED_XATTR, cur, sizeof cur - 1);
  if (n == -1 && errno != ENODATA) {
    ovl_error ("overlay '%s': reading the " OVL_RELEASED_XATTR " attribute: %m", path);
    return -1;
  }
  cur[n == -1 ? 0 : n] = '\0';
  if (strcmp (cur, mine) == 0)
    return 1;                   /* marked already (a release run again) */
  /* The marks form a chain: each names the holder that let go, and the
   * one before must have let go to that holder.  Any other mark means
   * this host's claim was never settled, or a later holder's mark is
   * there: neither is overwritten. */
  if (after && strcmp (cur, after) != 0)
    return 2;
  if (fsetxattr (fd, OVL_RELEASED_XATTR, mine, strlen (mine), 0) == -1) {
    ovl_error ("overlay '%s': setting the " OVL_RELEASED_XATTR " attribute: %m", path);
    return -1;
  }
  return 1;
}

/* Open PATH into *FD if it is still the regular file ID: 1, 0, -1. */
static int
open_ours (const struct ovl_config *cfg, const char *path, const struct ovl_file_id *id,
           int *fdp)
{
  CLEANUP_CLOSE int dirfd = -1;
  CLEANUP_CLOSE int fd = -1;
  struct ovl_file_id now;
  const char *name;
  int r = presence (cfg, path, id, &dirfd, &name);

  if (r != OVL_PRESENCE_OURS)
    return r == -1 ? -1 : 0;
  /* The file opened is the one checked: its identity, read again. */
  if ((r = ovl_open_regular_at (dirfd, name, &fd)) != 1 ||
      ovl_file_id_at (fd, "", &now, NULL) == -1) {
    if (r == 0 || errno == ENOENT)
      return 0;
    ovl_error ("overlay '%s': %m", path);
    return -1;
  }
  if (!ovl_file_id_equal (&now, id))
    return 0;
  *fdp = OVL_STEAL_FD (fd);
  return 1;
}

int
ovl_overlay_was_let_go (const struct ovl_config *cfg, const char *path,
                        const struct ovl_file_id *id, const char *prev)
{
  CLEANUP_CLOSE int fd = -1;
  int r = open_ours (cfg, path, id, &fd);

  if (r != 1)
    return r;
  if ((r = ovl_file_xattr_is (fd, OVL_RELEASED_XATTR, prev)) == -1)
    ovl_error ("overlay '%s': %m", path);
  return r;
}

int
ovl_overlay_hand_back (const struct ovl_config *cfg, const char *path,
                       const struct ovl_file_id *id, const char *prev)
{
  CLEANUP_CLOSE int fd = -1;
  int r = open_ours (cfg, path, id, &fd);

  if (r != 1)
    return r;
  if (fsetxattr (fd, OVL_TOKEN_XATTR, prev, strlen (prev), XATTR_REPLACE) == -1) {
    ovl_error ("overlay '%s': setting the " OVL_TOKEN_XATTR " attribute: %m", path);
    return -1;
  }
  return 1;
}

int
ovl_overlay_in_use (const struct ovl_config *cfg, const char *path)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;
  int r = ovl_path_open_parent_if_exists (path, &cfg->overlay_dirs, "overlay", &dirfd, &name);

  if (r != 1)
    return r;
  r = in_use (dirfd, name);
  if (r == -1) {
    if (errno == ENOENT)
      return 0;
    ovl_error ("overlay '%s': cannot tell whether a QEMU has it open: %m", path);
  }
  return r;
}

int
ovl_overlay_remove_owned (const struct ovl_config *cfg, const char *path,
                          const struct ovl_file_id *id)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;
  int r = presence (cfg, path, id, &dirfd, &name);

  if (r != OVL_PRESENCE_OURS)
    return r == -1 ? -1 : 0;
  switch (in_use (dirfd, name)) {
  case 1:
    ovl_error ("overlay '%s' is in use (a QEMU holds its image lock); left alone", path);
    return -1;
  case -1:
    ovl_error ("overlay '%s': cannot tell whether a QEMU has it open: %m; left alone", path);
    return -1;
  }
  if (unlinkat (dirfd, name, 0) == -1) {
    ovl_error ("overlay '%s': unlink: %m", path);
    return -1;
  }
  if (fsync (dirfd) == -1) {
    ovl_error ("overlay '%s': fsync of its directory: %m", path);
    return -1;
  }
  return 1;
}

/* Remove the temporary files in W's directory that no live caller
 * holds: the maker of one holds its lock until it is published or
 * removed, from whatever pid namespace or host.  One that cannot be
 * removed now is left for the next caller. */
static int
remove_stale_temps (struct work *w)
{
  CLEANUP_CLOSEDIR DIR *d = ovl_opendir_at (w->dirfd);
  struct dirent *e;

  if (!d) {
    res_failf (w->res, "overlay '%s': reading its directory: %m", w->r->overlay);
    return -1;
  }
  while ((e = readdir (d)))
    if (strncmp (e->d_name, OVL_TMP_PREFIX, strlen (OVL_TMP_PREFIX)) == 0)
      ovl_unlink_if_unlocked (w->dirfd, e->d_name);
  return 0;
}

static int
create_temp (struct work *w)
{
  const struct ovl_request *r = w->r;
  struct ovl_result *res = w->res;
  char rnd[17];
  int tries;

  /* A random name: a pid is only unique in its own namespace.  Another
   * caller's reaper may take a name before we lock it: then a new one. */
  for (tries = 0; tries < 8; tries++) {
    if (ovl_random_hex (rnd, 8) == -1) {
      res_fail (res);
      return -1;
    }
    snprintf (w->tmpname, sizeof w->tmpname, OVL_TMP_PREFIX "%s-%lu.tmp", rnd, w->seq);
    w->tmpfd = ovl_create_locked (w->dirfd, w->tmpname, 0600);
    if (w->tmpfd >= 0 || (errno != EAGAIN && errno != EEXIST))
      break;
  }
  if (w->tmpfd == -1) {
    res_failf (res, "overlay '%s': cannot create a temporary file: %m", r->overlay);
    return -1;
  }
  snprintf (w->fdpath, sizeof w->fdpath, "/proc/%ld/fd/%d", (long) getpid (), w->tmpfd);
  /* Rename keeps the inode and its attributes: this is the identity of
   * the overlay to be. */
  if (ovl_file_id_mark (w->tmpfd, &w->made) == -1) {
    res_failf (res, "overlay '%s': %s", r->overlay, ovl_error_msg ());
    return -1;
  }
  if (ovl_file_set_owner (w->tmpfd, r->owner) == -1) {
    res_failf (res, "overlay '%s': %s", r->overlay, ovl_error_msg ());
    return -1;
  }
  if (ovl_file_id_at (w->tmpfd, "", &w->made, NULL) == -1) {
    res_failf (res, "overlay '%s': reading its identity: %m", r->overlay);
    return -1;
  }
  if (r->need_identity && !ovl_file_id_is_strong (&w->made)) {
    res_failf (res, "overlay '%s': " NO_IDENTITY, r->overlay);
    return -1;
  }
  return 0;
}

/* blockdev-create with the file node inline: qsd opens the file for the
 * job and closes it when the job ends, so there is no node to add or
 * delete (each QMP command costs qsd a main-loop turn).  qsd's image
 * locking is off: the file is ours alone, and on NFS our flock of it is
 * a whole-file POSIX lock that qsd's byte-range locks would run into. */
static struct ovl_json *
create_args (const struct work *w)
{
  const struct ovl_request *r = w->r;
  const struct ovl_result *res = w->res;

  return ovl_json_object_build (
    "s:job-id", w->id,
    "o:options", ovl_json_object_build (
      "s:driver", "qcow2",
      "o:file", ovl_json_object_build (
        "s:driver", "file",
        "s:filename", w->fdpath,
        "o:cache", ovl_json_object_build ("b:no-flush", 1, NULL),
        "s:locking", "off",
        NULL),
      "u:size", res->size,
      "s:backing-file", r->base,
      "s:backing-fmt", ovl_format_name (r->base_format),
      "u:cluster-size", r->cluster_size,
      "b:lazy-refcounts", (int) r->lazy_refcounts,
      "b:extended-l2", (int) r->extended_l2,
      NULL),
    NULL);
}

static uint64_t
send_dismiss (struct ovl_qmp *q, const char *job)
{
  return ovl_qmp_send_json (q, "job-dismiss", ovl_json_object_build ("s:id", job, NULL));
}

static const struct ovl_json *
find_job (const struct ovl_json *jobs, const char *id)
{
  size_t j;
  for (j = 0; j < ovl_json_array_len (jobs); j++) {
    const char *jid = ovl_json_get_string (ovl_json_array_at (jobs, j), "id");
    if (jid && strcmp (jid, id) == 0)
      return ovl_json_array_at (jobs, j);
  }
  return NULL;
}

/* Take a lock of our own beside the qsd socket, named by a random id
 * that goes into our job ids, after removing the locks of callers that
 * ended without removing theirs. */
static int
caller_lock_take (const struct ovl_config *cfg, struct caller_lock *c)
{
  const char *slash = strrchr (cfg->qsd_socket, '/');
  CLEANUP_FREE char *dir = NULL;
  size_t blen;
  DIR *d;
  struct dirent *e;
  int tries;

  if (!slash || strlen (slash + 1) + strlen (CALLER_LOCK_INFIX) + 16 > NAME_MAX) {
    ovl_error ("qsd_socket '%s': no room beside it for a caller's lock", cfg->qsd_socket);
    return -1;
  }
  snprintf (c->base, sizeof c->base, "%s", slash + 1);
  if (!(dir = strndup (cfg->qsd_socket, slash == cfg->qsd_socket ? 1 : (size_t) (slash - cfg->qsd_socket))) ||
      (c->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
    ovl_error ("%s: %m", dir ? dir : "out of memory");
    return -1;
  }
  blen = strlen (c->base);
  if ((d = ovl_opendir_at (c->dirfd))) {
    while ((e = readdir (d)))
      if (strncmp (e->d_name, c->base, blen) == 0 &&
          strncmp (e->d_name + blen, CALLER_LOCK_INFIX, strlen (CALLER_LOCK_INFIX)) == 0)
        ovl_unlink_if_unlocked (c->dirfd, e->d_name);
    closedir (d);
  }
  for (tries = 0; tries < 8 && c->fd == -1; tries++) {
    if (ovl_random_hex (c->caller, 8) == -1)
      return -1;
    if (snprintf (c->name, sizeof c->name, "%s" CALLER_LOCK_INFIX "%s",
                  c->base, c->caller) >= (int) sizeof c->name) {
      errno = ENAMETOOLONG;
      break;
    }
    c->fd = ovl_create_locked (c->dirfd, c->name, 0600);
    if (c->fd == -1 && errno != EAGAIN && errno != EEXIST)
      break;
  }
  if (c->fd == -1) {
    ovl_error ("%s/%s: %m", dir, c->name);
    return -1;
  }
  return 0;
}

/* Our jobs are all dismissed (or we gave up on them): others may. */
static void
caller_lock_release (struct caller_lock *c)
{
  struct stat a, b;

  if (c->fd >= 0 && fstat (c->fd, &a) == 0 &&
      fstatat (c->dirfd, c->name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    unlinkat (c->dirfd, c->name, 0);
  if (c->fd >= 0)
    close (c->fd);
  if (c->dirfd >= 0)
    close (c->dirfd);
  c->fd = c->dirfd = -1;
}

/* Whether the caller that made job ID ("ovl-HEX-SEQ") has ended: its
 * lock beside the socket is gone, or free (then we remove it).  A pid
 * would say nothing about a caller in another pid namespace. */
static bool
caller_is_gone (const struct caller_lock *c, const char *id)
{
  const char *p = id + strlen (OVL_NAME_PREFIX);
  size_t len;
  char name[NAME_MAX + 1];
  struct stat st;

  if (strncmp (id, OVL_NAME_PREFIX, strlen (OVL_NAME_PREFIX)) != 0)
    return false;
  len = strspn (p, "0123456789abcdef");
  if (len == 0 || len > 16 || p[len] != '-' ||
      (len == strlen (c->caller) && memcmp (p, c->caller, len) == 0))
    return false;
  if (snprintf (name, sizeof name, "%s" CALLER_LOCK_INFIX "%.*s",
                c->base, (int) len, p) >= (int) sizeof name)
    return false;
  if (fstatat (c->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT;
  return ovl_unlink_if_unlocked (c->dirfd, name) == 1;
}

/* Dismiss the concluded jobs that callers which ended left behind, all
 * at once.  Their verdicts do not matter (another caller may get there
 * first); waiting for the last reply means qsd handled them all. */
static int
dismiss_leftovers (struct ovl_qmp *q, const struct ovl_json *jobs,
                   const struct caller_lock *c, int64_t deadline)
{
  uint64_t last = 0;
  size_t j;

  for (j = 0; j < ovl_json_array_len (jobs); j++) {
    const struct ovl_json *job = ovl_json_array_at (jobs, j);
    const char *id = ovl_json_get_string (job, "id");
    const char *status = ovl_json_get_string (job, "status");
    if (id && status && strcmp (status, "concluded") == 0 &&
        caller_is_gone (c, id) &&
        !(last = send_dismiss (q, id)))
      return -1;
  }
  if (last)
    ovl_json_free (ovl_qmp_wait (q, last, deadline));
  return 0;
}

/* The QMP exchange with one daemon, three flights in all:
 *   blockdev-create x N                 (behind the negotiation)
 *   ... JOB_STATUS_CHANGE concluded x N
 *   query-jobs, job-dismiss x N         (the verdicts, read before the
 *                                        dismissals are processed)
 * Per-request failures go to the request and give 1; a broken connection
 * or deadline gives -1. */
/* Whether work item W goes to daemon D. */
#define MINE(w, d) (!(w).pooled && (w).daemon == (d))

/* Flight one for daemon D: every blockdev-create, written at once. */
static int
send_batch (struct ovl_qmp *q, struct work *w, size_t n, unsigned d, int64_t deadline)
{
  size_t i;

  for (i = 0; i < n; i++) {
    if (!MINE (w[i], d))
      continue;
    if (!(w[i].create_id = ovl_qmp_send_json (q, "blockdev-create", create_args (&w[i]))))
      return -1;
  }
  return ovl_qmp_flush (q, deadline);
}

static int
finish_batch (struct ovl_qmp *q, struct work *w, size_t n, unsigned d,
              const struct caller_lock *c, int64_t deadline)
{
  CLEANUP_JSON struct ovl_json *jobs = NULL;
  uint64_t jobs_id;
  size_t i;
  int failed = 0;

  for (i = 0; i < n; i++) {
    struct ovl_json *r;
    if (!MINE (w[i], d))
      continue;
    r = ovl_qmp_wait (q, w[i].create_id, deadline);
    if (r) {
      w[i].job_created = true;
      ovl_json_free (r);
    }
    else {
      /* qsd refused it, or the connection died (then every later wait
       * fails too and the batch ends below). */
      res_failf (w[i].res, "overlay '%s': %s", w[i].r->overlay, ovl_error_msg ());
      failed = 1;
    }
  }
  for (i = 0; i < n; i++) {
    struct ovl_json *ev;
    if (!w[i].job_created || w[i].daemon != d)
      continue;
    ev = ovl_qmp_wait_event (q, deadline, "JOB_STATUS_CHANGE",
                             "id", w[i].id, "status", "concluded", NULL);
    if (!ev)
      return -1;
    ovl_json_free (ev);
    w[i].settled = true;        /* the job closed the file before it concluded */
  }

  if (!(jobs_id = ovl_qmp_send (q, "query-jobs", NULL)))
    return -1;
  for (i = 0; i < n; i++)
    if (w[i].job_created && w[i].daemon == d &&
        !(w[i].dismiss_id = send_dismiss (q, w[i].id)))
      return -1;
  if (!(jobs = ovl_qmp_wait (q, jobs_id, deadline)))
    return -1;
  for (i = 0; i < n; i++) {
    const struct ovl_json *job;
    const char *err;
    if (!w[i].job_created || w[i].daemon != d)
      continue;
    job = find_job (jobs, w[i].id);
    if (!job) {
      res_failf (w[i].res, "overlay '%s': job %s vanished from qemu-storage-daemon",
                 w[i].r->overlay, w[i].id);
      failed = 1;
    }
    else if ((err = ovl_json_get_string (job, "error"))) {
      res_failf (w[i].res, "overlay '%s': qemu-storage-daemon: %s", w[i].r->overlay, err);
      failed = 1;
    }
  }
  for (i = 0; i < n; i++) {
    struct ovl_json *r;
    if (!w[i].job_created || w[i].daemon != d)
      continue;
    /* A job of ours left in qsd is not all-or-nothing. */
    if (!(r = ovl_qmp_wait (q, w[i].dismiss_id, deadline))) {
      ovl_error_prefix ("cleaning up in qemu-storage-daemon: ");
      return -1;
    }
    ovl_json_free (r);
  }
  if (dismiss_leftovers (q, jobs, c, deadline) == -1)
    return -1;
  return failed;
}

/* Work done once per directory is done by its first request. */
static void
mark_first_in_dir (struct work *w, size_t n)
{
  size_t i, j;
  struct stat a, b;

  for (i = 0; i < n; i++) {
    w[i].first_in_dir = true;
    if (fstat (w[i].dirfd, &a) == -1)
      continue;
    for (j = 0; j < i; j++)
      if (fstat (w[j].dirfd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        w[i].first_in_dir = false;
        break;
      }
  }
}

/* qsd opens /proc/OURPID/fd/N in its own pid namespace: that names our
 * file only if the namespace is ours.  From a container's it would name
 * another process's file, which qsd would truncate and format. */
static int
check_same_pidns (struct ovl_qmp *q)
{
  long peer = ovl_qmp_peer_pid (q);
  char path[64];
  struct stat a, b;

  snprintf (path, sizeof path, "/proc/%ld/ns/pid", peer);
  if (peer > 0 && stat ("/proc/self/ns/pid", &a) == 0 && stat (path, &b) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return 0;
  ovl_error ("qemu-storage-daemon runs in another pid namespace than this caller "
             "(pid %ld here): it cannot be handed files through /proc; run the caller "
             "in the daemon's pid namespace", (long) getpid ());
  return -1;
}

/* Take our caller lock, and name our jobs by its id. */
static int
name_jobs (const struct ovl_config *cfg, struct caller_lock *lock, struct work *w, size_t n)
{
  size_t i;

  if (caller_lock_take (cfg, lock) == -1)
    return -1;
  for (i = 0; i < n; i++)
    snprintf (w[i].id, sizeof w[i].id, OVL_NAME_PREFIX "%s-%lu", lock->caller, w[i].seq);
  return 0;
}

/* After an exchange with daemon D that broke off: a blockdev-create qsd
 * got, or gets yet (it reads what was sent before it sees the end of
 * the connection), opens /proc/OURPID/fd/N whenever its job starts, and
 * a number closed meanwhile may name another of our files by then - a
 * base, which qsd would truncate and format.  So ask that daemon (PEER,
 * its pid) afresh (it serves one client at a time: once it has answered
 * a new connection, every command of the old one has been run or
 * dropped) until each such job has concluded (then it is dismissed) or
 * does not exist.  A daemon that is gone runs no job; one started since
 * in its place cannot tell, and none is started here.  What is not
 * settled so, free_work leaves open.  The error is kept. */
static void
settle_jobs (const struct ovl_config *cfg, struct work *w, size_t n, unsigned d,
             long peer, int64_t deadline)
{
  CLEANUP_FREE char *error = strdup (ovl_error_msg ());
  CLEANUP_FREE char *sock = NULL;
  struct ovl_qmp *q = NULL;
  size_t i, left = 0;
  long pause_ms = 1;
  bool gone = peer > 0 && kill ((pid_t) peer, 0) == -1 && errno == ESRCH;

  for (i = 0; i < n; i++)
    if (MINE (w[i], d) && w[i].create_id && !w[i].settled)
      left++;
  if (left && !gone && (sock = ovl_qsd_socket (cfg, d)) &&
      (q = ovl_qmp_connect_lazy (sock, deadline)))
    for (;;) {
      CLEANUP_JSON struct ovl_json *jobs = ovl_qmp_command (q, "query-jobs", NULL, deadline);
      struct timespec ts;

      if (!jobs || jobs->type != OVL_JSON_ARRAY || ovl_qmp_peer_pid (q) != peer)
        break;
      for (i = 0; i < n; i++) {
        const struct ovl_json *job;
        const char *status;

        if (!MINE (w[i], d) || !w[i].create_id || w[i].settled)
          continue;
        job = find_job (jobs, w[i].id);
        status = job ? ovl_json_get_string (job, "status") : NULL;
        if (job && (!status || strcmp (status, "concluded") != 0))
          continue;
        if (job) {
          uint64_t id = send_dismiss (q, w[i].id);
          if (id)
            ovl_json_free (ovl_qmp_wait (q, id, deadline));
        }
        w[i].settled = true;
        left--;
      }
      if (!left || ovl_ms_left (deadline) == 0)
        break;
      ts.tv_sec = 0;
      ts.tv_nsec = pause_ms * 1000000L;
      nanosleep (&ts, NULL);    /* waiting for qsd's job */
      if (pause_ms < 16)
        pause_ms *= 2;
    }
  ovl_qmp_close (q);
  if (!q && (gone || (peer > 0 && kill ((pid_t) peer, 0) == -1 && errno == ESRCH)))
    for (i = 0; i < n; i++)
      if (MINE (w[i], d))
        w[i].settled = true;
  ovl_error ("%s", error ? error : "out of memory");
}

/* Spread the batch over the daemons (a single overlay goes to the
 * caller's pid modulo their number, so that concurrent callers spread
 * too), start every daemon on its share, then collect each.  They work
 * in parallel: qsd's main loop is one thread per daemon.  Per-request
 * failures give 1, anything else -1 (the error is set). */
static int
make_batch (const struct ovl_config *cfg, struct work *w, size_t n, int64_t deadline)
{
  struct ovl_qmp *q[OVL_QSD_DAEMONS_MAX] = { NULL };
  unsigned nd = cfg->qsd_daemons ? cfg->qsd_daemons : 1, d, next;
  size_t i;
  int ret = 0, r;

  if (nd > OVL_QSD_DAEMONS_MAX)
    nd = OVL_QSD_DAEMONS_MAX;
  next = (unsigned) getpid () % nd;
  for (i = 0; i < n; i++)
    if (!w[i].pooled)
      w[i].daemon = next++ % nd;
  bool sent[OVL_QSD_DAEMONS_MAX] = { false };
  CLEANUP_FREE char *first_error = NULL;
  struct caller_lock lock = { .dirfd = -1, .fd = -1 };
  /* The exchange ends a little before DEADLINE: an exchange that timed
   * out leaves settle_jobs the rest, within the caller's budget. */
  int budget = ovl_ms_left (deadline);
  int64_t exchange_deadline = budget > 0 ? deadline - (budget / 5 < 250 ? budget / 5 : 250)
    : deadline;

  for (d = 0; d < nd && ret == 0; d++) {
    for (i = 0; i < n && !MINE (w[i], d); i++)
      ;
    if (i == n)
      continue;                 /* nothing for this one */
    /* After the first connection: the socket's directory exists. */
    if (!(q[d] = ovl_qsd_connect (cfg, d, exchange_deadline)) ||
        check_same_pidns (q[d]) == -1 ||
        (lock.fd == -1 && name_jobs (cfg, &lock, w, n) == -1) ||
        send_batch (q[d], w, n, d, exchange_deadline) == -1)
      ret = -1;
    else
      sent[d] = true;
  }
  if (ret == -1)
    first_error = strdup (ovl_error_msg ());
  /* Collect every daemon that got work, even after a failure elsewhere:
   * its jobs are dismissed that way. */
  for (d = 0; d < nd; d++) {
    long peer = q[d] ? ovl_qmp_peer_pid (q[d]) : 0;

    r = -1;
    if (sent[d]) {
      r = finish_batch (q[d], w, n, d, &lock, exchange_deadline);
      if (r == -1 && !first_error)
        first_error = strdup (ovl_error_msg ());
      if (r != 0 && ret != -1)
        ret = r;
    }
    ovl_qmp_close (q[d]);
    /* An exchange that ran to its end settled every job it started. */
    for (i = 0; i < n && r != -1; i++)
      if (MINE (w[i], d))
        w[i].settled = true;
    if (r == -1)
      settle_jobs (cfg, w, n, d, peer, deadline);
  }
  caller_lock_release (&lock);
  if (ret == -1 && first_error)
    ovl_error ("%s", first_error);
  return ret;
}

/* NAME in W's directory is still the temporary file we hold: 1 yes,
 * 0 no, -1 when that cannot be told (errno set). */
static int
is_our_temp (const struct work *w, const char *name)
{
  return ovl_fd_is_at (w->tmpfd, w->dirfd, name);
}

/* Move W's temporary file into place (rename, or link and unlink where
 * the filesystem has no RENAME_NOREPLACE), publishing nothing but the
 * inode we made: checked before, and after, when a swap in between is
 * moved back where it came from. */
static int
publish (struct work *w)
{
  const struct ovl_request *r = w->r;
  struct ovl_result *res = w->res;
  int same;

  if ((same = is_our_temp (w, w->tmpname)) != 1) {
    if (same == 0)
      res_failf (res, "overlay '%s': its temporary file was replaced while it was being made; "
                 "nothing published", r->overlay);
    else
      res_failf (res, "overlay '%s': checking its temporary file: %m", r->overlay);
    return -1;
  }
  if (ovl_publish_noreplace (w->dirfd, w->tmpname, w->dirfd, w->name) == -1) {
    if (errno == EEXIST)
      res_failf (res, "overlay '%s' appeared while it was being made; left alone", r->overlay);
    else
      res_failf (res, "overlay '%s': moving it into place: %m", r->overlay);
    return -1;
  }
  if ((same = is_our_temp (w, w->name)) != 1) {
    int e = errno;
    ovl_publish_noreplace (w->dirfd, w->name, w->dirfd, w->tmpname);
    errno = e;
    if (same == 0)
      res_failf (res, "overlay '%s': its temporary file was replaced while it was being made; "
                 "nothing published", r->overlay);
    else
      res_failf (res, "overlay '%s': checking what was published: %m", r->overlay);
    return -1;
  }
  w->renamed = true;
  return 0;
}

/* Make the temporary files durable and move them into place, after
 * BEFORE (if any) has recorded what is about to be published. */
static int
commit_batch (struct work *w, size_t n, const struct ovl_create_opts *opts)
{
  const struct ovl_supplier *sup = opts->supplier;
  const struct ovl_publish_hook *before = opts->before;
  size_t i;

  /* Start writeback of every file first: then the fdatasyncs after the
   * first find their data on its way and the journal committed, instead
   * of each waiting for a commit of its own. */
  for (i = 0; i < n; i++)
    if (!w[i].pooled)
      sync_file_range (w[i].tmpfd, 0, 0, SYNC_FILE_RANGE_WRITE);
  for (i = 0; i < n; i++)
    if (!w[i].pooled && fdatasync (w[i].tmpfd) == -1) {
      res_failf (w[i].res, "overlay '%s': fdatasync: %m", w[i].r->overlay);
      return -1;
    }
  for (i = 0; i < n; i++)
    if (!w[i].pooled)
      w[i].res->made = w[i].made;
  if (before && before->fn (before->opaque, w[0].r, w[0].res, n) == -1) {
    res_fail (w[0].res);
    return -1;
  }
  for (i = 0; i < n; i++) {
    if (w[i].pooled) {
      if (sup->publish (sup->opaque, w[i].claim, w[i].dirfd, w[i].name,
                        w[i].r->overlay) == -1) {
        res_fail (w[i].res);
        return -1;
      }
      w[i].renamed = true;
    }
    else if (publish (&w[i]) == -1)
      return -1;
  }
  for (i = 0; i < n; i++)
    if (w[i].first_in_dir && fsync (w[i].dirfd) == -1) {
      res_failf (w[i].res, "overlay '%s': fsync of its directory: %m", w[i].r->overlay);
      return -1;
    }
  return 0;
}

/* Undo: remove what this batch created, and only that. */
static void
rollback (struct work *w, size_t n)
{
  size_t i;
  struct ovl_file_id now;

  for (i = 0; i < n; i++) {
    if (w[i].renamed) {
      /* Ours only if it is still the file we made. */
      if (ovl_file_id_at (w[i].dirfd, w[i].name, &now, NULL) == 0 &&
          ovl_file_id_equal (&now, &w[i].res->made))
        unlinkat (w[i].dirfd, w[i].name, 0);
    }
    else if (w[i].tmpfd >= 0 && is_our_temp (&w[i], w[i].tmpname))
      unlinkat (w[i].dirfd, w[i].tmpname, 0);
  }
}

static struct work *
new_work (const struct ovl_request *reqs, struct ovl_result *res, size_t n)
{
  struct work *w = ovl_calloc (n ? n : 1, sizeof *w);
  size_t i;

  for (i = 0; w && i < n; i++) {
    w[i].r = &reqs[i];
    w[i].res = &res[i];
    w[i].dirfd = w[i].tmpfd = -1;
    w[i].seq = ++batch_seq;
  }
  return w;
}

static void
free_work (struct work *w, size_t n, const struct ovl_supplier *sup)
{
  size_t i;
  for (i = 0; i < n; i++) {
    if (w[i].dirfd >= 0)
      close (w[i].dirfd);
    /* A job that may still open it by its number (see settle_jobs): the
     * descriptor stays open, so that the number names no other file, as
     * long as this process lives. */
    if (w[i].tmpfd >= 0 && (!w[i].create_id || w[i].settled))
      close (w[i].tmpfd);
    if (w[i].claim)
      sup->unclaim (sup->opaque, w[i].claim);
  }
  free (w);
}

/* The first failed request's error becomes the batch's error. */
static int
batch_failed (const struct ovl_result *res, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (res[i].error) {
      ovl_error ("%s", res[i].error);
      break;
    }
  return -1;
}

/* A failure of the whole batch (no daemon, dead connection, timeout):
 * every request not already failed carries it. */
static void
fail_all (const struct ovl_request *reqs, struct ovl_result *res, size_t n)
{
  CLEANUP_FREE char *msg = strdup (ovl_error_msg ());
  size_t i;

  for (i = 0; i < n; i++)
    if (!res[i].error && msg &&
        asprintf (&res[i].error, "overlay '%s': %s", reqs[i].overlay, msg) == -1)
      res[i].error = NULL;
}

/* Every check of every request that needs no daemon; the overlays'
 * directories are opened into W. */
static int
check_all (const struct ovl_config *cfg, struct work *w, size_t n, bool reserved_names)
{
  size_t i, j;
  int bad = 0;

  for (i = 0; i < n; i++) {
    for (j = 0; j < i; j++)
      if (strcmp (w[i].r->overlay, w[j].r->overlay) == 0) {
        res_failf (w[i].res, "overlay '%s' is requested twice", w[i].r->overlay);
        bad = 1;
      }
    if (!w[i].res->error &&
        check_request (cfg, w[i].r, w[i].res, reserved_names, &w[i].dirfd, &w[i].name) == -1)
      bad = 1;
  }
  return bad ? -1 : 0;
}

int
ovl_overlay_check (const struct ovl_config *cfg, const struct ovl_request *reqs,
                   struct ovl_result *res, size_t n)
{
  struct work *w = new_work (reqs, res, n);
  int r;

  if (!w)
    return -1;
  r = check_all (cfg, w, n, false);
  free_work (w, n, NULL);
  return r == -1 ? batch_failed (res, n) : 0;
}

/* Claim what the supplier has ready; how many were. */
static int
claim_ready (const struct ovl_supplier *sup, struct work *w, size_t n, size_t *ntaken)
{
  size_t i;
  int r;

  for (i = 0; i < n; i++) {
    r = sup->claim (sup->opaque, w[i].r, w[i].res, w[i].dirfd, &w[i].claim);
    if (r == -1) {
      res_fail (w[i].res);
      return -1;
    }
    w[i].pooled = w[i].res->taken = r == 1;
    *ntaken += w[i].pooled;
  }
  return 0;
}

int
ovl_overlay_create (const struct ovl_config *cfg, const struct ovl_request *reqs,
                    struct ovl_result *res, size_t n, int64_t deadline,
                    const struct ovl_create_opts *opts)
{
  static const struct ovl_create_opts none;
  struct work *w;
  size_t i, ntaken = 0;
  int r;

  if (!opts)
    opts = &none;
  if (n == 0)
    return 0;
  if (n > OVL_MAX_BATCH) {
    ovl_error ("at most %d overlays in one batch, not %zu", OVL_MAX_BATCH, n);
    res_fail (&res[0]);         /* one line says it */
    return -1;
  }
  if (!(w = new_work (reqs, res, n)))
    return -1;

  /* Every check first: nothing is created unless all pass. */
  if (check_all (cfg, w, n, opts->reserved_names) == -1)
    goto fail;

  mark_first_in_dir (w, n);
  /* A ready overlay from the supplier is a rename; the rest go to qsd. */
  if (opts->supplier && claim_ready (opts->supplier, w, n, &ntaken) == -1)
    goto fail;
  for (i = 0; i < n && ntaken < n; i++) {
    if ((w[i].first_in_dir && remove_stale_temps (&w[i]) == -1) ||
        (!w[i].pooled && create_temp (&w[i]) == -1))
      goto fail;
  }

  if (ntaken < n && (r = make_batch (cfg, w, n, deadline)) != 0) {
    if (r == -1)
      fail_all (reqs, res, n);
    goto fail;
  }
  if (commit_batch (w, n, opts) == -1)
    goto fail;

  free_work (w, n, opts->supplier);
  return 0;

 fail:
  rollback (w, n);
  free_work (w, n, opts->supplier);
  return batch_failed (res, n);
}
