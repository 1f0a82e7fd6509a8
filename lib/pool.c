/* The warm pool; see pool.h. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "paths.h"
#include "pool.h"
#include "child.h"
#include "util.h"

#define KEY_MAX 8192
#define READY_PREFIX "ready-"


/* The exact key of what R asks for (RES: its base, as checked). */
static int
make_key (const struct ovl_request *r, const struct ovl_result *res, char *key, size_t len)
{
  const struct ovl_image *b = &res->base;
  int n = snprintf (key, len,
                    "virt-overlay-pool 1\nbase %s\nbase-file %llu %llu %llu %lld.%09ld\n"
                    "backing-format %s\ncluster-size %llu\nlazy-refcounts %d\n"
                    "extended-l2 %d\nsize %llu\n",
                    r->base, (unsigned long long) b->dev, (unsigned long long) b->ino,
                    (unsigned long long) b->file_size, (long long) b->mtime.tv_sec,
                    b->mtime.tv_nsec, ovl_format_name (r->base_format),
                    (unsigned long long) r->cluster_size, r->lazy_refcounts,
                    r->extended_l2, (unsigned long long) res->size);
  if (n < 0 || (size_t) n >= len) {
    ovl_error ("pool key too long");
    return -1;
  }
  return 0;
}

static void
key_hash (const char *key, char out[17])
{
  uint64_t h = 0xcbf29ce484222325ULL;  /* FNV-1a */
  for (; *key; key++) {
    h ^= (unsigned char) *key;
    h *= 0x100000001b3ULL;
  }
  snprintf (out, 17, "%016llx", (unsigned long long) h);
}

/* Open directory NAME in DIRFD without following symlinks, and only if
 * it is ours alone (a pool others can write to is not trusted). */
