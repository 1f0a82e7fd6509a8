/* The warm pool; see pool.h. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "paths.h"
#include "pool.h"
#include "util.h"

extern char **environ;

#define KEY_MAX 8192
#define OVL_REFILL_DELAY_MS 100
#define READY_PREFIX "ready-"

static void
closedir_cleanup (DIR **d)
{
  if (*d)
    closedir (*d);
}
#define CLEANUP_CLOSEDIR __attribute__((cleanup (closedir_cleanup)))

/* The exact key of what R asks for. */
static int
make_key (const struct ovl_request *r, char *key, size_t len)
{
  const struct ovl_image *b = &r->base_info;
  int n = snprintf (key, len,
                    "virt-overlay-pool 1\nbase %s\nbase-file %llu %llu %llu %lld.%09ld\n"
                    "backing-format %s\ncluster-size %llu\nlazy-refcounts %d\n"
                    "extended-l2 %d\nsize %llu\n",
                    r->base, (unsigned long long) b->dev, (unsigned long long) b->ino,
                    (unsigned long long) b->file_size, (long long) b->mtime.tv_sec,
                    b->mtime.tv_nsec, ovl_format_name (r->base_format),
                    (unsigned long long) r->cluster_size, r->lazy_refcounts,
                    r->extended_l2, (unsigned long long) r->size);
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
  if (fstat (fd, &st) == -1 || st.st_uid != geteuid () || (st.st_mode & 077)) {
    close (fd);
    errno = EPERM;
    return -1;
  }
  return fd;
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

/* Pool locks a refiller inherited from the hook that started it, as
 * descriptors 3, 4, ...: it already holds them. */
static int inherited_locks[256];
static size_t ninherited;

static bool
lock_is_inherited (int fd)
{
  struct stat a, b;
  size_t i;

  if (fstat (fd, &a) == -1)
    return false;
  for (i = 0; i < ninherited; i++)
    if (fstat (inherited_locks[i], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      return true;
  return false;
}

/* Open POOL's lock (in pool directory PFD) and take it without waiting:
 * the descriptor, -2 if another refiller holds it, -1 on error. */
static int
take_lock (int pfd)
{
  int lock = openat (pfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (lock == -1) {
    ovl_error ("pool: lock: %m");
    return -1;
  }
  if (lock_is_inherited (lock) || flock (lock, LOCK_EX | LOCK_NB) == 0)
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
ovl_pool_wants_refill (const struct ovl_config *cfg, const struct ovl_request *r)
{
  return cfg->pool_size > 0 && (!r->from_pool || r->pool_left <= cfg->pool_size / 2);
}

/* Claim ready file NAME of pool PFD into C: locked without waiting (a
 * file another taker, or its refiller, holds is skipped; read-write, for
 * an NFS client grants an exclusive lock only then), still that name's
 * file once locked, a regular file with one link.  A second name means a
 * take (or refill) that died between link and unlink: it may be a
 * domain's disk already, so its pool name is dropped.  1 claimed, 0 not
 * this one, -1 error. */
static int
claim_one (int pfd, const char *name, struct ovl_pool_claim *c, struct ovl_file_id *id,
           bool need_token)
{
  int r;
  CLEANUP_CLOSE int fd = openat (pfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  struct stat a, b;
  struct statx stx;
  bool is_reg;

  if (fd == -1)
    return errno == ENOENT || errno == ELOOP ? 0 : -1;
  if (flock (fd, LOCK_EX | LOCK_NB) == -1)
    return errno == EWOULDBLOCK ? 0 : -1;
  if (fstat (fd, &a) == -1 || fstatat (pfd, name, &b, AT_SYMLINK_NOFOLLOW) == -1 ||
      a.st_dev != b.st_dev || a.st_ino != b.st_ino || !S_ISREG (a.st_mode))
    return 0;                   /* taken since we opened it */
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
  if (ovl_file_id_at (fd, "", id, &is_reg) == -1)
    return -1;
  if (snprintf (c->name, sizeof c->name, "%s", name) >= (int) sizeof c->name)
    return 0;                   /* not a name of ours */
  c->fd = OVL_STEAL_FD (fd);
  return 1;
}

int
ovl_pool_claim (const struct ovl_request *r, int dirfd, struct ovl_pool_claim *c,
                struct ovl_file_id *id, size_t *left)
{
  char key[KEY_MAX], hash[17];
  CLEANUP_CLOSE int top = -1, pfd = -1;
  CLEANUP_CLOSEDIR DIR *d = NULL;
  struct dirent *e;
  int got;

  if (make_key (r, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  if ((top = open_private_dir (dirfd, OVL_POOL_DIR)) == -1 ||
      (pfd = open_private_dir (top, hash)) == -1 ||
      !key_matches (pfd, key))
    return 0;
  if (!(d = ovl_opendir_at (pfd)))
    return 0;
  while ((e = readdir (d))) {
    if (!is_ready_name (e->d_name) || strlen (e->d_name) >= sizeof c->name)
      continue;
    got = claim_one (pfd, e->d_name, c, id, r->need_identity);
    if (got == 0)
      continue;
    if (got == -1) {
      ovl_error ("overlay '%s': taking from the pool: %m", r->overlay);
      return -1;
    }
    c->pfd = OVL_STEAL_FD (pfd);
    /* The rest of this directory read tells how many stay ready. */
    for (*left = 0; (e = readdir (d)); )
      *left += is_ready_name (e->d_name);
    return 1;
  }
  return 0;
}

int
ovl_pool_publish (struct ovl_pool_claim *c, int dirfd, const char *name, const char *overlay)
{
  struct stat a, b;

  if (ovl_publish_noreplace (c->pfd, c->name, dirfd, name) == -1) {
    if (errno == EEXIST)
      ovl_error ("overlay '%s' appeared while it was being made; left alone", overlay);
    else
      ovl_error ("overlay '%s': taking from the pool: %m", overlay);
    return -1;
  }
  /* Only we write in a pool; still, publish nothing but the file claimed. */
  if (fstat (c->fd, &a) == -1 || fstatat (dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == -1 ||
      a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
    ovl_publish_noreplace (dirfd, name, c->pfd, c->name);
    ovl_error ("overlay '%s': the pooled file was replaced while it was handed out", overlay);
    return -1;
  }
  c->name[0] = '\0';
  return 0;
}

void
ovl_pool_unclaim (struct ovl_pool_claim *c)
{
  if (c->fd >= 0)
    close (c->fd);              /* unpublished, it is ready for the next taker */
  if (c->pfd >= 0)
    close (c->pfd);
  c->fd = c->pfd = -1;
  c->name[0] = '\0';
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
    ovl_error ("pool: %s: not a private directory of ours: %m", name);
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

/* Remove the files a pool directory may hold, then the directory. */
static void
remove_pool_dir (int top, const char *hash)
{
  int pfd = open_private_dir (top, hash);
  DIR *d;
  struct dirent *e;

  if (pfd == -1)
    return;
  if ((d = ovl_opendir_at (pfd))) {
    while ((e = readdir (d)))
      if (is_ready_name (e->d_name) || strcmp (e->d_name, "key") == 0 ||
          strcmp (e->d_name, "key.tmp") == 0 || strcmp (e->d_name, "lock") == 0)
        unlinkat (pfd, e->d_name, 0);
    closedir (d);
  }
  close (pfd);
  unlinkat (top, hash, AT_REMOVEDIR);
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

/* Drop the pools made for an earlier version of this key's base. */
static void
discard_stale (int top, const char *hash, const char *key)
{
  DIR *d = ovl_opendir_at (top);
  struct dirent *e;

  if (!d)
    return;
  while ((e = readdir (d)))
    if (e->d_name[0] != '.' && strcmp (e->d_name, hash) != 0 &&
        pool_is_stale (top, e->d_name, key))
      remove_pool_dir (top, e->d_name);
  closedir (d);
}

static size_t
count_ready (int pfd)
{
  DIR *d = ovl_opendir_at (pfd);
  struct dirent *e;
  size_t n = 0;

  if (!d)
    return 0;
  while ((e = readdir (d)))
    n += is_ready_name (e->d_name);
  closedir (d);
  return n;
}

/* Top up the pool of one (base-checked) request. */
static int
fill_one (const struct ovl_config *cfg, struct ovl_request *r, int64_t deadline)
{
  char key[KEY_MAX], hash[17];
  CLEANUP_CLOSE int odir = -1, top = -1, pfd = -1, lock = -1;
  CLEANUP_FREE char *dir = NULL;
  CLEANUP_FREE struct ovl_request *reqs = NULL;
  CLEANUP_FREE char *names = NULL;
  const char *oname;
  size_t have, need, i;
  static unsigned long seq;
  char rnd[17];
  int ret;

  if (ovl_path_open_parent (r->overlay, &cfg->overlay_dirs, "overlay", true, &odir, &oname) == -1 ||
      make_key (r, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  if ((top = ensure_private_dir (odir, OVL_POOL_DIR)) == -1 ||
      (pfd = ensure_private_dir (top, hash)) == -1)
    return -1;
  if ((lock = take_lock (pfd)) < 0)
    return lock == -2 ? 0 : -1;   /* -2: another refiller is at it */
  if (write_key (pfd, key) == -1)
    return -1;
  discard_stale (top, hash, key);

  have = count_ready (pfd);
  if (have >= cfg->pool_size)
    return 0;
  need = cfg->pool_size - have;
  dir = strndup (r->overlay, (size_t) (oname - r->overlay - 1));
  reqs = calloc (need, sizeof *reqs);
  names = calloc (need, 4096);
  if (!dir || !reqs || !names) {
    ovl_error ("out of memory");
    return -1;
  }
  /* Not our pid: another namespace or host may have used it here. */
  if (ovl_random_hex (rnd, 8) == -1)
    return -1;
  for (i = 0; i < need; i++) {
    char *p = names + i * 4096;
    snprintf (p, 4096, "%s/" OVL_POOL_DIR "/%s/" READY_PREFIX "%s-%lu.qcow2",
              dir, hash, rnd, ++seq);
    reqs[i] = *r;
    reqs[i].error = NULL;
    reqs[i].overlay = p;
    reqs[i].internal = true;
  }
  ret = ovl_overlay_create (cfg, reqs, need, deadline);
  for (i = 0; i < need; i++)
    ovl_request_clear (&reqs[i]);
  return ret;
}

int
ovl_pool_fill (const struct ovl_config *cfg, const struct ovl_request *reqs,
               size_t n, int64_t deadline)
{
  size_t i;
  int ret = 0;

  if (cfg->pool_size == 0)
    return 0;
  for (i = 0; i < n; i++) {
    struct ovl_request r = reqs[i];
    r.error = NULL;
    r.size = reqs[i].size;
    if (ovl_request_check_base (cfg, &r) == -1 || fill_one (cfg, &r, deadline) == -1)
      ret = -1;
    ovl_request_clear (&r);
  }
  return ret;
}

/* The refiller is this same program run again with OVL_POOL_FILL_ARG
 * and seven words per request: base, format, cluster size, lazy
 * refcounts, extended L2, size, overlay directory.  posix_spawn (vfork)
 * costs the caller far less than a fork of itself, and we never wait:
 * the refiller is in its own session with stdio on /dev/null and no other
 * descriptor, so libvirt, reading the hook's stdout and stderr to EOF,
 * does not wait for it either. */
/* Take the lock of R's pool for a refiller to come: the descriptor
 * (above the standard ones), or -1 when the pool needs none or another
 * refiller has it. */
static int
lock_for_refill (const struct ovl_config *cfg, const struct ovl_request *r)
{
  char key[KEY_MAX], hash[17];
  CLEANUP_CLOSE int odir = -1, top = -1, pfd = -1;
  const char *oname;
  int lock, high;

  if (!ovl_pool_wants_refill (cfg, r) ||
      ovl_path_open_parent (r->overlay, &cfg->overlay_dirs, "overlay", true, &odir, &oname) == -1 ||
      make_key (r, key, sizeof key) == -1)
    return -1;
  key_hash (key, hash);
  if ((top = ensure_private_dir (odir, OVL_POOL_DIR)) == -1 ||
      (pfd = ensure_private_dir (top, hash)) == -1 ||
      (lock = take_lock (pfd)) < 0)
    return -1;
  /* Out of the way of the descriptors the child is given. */
  high = fcntl (lock, F_DUPFD_CLOEXEC, 300);
  close (lock);
  return high;
}

/* The refiller is this same program run again with OVL_POOL_FILL_ARG
 * (found through /proc/self/exe) and seven words per pool: base, format, cluster size, lazy refcounts,
 * extended L2, size, overlay directory.  We take each pool's lock here
 * and hand it down (as descriptors 3, 4, ...), so that of many domains
 * starting at once only one starts a refiller per pool.  posix_spawn
 * (vfork) costs the caller far less than a fork of itself, and we never
 * wait: the refiller is in its own session with stdio on /dev/null and
 * no other descriptor, so libvirt, reading the hook's stdout and stderr
 * to EOF, does not wait for it either. */
void
ovl_pool_fill_detached (const struct ovl_config *cfg, const struct ovl_request *reqs,
                        size_t n)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  char **argv = NULL, (*nums)[3][24] = NULL, **dirs = NULL;
  int *locks = NULL;
  size_t i, k = 0, nl = 0;
  char self[4096];
  ssize_t len;
  pid_t pid;

  if (cfg->pool_size == 0 || n == 0 || n > 250)
    return;
  argv = calloc (3 + 7 * n, sizeof *argv);
  nums = calloc (n, sizeof *nums);
  dirs = calloc (n, sizeof *dirs);
  locks = calloc (n, sizeof *locks);
  if (!argv || !nums || !dirs || !locks)
    goto out;
  /* Our own program by its path (not /proc/self/exe, which under a
   * tool like valgrind is the tool). */
  if ((len = readlink ("/proc/self/exe", self, sizeof self - 1)) <= 0)
    goto out;
  self[len] = '\0';
  argv[k++] = self;
  argv[k++] = (char *) OVL_POOL_FILL_ARG;
  for (i = 0; i < n; i++) {
    const char *slash = strrchr (reqs[i].overlay, '/');
    int lock = lock_for_refill (cfg, &reqs[i]);
    if (lock < 0)
      continue;
    locks[nl] = lock;
    dirs[nl] = strndup (reqs[i].overlay, slash && slash != reqs[i].overlay ?
                        (size_t) (slash - reqs[i].overlay) : 1);
    snprintf (nums[nl][0], 24, "%llu", (unsigned long long) reqs[i].cluster_size);
    snprintf (nums[nl][1], 24, "%llu", (unsigned long long) reqs[i].size);
    argv[k++] = (char *) reqs[i].base;
    argv[k++] = (char *) ovl_format_name (reqs[i].base_format);
    argv[k++] = nums[nl][0];
    argv[k++] = (char *) (reqs[i].lazy_refcounts ? "on" : "off");
    argv[k++] = (char *) (reqs[i].extended_l2 ? "on" : "off");
    argv[k++] = nums[nl][1];
    argv[k++] = dirs[nl];
    nl++;
    if (!dirs[nl - 1])
      goto out;
  }
  if (nl == 0)
    goto out;
  posix_spawn_file_actions_init (&fa);
  posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen (&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen (&fa, 2, "/dev/null", O_WRONLY, 0);
  for (i = 0; i < nl; i++)
    posix_spawn_file_actions_adddup2 (&fa, locks[i], 3 + (int) i);
  posix_spawn_file_actions_addclosefrom_np (&fa, 3 + (int) nl);
  posix_spawnattr_init (&attr);
  posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSID);
  posix_spawn (&pid, argv[0], &fa, &attr, argv, environ);
  posix_spawnattr_destroy (&attr);
  posix_spawn_file_actions_destroy (&fa);
 out:
  /* Our copies go; the refiller's keep the locks. */
  for (i = 0; i < nl; i++) {
    close (locks[i]);
    free (dirs[i]);
  }
  free (argv);
  free (nums);
  free (dirs);
  free (locks);
}

int
ovl_pool_fill_main (int argc, char **argv)
{
  CLEANUP_CONFIG struct ovl_config *cfg = ovl_config_load ();
  struct ovl_request *reqs;
  char **where;
  int i, n, ret = 0;

  if (!cfg || argc < 2 || (argc - 2) % 7 != 0)
    return 1;
  n = (argc - 2) / 7;
  /* Background work: only what the machine has spare, and not in the
   * middle of a burst of starts (domains tend to start together, at boot
   * or autostart): let the burst pass, then make the batch. */
  {
    struct sched_param sp = { 0 };
    struct timespec ts = { 0, OVL_REFILL_DELAY_MS * 1000000L };
    sched_setscheduler (0, SCHED_IDLE, &sp);
    nanosleep (&ts, NULL);
  }
  for (ninherited = 0; ninherited < (size_t) n && ninherited < 256; ninherited++) {
    if (fcntl (3 + (int) ninherited, F_GETFD) == -1)
      break;
    inherited_locks[ninherited] = 3 + (int) ninherited;
  }
  reqs = calloc ((size_t) n, sizeof *reqs);
  where = calloc ((size_t) n, sizeof *where);
  if (!reqs || !where)
    return 1;
  for (i = 0; i < n && ret == 0; i++) {
    char **a = argv + 2 + 7 * i;
    ovl_request_defaults (&reqs[i], cfg);
    reqs[i].base = a[0];
    if (ovl_format_parse (a[1], &reqs[i].base_format) == -1 ||
        ovl_parse_u64 (a[2], &reqs[i].cluster_size) == -1 ||
        ovl_parse_bool (a[3], &reqs[i].lazy_refcounts) == -1 ||
        ovl_parse_bool (a[4], &reqs[i].extended_l2) == -1 ||
        ovl_parse_u64 (a[5], &reqs[i].size) == -1 ||
        asprintf (&where[i], "%s/-", a[6]) == -1)
      ret = 1;
    reqs[i].overlay = where[i];
  }
  if (ret == 0 && ovl_pool_fill (cfg, reqs, (size_t) n,
                                 ovl_now_ms () + cfg->timeout_ms) == -1)
    ret = 1;
  for (i = 0; i < n; i++)
    free (where[i]);
  free (where);
  free (reqs);
  return ret;
}

/* Call FN for every pool directory of every overlay directory. */
static int
each_pool (const struct ovl_config *cfg,
           void (*fn) (int top, const char *dir, const char *hash, void *), void *opaque)
{
  size_t i;

  for (i = 0; i < cfg->overlay_dirs.n; i++) {
    CLEANUP_CLOSE int dfd = open (cfg->overlay_dirs.dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CLEANUP_CLOSE int top = -1;
    DIR *d;
    struct dirent *e;

    if (dfd == -1 || (top = open_private_dir (dfd, OVL_POOL_DIR)) == -1 ||
        !(d = ovl_opendir_at (top)))
      continue;
    while ((e = readdir (d)))
      if (e->d_name[0] != '.')
        fn (top, cfg->overlay_dirs.dir[i], e->d_name, opaque);
    closedir (d);
  }
  return 0;
}

static void
status_one (int top, const char *dir, const char *hash, void *opaque)
{
  struct ovl_buf *b = opaque;
  CLEANUP_CLOSE int pfd = open_private_dir (top, hash);
  CLEANUP_CLOSE int kfd = -1;
  char key[KEY_MAX];
  ssize_t n = 0;
  char *p;

  if (pfd == -1)
    return;
  if ((kfd = openat (pfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0)
    n = read (kfd, key, sizeof key - 1);
  key[n > 0 ? n : 0] = '\0';
  for (p = key; (p = strchr (p, '\n')); )
    *p = p[1] ? ';' : '\0';
  ovl_buf_printf (b, "%s/%s/%s ready=%zu %s\n", dir, OVL_POOL_DIR, hash,
                  count_ready (pfd), key);
}

char *
ovl_pool_status (const struct ovl_config *cfg)
{
  struct ovl_buf b = OVL_BUF_INIT;
  each_pool (cfg, status_one, &b);
  return ovl_buf_steal (&b);
}

static void
flush_one (int top, const char *dir, const char *hash, void *opaque)
{
  long *count = opaque;
  CLEANUP_CLOSE int pfd = open_private_dir (top, hash);
  if (pfd == -1)
    return;
  *count += (long) count_ready (pfd);
  remove_pool_dir (top, hash);
}

long
ovl_pool_flush (const struct ovl_config *cfg)
{
  long count = 0;
  each_pool (cfg, flush_one, &count);
  return count;
}