static int
open_private_dir (int dirfd, const char *name)
{
  int fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;

  if (fd == -1)
    return -1;
  if (fstat (fd, &st) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  if (st.st_uid != geteuid () || (st.st_mode & 077)) {
    close (fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

/* Why open_private_dir failed. */
static const char *
private_dir_error (void)
{
  return errno == EPERM ? "not a private directory of ours" : strerror (errno);
}

/* The key file of pool directory PFD equals KEY. */
static bool
key_matches (int pfd, const char *key)
{
  CLEANUP_CLOSE int fd = openat (pfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char buf[KEY_MAX];
  ssize_t n;

  if (fd == -1)
    return false;
  n = read (fd, buf, sizeof buf - 1);
  if (n < 0)
    return false;
  buf[n] = '\0';
  return strcmp (buf, key) == 0;
}

/* Take the lock of pool directory PFD without waiting: the descriptor,
 * -2 if another refiller holds it, -1 on error.  HELD, if >= 0, is that
 * lock already held by the caller (handed down by whoever started the
 * refiller): it must be that very file. */
static int
take_lock (int pfd, int held)
{
  int lock = openat (pfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  struct stat a, b;

  if (lock == -1) {
    ovl_error ("pool: lock: %m");
    return -1;
  }
  if (held >= 0) {
    close (lock);
    if (fstat (held, &a) == -1 || fstatat (pfd, "lock", &b, AT_SYMLINK_NOFOLLOW) == -1 ||
        a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
      ovl_error ("pool: the lock handed down is not this pool's lock");
      return -1;
    }
    if ((lock = fcntl (held, F_DUPFD_CLOEXEC, 3)) == -1)
      ovl_error ("pool: dup of the lock handed down: %m");
    return lock;
  }
  if (flock (lock, LOCK_EX | LOCK_NB) == 0)
    return lock;
  close (lock);
  if (errno == EWOULDBLOCK)
    return -2;
  ovl_error ("pool: flock: %m");
  return -1;
}

static bool
is_ready_name (const char *name)
{
  size_t n = strlen (name);
  return strncmp (name, READY_PREFIX, strlen (READY_PREFIX)) == 0 &&
    n > 6 && strcmp (name + n - 6, ".qcow2") == 0;
}

bool
ovl_pool_wants_refill (const struct ovl_config *cfg, const struct ovl_result *res)
{
  return cfg->pool_size > 0 && (!res->taken || res->left <= cfg->pool_size / 2);
}

/* A claim: the pool directory, the claimed file (flocked) and its name
 * there. */
struct claim {
  int pfd, fd;
  char name[NAME_MAX + 1];
};

/* Claim ready file NAME of pool PFD into C: locked without waiting (a
 * file another taker, or its refiller, holds is skipped; read-write, for
 * an NFS client grants an exclusive lock only then), still that name's
 * file once locked, a regular file with one link.  A second name means a
 * take (or refill) that died between link and unlink: it may be a
 * domain's disk already, so its pool name is dropped.  1 claimed, 0 not
 * this one, -1 error. */
static int
claim_one (int pfd, const char *name, struct claim *c, struct ovl_file_id *id,
           bool need_token, const char *owner)
{
  int r;
  CLEANUP_CLOSE int fd = openat (pfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  struct statx stx;
  bool is_reg;

  if (fd == -1)
    return errno == ENOENT || errno == ELOOP ? 0 : -1;
  if (flock (fd, LOCK_EX | LOCK_NB) == -1)
    return errno == EWOULDBLOCK ? 0 : -1;
  if ((r = ovl_fd_is_at (fd, pfd, name)) != 1)
    return r;                   /* 0: taken since we opened it */
  /* The count as the server has it now: FUSE and NFS clients cache
   * attributes, and a cached count can be from before a link. */
  if (statx (fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_NLINK, &stx) == -1)
    return -1;
  if (!(stx.stx_mask & STATX_NLINK) || stx.stx_nlink != 1) {
    unlinkat (pfd, name, 0);
    return 0;
  }
  /* A fresh token for this claim.  Without one, a claim abandoned after
   * its identity was recorded would leave that identity valid for the
   * next taker of the file: not for an overlay that is to be removed. */
  r = ovl_file_id_remark (fd, id);
  if (r == -1 || (r == 1 && need_token))
    return r == 1 ? 0 : -1;
  if (ovl_file_set_owner (fd, owner) == -1)
    return -1;
  if (ovl_file_id_at (fd, "", id, &is_reg) == -1)
    return -1;
  if (snprintf (c->name, sizeof c->name, "%s", name) >= (int) sizeof c->name)
    return 0;                   /* not a name of ours */
  c->fd = OVL_STEAL_FD (fd);
  return 1;
}

static void
pool_unclaim (void *opaque, void *h)
{
  struct claim *c = h;

  if (!c)
    return;
  if (c->fd >= 0)
    close (c->fd);              /* unpublished, it is ready for the next taker */
  if (c->pfd >= 0)
    close (c->pfd);
  free (c);
}

static int
pool_claim (void *opaque, const struct ovl_request *r, struct ovl_result *res,
            int dirfd, void **h)
{
  char key[KEY_MAX], hash[17];
  CLEANUP_CLOSE int top = -1, pfd = -1;
  CLEANUP_CLOSEDIR DIR *d = NULL;
  CLEANUP_FREE struct claim *c = NULL;
  struct dirent *e;
  int got;

  if (make_key (r, res, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  /* No pool (or none of ours, which the refiller reports): none ready. */
  if ((top = open_private_dir (dirfd, OVL_POOL_DIR)) == -1 ||
      (pfd = open_private_dir (top, hash)) == -1 ||
      !key_matches (pfd, key))
    return 0;
  if (!(d = ovl_opendir_at (pfd))) {
    ovl_error ("overlay '%s': reading the pool: %m", r->overlay);
    return -1;
  }
  if (!(c = ovl_calloc (1, sizeof *c)))
    return -1;
  c->pfd = c->fd = -1;
  while ((e = readdir (d))) {
    if (!is_ready_name (e->d_name))
      continue;
    got = claim_one (pfd, e->d_name, c, &res->made, r->need_identity, r->owner);
    if (got == 0)
      continue;
    if (got == -1) {
      ovl_error ("overlay '%s': taking from the pool: %m", r->overlay);
      return -1;
    }
    c->pfd = OVL_STEAL_FD (pfd);
    /* The rest of this directory read tells how many stay ready. */
    for (res->left = 0; (e = readdir (d)); )
      res->left += is_ready_name (e->d_name);
    *h = OVL_STEAL (c);
    return 1;
  }
  return 0;
}

static int
pool_publish (void *opaque, void *h, int dirfd, const char *name, const char *overlay)
{
  struct claim *c = h;
  int same;

  if (ovl_publish_noreplace (c->pfd, c->name, dirfd, name) == -1) {
    if (errno == EEXIST)
      ovl_error ("overlay '%s' appeared while it was being made; left alone", overlay);
    else
      ovl_error ("overlay '%s': taking from the pool: %m", overlay);
    return -1;
  }
  /* Only we write in a pool; still, publish nothing but the file claimed. */
  if ((same = ovl_fd_is_at (c->fd, dirfd, name)) != 1) {
    int e = errno;
    ovl_publish_noreplace (dirfd, name, c->pfd, c->name);
    errno = e;
    if (same == 0)
      ovl_error ("overlay '%s': the pooled file was replaced while it was handed out", overlay);
    else
      ovl_error ("overlay '%s': taking from the pool: %m", overlay);
    return -1;
  }
  c->name[0] = '\0';
  return 0;
}

static const struct ovl_supplier supplier = {
  .claim = pool_claim,
  .publish = pool_publish,
  .unclaim = pool_unclaim,
};

const struct ovl_supplier *
ovl_pool_supplier (const struct ovl_config *cfg)
{
  return cfg->pool_size > 0 ? &supplier : NULL;
}

/* mkdir NAME in DIRFD (0700) unless it is there; then open it. */
static int
ensure_private_dir (int dirfd, const char *name)
{
  int fd;
  if (mkdirat (dirfd, name, 0700) == -1 && errno != EEXIST) {
    ovl_error ("pool: mkdir %s: %m", name);
    return -1;
  }
  fd = open_private_dir (dirfd, name);
  if (fd == -1)
    ovl_error ("pool: %s: %s", name, private_dir_error ());
  return fd;
}

static int
write_key (int pfd, const char *key)
{
  CLEANUP_CLOSE int fd = -1;
  size_t len = strlen (key);

  if (key_matches (pfd, key))
    return 0;
  fd = openat (pfd, "key.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1 || write (fd, key, len) != (ssize_t) len || fsync (fd) == -1 ||
      renameat (pfd, "key.tmp", pfd, "key") == -1) {
    ovl_error ("pool: writing its key: %m");
    return -1;
  }
  return 0;
}

/* Remove the files a pool directory may hold, then the directory, with
 * its lock held: a refiller holding it would otherwise keep filling
 * while the next one made a new lock file and filled too.  The lock
 * file goes last; a refiller that makes a new one meanwhile keeps the
 * directory.  0, 1 if a refiller holds the lock (nothing removed), or
 * -1 with the error set.  *READY, if not NULL, gets how many ready
 * overlays were removed. */
static int
remove_pool_dir (int top, const char *hash, long *ready)
{
  CLEANUP_CLOSE int pfd = open_private_dir (top, hash);
  CLEANUP_CLOSE int lock = -1;
  CLEANUP_CLOSEDIR DIR *d = NULL;
  struct dirent *e;
  bool failed = false;
  long n = 0;

  if (pfd == -1) {
    ovl_error ("%s", private_dir_error ());
    return -1;
  }
  if ((lock = take_lock (pfd, -1)) == -2)
    return 1;
  if (lock == -1)
    return -1;
  if (!(d = ovl_opendir_at (pfd))) {
    ovl_error ("%m");
    return -1;
  }
  while ((e = ovl_readdir (d, &failed))) {
    bool ready_name = is_ready_name (e->d_name);
    if (!ready_name && strcmp (e->d_name, "key") != 0 && strcmp (e->d_name, "key.tmp") != 0)
      continue;
    if (unlinkat (pfd, e->d_name, 0) == 0)
      n += ready_name;
    else if (errno != ENOENT) {
      ovl_error ("%s: %m", e->d_name);
      return -1;
    }
  }
  if (failed) {
    ovl_error ("reading it: %m");
    return -1;
  }
  if (ready)
    *ready = n;
  if (unlinkat (pfd, "lock", 0) == -1 && errno != ENOENT) {
    ovl_error ("lock: %m");
    return -1;
  }
  /* Temporary files of a create at work keep it: it goes next time. */
  if (unlinkat (top, hash, AT_REMOVEDIR) == -1 && errno != ENOENT && errno != ENOTEMPTY) {
    ovl_error ("%m");
    return -1;
  }
  return 0;
}

/* The line of KEY that starts with PREFIX, newline included, or NULL. */
static const char *
key_line (const char *key, const char *prefix, size_t *len)
{
  const char *p = strstr (key, prefix), *nl;
  if (!p)
    return NULL;
  nl = strchr (p + 1, '\n');
  *len = nl ? (size_t) (nl - p) + 1 : strlen (p);
  return p;
}

/* A pool made for BASE's path when the file there was another one. */
static bool
pool_is_stale (int top, const char *hash, const char *key)
{
  CLEANUP_CLOSE int pfd = open_private_dir (top, hash);
  CLEANUP_CLOSE int fd = -1;
  char buf[KEY_MAX];
  const char *a, *b, *fa, *fb;
  size_t la = 0, lb = 0, lfa = 0, lfb = 0;
  ssize_t n;

  if (pfd == -1 || (fd = openat (pfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
    return false;
  n = read (fd, buf, sizeof buf - 1);
  if (n < 0)
    return false;
  buf[n] = '\0';
  a = key_line (key, "\nbase ", &la);
  b = key_line (buf, "\nbase ", &lb);
  fa = key_line (key, "\nbase-file ", &lfa);
  fb = key_line (buf, "\nbase-file ", &lfb);
  return a && b && fa && fb && la == lb && memcmp (a, b, la) == 0 &&
    (lfa != lfb || memcmp (fa, fb, lfa) != 0);
}

/* Drop the pools made for an earlier version of this key's base.  0, or
 * -1 with the error set. */
static int
discard_stale (int top, const char *hash, const char *key)
{
  CLEANUP_CLOSEDIR DIR *d = ovl_opendir_at (top);
  struct dirent *e;
  bool failed = false;

  if (!d) {
    ovl_error ("pool: %m");
    return -1;
  }
  while ((e = ovl_readdir (d, &failed)))
    if (e->d_name[0] != '.' && strcmp (e->d_name, hash) != 0 &&
        pool_is_stale (top, e->d_name, key) && remove_pool_dir (top, e->d_name, NULL) == -1) {
      ovl_error_prefix ("pool: removing the stale pool %s: ", e->d_name);
      return -1;
    }
  if (failed) {
    ovl_error ("pool: %m");
    return -1;
  }
  return 0;
}

/* How many overlays pool directory PFD holds ready, or -1 with errno
 * set. */
static long
count_ready (int pfd)
{
  CLEANUP_CLOSEDIR DIR *d = ovl_opendir_at (pfd);
  struct dirent *e;
  bool failed = false;
  long n = 0;

  if (!d)
    return -1;
  while ((e = ovl_readdir (d, &failed)))
    n += is_ready_name (e->d_name);
  return failed ? -1 : n;
}

/* The pool directory named HASH in overlay directory ODIR, made if need
 * be: *TOP (the pools of ODIR) and *PFD. */
static int
open_pool (int odir, const char *hash, int *top, int *pfd)
{
  if ((*top = ensure_private_dir (odir, OVL_POOL_DIR)) == -1 ||
      (*pfd = ensure_private_dir (*top, hash)) == -1)
    return -1;
  return 0;
}

long
ovl_pool_fill (const struct ovl_config *cfg, const struct ovl_request *tmpl,
               const char *dir, int lockfd, int64_t deadline)
{
  const struct ovl_create_opts opts = { .reserved_names = true };
  struct ovl_result checked = { 0 };
  char key[KEY_MAX], hash[17], rnd[17];
  CLEANUP_CLOSE int odir = -1, top = -1, pfd = -1, lock = -1;
  CLEANUP_FREE struct ovl_request *reqs = NULL;
  CLEANUP_FREE struct ovl_result *res = NULL;
  size_t need, i;
  long have;
  static unsigned long seq;
  long ret = -1;

  if (cfg->pool_size == 0)
    return 0;
  if (ovl_request_check_base (cfg, tmpl, &checked, false) == -1) {
    ovl_result_clear (&checked);
    return -1;
  }
  if (ovl_path_open_dir (dir, &cfg->overlay_dirs, "overlay", &odir) == -1 ||
      make_key (tmpl, &checked, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  if (open_pool (odir, hash, &top, &pfd) == -1)
    return -1;
  if ((lock = take_lock (pfd, lockfd)) < 0)
    return lock == -2 ? 0 : -1;   /* -2: another refiller is at it */
  if (write_key (pfd, key) == -1 || discard_stale (top, hash, key) == -1)
    return -1;

  if ((have = count_ready (pfd)) == -1) {
    ovl_error ("pool: %m");
    return -1;
  }
  if ((size_t) have >= cfg->pool_size)
    return 0;
  need = cfg->pool_size - (size_t) have;
  if (!(reqs = ovl_calloc (need, sizeof *reqs)) || !(res = ovl_calloc (need, sizeof *res)))
    return -1;
  /* Not our pid: another namespace or host may have used it here. */
  if (ovl_random_hex (rnd, 8) == -1)
    return -1;
  for (i = 0; i < need; i++) {
    char *path;
    reqs[i] = *tmpl;
    reqs[i].size = checked.size;
    if (asprintf (&path, "%s/" OVL_POOL_DIR "/%s/" READY_PREFIX "%s-%lu.qcow2",
                  dir, hash, rnd, ++seq) == -1) {
      ovl_error ("out of memory");
      goto out;
    }
    reqs[i].overlay = path;
  }
  if (ovl_overlay_create (cfg, reqs, res, need, deadline, &opts) == 0)
    ret = (long) need;
 out:
  for (i = 0; i < need; i++) {
    free ((char *) reqs[i].overlay);
    ovl_result_clear (&res[i]);
  }
  return ret;
}

/* Take the lock of the pool R came from (RES), for a refiller to come:
 * 1 with *LOCK (that pool's lock, held) and
 * *DIR (R's overlay directory, a new string); 0 when that pool needs no
 * refill or another refiller has it; -1 on error. */
static int
lock_for_refill (const struct ovl_config *cfg, const struct ovl_request *r,
                 const struct ovl_result *res, int *lock, char **dir)
{
  char key[KEY_MAX], hash[17];
  CLEANUP_CLOSE int odir = -1, top = -1, pfd = -1, l = -1;
  const char *oname;

  if (!ovl_pool_wants_refill (cfg, res))
    return 0;
  if (ovl_path_open_parent (r->overlay, &cfg->overlay_dirs, "overlay", true, &odir, &oname) == -1 ||
      make_key (r, res, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  if (open_pool (odir, hash, &top, &pfd) == -1 || (l = take_lock (pfd, -1)) == -1)
    return -1;
  if (l == -2)
    return 0;
  /* R's path is normalised, so its directory is the part before the
   * last slash ("/" if that is all). */
  if (!(*dir = strndup (r->overlay, oname - 1 == r->overlay ? 1 : (size_t) (oname - 1 - r->overlay)))) {
    ovl_error ("out of memory");
    return -1;
  }
  *lock = OVL_STEAL_FD (l);
  return 1;
}

/* The refiller's program: OVL_REFILL_ENV's, or the installed one. */
static const char *
refill_program (void)
{
  const char *p = getenv (OVL_REFILL_ENV);
  return p && *p ? p : LIBEXECDIR "/" OVL_REFILL_PROGRAM;
}

/* Start the refiller of R's pool in DIR, handing it LOCK as descriptor
 * 3, and never wait for it. */
static int
spawn_refiller (const struct ovl_request *r, const struct ovl_result *res,
                const char *dir, int lock)
{
  const char *prog = refill_program ();
  char cs[24], sz[24];
  char *argv[] = {
    (char *) prog, (char *) "--lock-fd", (char *) "3",
    (char *) "--backing-format", (char *) ovl_format_name (r->base_format),
    (char *) "--cluster-size", cs,
    (char *) "--lazy-refcounts", (char *) (r->lazy_refcounts ? "on" : "off"),
    (char *) "--extended-l2", (char *) (r->extended_l2 ? "on" : "off"),
    (char *) "--size", sz,
    (char *) "--", (char *) r->base, (char *) dir, NULL,
  };
  const struct ovl_child s = {
    .argv = argv, .fds = &lock, .nfds = 1, .new_session = true, .umask = -1,
  };
  pid_t pid;

  snprintf (cs, sizeof cs, "%llu", (unsigned long long) r->cluster_size);
  snprintf (sz, sizeof sz, "%llu", (unsigned long long) res->size);
  if (ovl_child_spawn (&s, &pid) == -1) {
    ovl_error_prefix ("pool: the refiller %s ", prog);
    return -1;
  }
  return 0;
}

int
ovl_pool_refill_detached (const struct ovl_config *cfg, const struct ovl_request *reqs,
                          const struct ovl_result *res, size_t n)
{
  size_t i;
  int ret = 0;

  for (i = 0; i < n && cfg->pool_size > 0; i++) {
    CLEANUP_FREE char *dir = NULL;
    CLEANUP_CLOSE int lock = -1;
    int r = lock_for_refill (cfg, &reqs[i], &res[i], &lock, &dir);
    /* Our copy of the lock goes; the refiller's keeps it. */
    if (r == -1 || (r == 1 && spawn_refiller (&reqs[i], &res[i], dir, lock) == -1))
      ret = -1;
  }
  return ret;
}

/* Call FN for every pool directory of overlay directory DIR (reached
 * as the engine reaches it: no symlink, no directory others can write);
 * a directory without pools has none.  0, or -1 at the first failure
 * (error set). */
static int
pools_of (const struct ovl_config *cfg, const char *dir,
          int (*fn) (int top, const char *dir, const char *hash, void *), void *opaque)
{
  CLEANUP_CLOSE int dfd = -1, top = -1;
  CLEANUP_CLOSEDIR DIR *d = NULL;
  struct dirent *e;
  bool failed = false;

  if (access (dir, F_OK) == -1 && errno == ENOENT)
    return 0;
  if (ovl_path_open_dir (dir, &cfg->overlay_dirs, "overlay", &dfd) == -1)
    return -1;
  if ((top = open_private_dir (dfd, OVL_POOL_DIR)) == -1 && errno == ENOENT)
    return 0;
  if (top == -1 || !(d = ovl_opendir_at (top))) {
    ovl_error ("%s/%s: %s", dir, OVL_POOL_DIR, private_dir_error ());
    return -1;
  }
  while ((e = ovl_readdir (d, &failed)))
    if (e->d_name[0] != '.' && fn (top, dir, e->d_name, opaque) == -1)
      return -1;
  if (failed) {
    ovl_error ("%s/%s: %m", dir, OVL_POOL_DIR);
    return -1;
  }
  return 0;
}

/* pools_of for every overlay directory.  0, or -1 at the first failure
 * (error set); with SAY, a directory that fails is reported as left
 * and the others go on. */
static int
each_pool (const struct ovl_config *cfg,
           int (*fn) (int top, const char *dir, const char *hash, void *), void *opaque,
           ovl_gc_say *say, void *say_opaque)
{
  size_t i;

  for (i = 0; i < cfg->overlay_dirs.n; i++)
    if (pools_of (cfg, cfg->overlay_dirs.dir[i], fn, opaque) == -1) {
      if (!say)
        return -1;
      say (say_opaque, OVL_GC_LEFT, "directory", cfg->overlay_dirs.dir[i], ovl_error_msg ());
    }
  return 0;
}

/* Pool directory HASH in TOP (of overlay directory DIR), checked. */
static int
open_listed_pool (int top, const char *dir, const char *hash)
{
  int pfd = open_private_dir (top, hash);

  if (pfd == -1)
    ovl_error ("%s/%s/%s: %s", dir, OVL_POOL_DIR, hash,
               private_dir_error ());
  return pfd;
}

static int
status_one (int top, const char *dir, const char *hash, void *opaque)
{
  struct ovl_buf *b = opaque;
  CLEANUP_CLOSE int pfd = open_listed_pool (top, dir, hash);
  CLEANUP_CLOSE int kfd = -1;
  char key[KEY_MAX];
  ssize_t n = 0;
  long ready;
  char *p;

  if (pfd == -1)
    return -1;
  /* A pool whose key is not written yet (a first fill at work) shows none. */
  if (((kfd = openat (pfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 && errno != ENOENT) ||
      (kfd >= 0 && (n = read (kfd, key, sizeof key - 1)) == -1)) {
    ovl_error ("%s/%s/%s/key: %m", dir, OVL_POOL_DIR, hash);
    return -1;
  }
  key[n > 0 ? n : 0] = '\0';
  for (p = key; (p = strchr (p, '\n')); )
    *p = p[1] ? ';' : '\0';
  if ((ready = count_ready (pfd)) == -1) {
    ovl_error ("%s/%s/%s: %m", dir, OVL_POOL_DIR, hash);
    return -1;
  }
  return ovl_buf_printf (b, "%s/%s/%s ready=%ld %s\n", dir, OVL_POOL_DIR, hash, ready, key);
}

char *
ovl_pool_status (const struct ovl_config *cfg)
{
  struct ovl_buf b = OVL_BUF_INIT;

  if (each_pool (cfg, status_one, &b, NULL, NULL) == -1 || ovl_buf_append (&b, "", 0) == -1) {
    ovl_buf_reset (&b);
    return NULL;
  }
  return ovl_buf_steal (&b);
}

struct flush_count {
  long ready, busy;
};

static int
flush_one (int top, const char *dir, const char *hash, void *opaque)
{
  struct flush_count *c = opaque;
  long ready = 0;
  int r = remove_pool_dir (top, hash, &ready);

  if (r == -1) {
    ovl_error_prefix ("%s/%s/%s: ", dir, OVL_POOL_DIR, hash);
    return -1;
  }
  c->ready += ready;
  c->busy += r;
  return 0;
}

long
ovl_pool_flush (const struct ovl_config *cfg, long *busy)
{
  struct flush_count c = { 0, 0 };

  if (each_pool (cfg, flush_one, &c, NULL, NULL) == -1)
    return -1;
  if (busy)
    *busy = c.busy;
  return c.ready;
}

/* ---- gc ---- */

/* The request a pool's KEY was made for (base and options; R->base
 * points into KEY, which is cut at its lines).  0, or -1 if KEY is not
 * one of ours. */
static int
parse_key (char *key, struct ovl_request *r)
{
  char *line, *save = NULL, *v;
  uint64_t n;
  int have = 0;

  memset (r, 0, sizeof *r);
  line = strtok_r (key, "\n", &save);
  if (!line || strcmp (line, "virt-overlay-pool 1") != 0)
    return -1;
  while ((line = strtok_r (NULL, "\n", &save))) {
    if (!(v = strchr (line, ' ')))
      return -1;
    *v++ = '\0';
    if (strcmp (line, "base") == 0)
      r->base = v, have |= 1;
    else if (strcmp (line, "backing-format") == 0) {
      if (ovl_format_parse (v, &r->base_format) == -1)
        return -1;
      have |= 2;
    }
    else if (strcmp (line, "base-file") == 0)
      continue;
    else {
      if (ovl_parse_u64 (v, &n) == -1)
        return -1;
      if (strcmp (line, "cluster-size") == 0)
        r->cluster_size = n, have |= 4;
      else if (strcmp (line, "lazy-refcounts") == 0)
        r->lazy_refcounts = n != 0, have |= 8;
      else if (strcmp (line, "extended-l2") == 0)
        r->extended_l2 = n != 0, have |= 16;
      else if (strcmp (line, "size") == 0)
        r->size = n, have |= 32;
      else
        return -1;
    }
  }
  return have == 63 ? 0 : -1;
}

/* Whether pool directory PFD is of no more use: 1 (with *WHY, a static
 * string or one in BUF), 0 it still serves its key, -1 it cannot be
 * told now (*WHY says why). */
static int
pool_is_useless (const struct ovl_config *cfg, int pfd, char *buf, size_t len,
                 const char **why)
{
  CLEANUP_CLOSE int kfd = openat (pfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char key[KEY_MAX], copy[KEY_MAX], now[KEY_MAX];
  struct ovl_request r;
  struct ovl_result res = { 0 };
  struct stat st;
  ssize_t n;

  *why = buf;
  if (kfd == -1 && errno == ENOENT) {
    *why = "it has no key: a first fill that did not finish";
    return 1;
  }
  if (kfd == -1 || (n = read (kfd, key, sizeof key - 1)) == -1) {
    snprintf (buf, len, "its key cannot be read: %s", strerror (errno));
    return -1;
  }
  key[n] = '\0';
  memcpy (copy, key, (size_t) n + 1);
  if (parse_key (copy, &r) == -1) {
    *why = "its key is not one virt-overlay writes";
    return -1;
  }
  if (ovl_request_check_base (cfg, &r, &res, false) == -1) {
    /* Gone is gone; anything else may pass. */
    if (lstat (r.base, &st) == -1 && errno == ENOENT)
      *why = "its base is gone";
    else
      snprintf (buf, len, "its base cannot be checked: %s", res.error ? res.error : "?");
    ovl_result_clear (&res);
    return *why == buf ? -1 : 1;
  }
  n = make_key (&r, &res, now, sizeof now);
  ovl_result_clear (&res);
  if (n == -1) {
    snprintf (buf, len, "%s", ovl_error_msg ());
    return -1;
  }
  if (strcmp (now, key) != 0) {
    *why = "its base changed";
    return 1;
  }
  return 0;
}

/* Whether a refiller holds pool PFD's lock, without making the file. */
static bool
pool_busy (int pfd)
{
  CLEANUP_CLOSE int fd = openat (pfd, "lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  return fd >= 0 && flock (fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK;
}

struct pool_gc {
  const struct ovl_config *cfg;
  bool dry_run;
  ovl_gc_say *say;
  void *opaque;
};

/* The temporary files in directory FD (named PATH) that no live caller
 * holds. */
void
ovl_gc_temps (int fd, const char *path, bool dry_run, ovl_gc_say *say, void *opaque)
{
  CLEANUP_CLOSEDIR DIR *d = ovl_opendir_at (fd);
  struct dirent *e;
  bool failed = false;

  if (!d) {
    say (opaque, OVL_GC_LEFT, "directory", path, strerror (errno));
    return;
  }
  while ((e = ovl_readdir (d, &failed))) {
    CLEANUP_FREE char *p = NULL;
    size_t l = strlen (e->d_name);
    int r;

    if (strncmp (e->d_name, OVL_TMP_PREFIX, strlen (OVL_TMP_PREFIX)) != 0 ||
        l < 4 || strcmp (e->d_name + l - 4, ".tmp") != 0)
      continue;
    if (asprintf (&p, "%s/%s", path, e->d_name) == -1)
      p = NULL;
    r = dry_run ? ovl_is_unlocked (fd, e->d_name) : ovl_unlink_if_unlocked (fd, e->d_name);
    if (r == 1)
      say (opaque, dry_run ? OVL_GC_WOULD_REMOVE : OVL_GC_REMOVED, "temporary file",
           p ? p : e->d_name, "no live caller holds it");
    else if (r == -1)
      say (opaque, OVL_GC_LEFT, "temporary file", p ? p : e->d_name, strerror (errno));
  }
  if (failed)
    say (opaque, OVL_GC_LEFT, "directory", path, strerror (errno));
}

static int
gc_one (int top, const char *dir, const char *hash, void *opaque)
{
  struct pool_gc *g = opaque;
  CLEANUP_CLOSE int pfd = open_private_dir (top, hash);
  CLEANUP_FREE char *path = NULL;
  char buf[700], what[600];
  const char *why;
  long ready = 0;
  int r;

  if (asprintf (&path, "%s/%s/%s", dir, OVL_POOL_DIR, hash) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  if (pfd == -1) {
    g->say (g->opaque, OVL_GC_LEFT, "pool", path, private_dir_error ());
    return 0;
  }
  ovl_gc_temps (pfd, path, g->dry_run, g->say, g->opaque);
  if (pool_busy (pfd))
    return 0;                   /* a refill is at work: it knows best */
  switch (pool_is_useless (g->cfg, pfd, buf, sizeof buf, &why)) {
  case 0:
    return 0;
  case -1:
    g->say (g->opaque, OVL_GC_LEFT, "pool", path, why);
    return 0;
  }
  if (g->dry_run) {
    g->say (g->opaque, OVL_GC_WOULD_REMOVE, "pool", path, why);
    return 0;
  }
  /* The reason is kept: removing it may set the error. */
  snprintf (what, sizeof what, "%s", why);
  r = remove_pool_dir (top, hash, &ready);
  if (r == 0) {
    snprintf (buf, sizeof buf, "%s (%ld ready overlays)", what, ready);
    g->say (g->opaque, OVL_GC_REMOVED, "pool", path, buf);
  }
  else
    g->say (g->opaque, OVL_GC_LEFT, "pool", path,
            r == 1 ? "a refill took it meanwhile" : ovl_error_msg ());
  return 0;
}

int
ovl_pool_gc (const struct ovl_config *cfg, bool dry_run, ovl_gc_say *say, void *opaque)
{
  struct pool_gc g = { cfg, dry_run, say, opaque };

  return each_pool (cfg, gc_one, &g, say, opaque);
}
