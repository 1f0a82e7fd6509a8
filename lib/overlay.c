/* The overlay engine; see overlay.h. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "overlay.h"
#include "paths.h"
#include "qmp.h"
#include "qsd.h"
#include "util.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* Per-request working state, private to one batch. */
struct work {
  struct ovl_request *r;
  int dirfd;
  const char *name;             /* last component of r->overlay */
  int tmpfd;
  char tmpname[64];
  char *tmppath;
  char id[48];                  /* node name and job id */
  unsigned long seq;
  uint64_t add_id, create_id;
  bool node_added, job_created, renamed;
};

static unsigned long batch_seq;

void
ovl_request_defaults (struct ovl_request *r, const struct ovl_config *cfg)
{
  r->cluster_size = cfg->cluster_size;
  r->lazy_refcounts = cfg->lazy_refcounts;
  r->extended_l2 = cfg->extended_l2;
  r->base_format = OVL_FMT_QCOW2;
}

void
ovl_request_clear (struct ovl_request *r)
{
  free (r->error);
  r->error = NULL;
}

/* Record the current error against R (keeps the first one). */
static void
req_fail (struct ovl_request *r)
{
  if (!r->error)
    r->error = strdup (ovl_error_msg ());
}

/* Format into a buffer of our own: the arguments may include the
 * current error message itself. */
static void __attribute__((format (printf, 2, 3)))
req_failf (struct ovl_request *r, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  ovl_error ("%s", msg);
  req_fail (r);
}

/* Checks that need no daemon.  Opens the overlay's directory into *DIRFD. */
static int
check_request (const struct ovl_config *cfg, struct ovl_request *r,
               int *dirfd, const char **name)
{
  CLEANUP_CLOSE int bdir = -1, odir = -1;
  const char *bname, *oname;
  struct stat st;
  uint64_t size;

  if (strcmp (r->base, r->overlay) == 0) {
    req_failf (r, "overlay '%s' is the same file as its base", r->overlay);
    return -1;
  }
  if (ovl_check_cluster_size (r->cluster_size) == -1) {
    req_fail (r);
    return -1;
  }
  if (r->extended_l2 && r->cluster_size < 16384) {
    req_failf (r, "extended L2 needs a cluster size of at least 16384, not %llu",
               (unsigned long long) r->cluster_size);
    return -1;
  }
  if (ovl_path_open_parent (r->base, &cfg->base_dirs, "base", false, &bdir, &bname) == -1 ||
      ovl_image_probe (bdir, bname, r->base, r->base_format, &r->base_info) == -1) {
    req_fail (r);
    return -1;
  }
  if (ovl_path_open_parent (r->overlay, &cfg->overlay_dirs, "overlay", true, &odir, &oname) == -1) {
    req_fail (r);
    return -1;
  }
  if (fstatat (odir, oname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (st.st_dev == r->base_info.dev && st.st_ino == r->base_info.ino)
      req_failf (r, "overlay '%s' is the same file as its base", r->overlay);
    else if (S_ISLNK (st.st_mode))
      req_failf (r, "overlay '%s' already exists (a symbolic link)", r->overlay);
    else
      req_failf (r, "overlay '%s' already exists", r->overlay);
    return -1;
  }
  if (errno != ENOENT) {
    req_failf (r, "overlay '%s': %m", r->overlay);
    return -1;
  }
  size = r->size ? r->size : r->base_info.size;
  if (size < r->base_info.size) {
    req_failf (r, "size %llu is smaller than the base's %llu bytes",
               (unsigned long long) size, (unsigned long long) r->base_info.size);
    return -1;
  }
  if (size % 512) {
    req_failf (r, "size %llu is not a multiple of 512", (unsigned long long) size);
    return -1;
  }
  r->size = size;
  *name = oname;
  *dirfd = OVL_STEAL_FD (odir);
  return 0;
}

int
ovl_overlay_check (const struct ovl_config *cfg, struct ovl_request *r)
{
  CLEANUP_CLOSE int dirfd = -1;
  const char *name;
  return check_request (cfg, r, &dirfd, &name);
}

static bool
pid_is_dead (long pid)
{
  return pid > 0 && kill ((pid_t) pid, 0) == -1 && errno == ESRCH;
}

/* "PREFIX<pid>-..." -> pid, or -1. */
static long
owner_pid (const char *name, const char *prefix)
{
  size_t n = strlen (prefix);
  char *end;
  long pid;

  if (strncmp (name, prefix, n) != 0)
    return -1;
  pid = strtol (name + n, &end, 10);
  return end != name + n && *end == '-' ? pid : -1;
}

/* Remove temporary files that dead callers left in DIRFD. */
static void
remove_stale_temps (int dirfd)
{
  int fd = openat (dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d;
  struct dirent *e;

  if (fd == -1 || !(d = fdopendir (fd))) {
    if (fd >= 0)
      close (fd);
    return;
  }
  while ((e = readdir (d))) {
    struct stat st;
    if (pid_is_dead (owner_pid (e->d_name, OVL_TMP_PREFIX)) &&
        fstatat (dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st.st_mode))
      unlinkat (dirfd, e->d_name, 0);
  }
  closedir (d);
}

static int
create_temp (struct work *w)
{
  struct ovl_request *r = w->r;
  const char *slash = strrchr (r->overlay, '/');

  snprintf (w->tmpname, sizeof w->tmpname, OVL_TMP_PREFIX "%ld-%lu.tmp",
            (long) getpid (), w->seq);
  if (asprintf (&w->tmppath, "%.*s/%s", (int) (slash - r->overlay), r->overlay, w->tmpname) == -1) {
    w->tmppath = NULL;
    req_failf (r, "out of memory");
    return -1;
  }
  w->tmpfd = openat (w->dirfd, w->tmpname,
                     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (w->tmpfd == -1) {
    req_failf (r, "overlay '%s': cannot create a temporary file: %m", r->overlay);
    return -1;
  }
  return 0;
}

static char *
add_args (const struct work *w)
{
  struct ovl_buf b = OVL_BUF_INIT;

  if (ovl_buf_printf (&b, "{\"driver\":\"file\",\"node-name\":\"%s\",\"filename\":", w->id) == -1 ||
      ovl_json_append_string (&b, w->tmppath) == -1 ||
      ovl_buf_printf (&b, ",\"cache\":{\"no-flush\":true}}") == -1) {
    ovl_buf_reset (&b);
    return NULL;
  }
  return ovl_buf_steal (&b);
}

static char *
create_args (const struct work *w)
{
  const struct ovl_request *r = w->r;
  struct ovl_buf b = OVL_BUF_INIT;

  if (ovl_buf_printf (&b, "{\"job-id\":\"%s\",\"options\":{\"driver\":\"qcow2\","
                      "\"file\":\"%s\",\"size\":%llu,\"backing-file\":",
                      w->id, w->id, (unsigned long long) r->size) == -1 ||
      ovl_json_append_string (&b, r->base) == -1 ||
      ovl_buf_printf (&b, ",\"backing-fmt\":\"%s\",\"cluster-size\":%llu,"
                      "\"lazy-refcounts\":%s,\"extended-l2\":%s}}",
                      ovl_format_name (r->base_format),
                      (unsigned long long) r->cluster_size,
                      r->lazy_refcounts ? "true" : "false",
                      r->extended_l2 ? "true" : "false") == -1) {
    ovl_buf_reset (&b);
    return NULL;
  }
  return ovl_buf_steal (&b);
}

/* Queue "EXECUTE {KEY: NAME}". */
static uint64_t
send_named (struct ovl_qmp *q, const char *execute, const char *key, const char *name)
{
  struct ovl_buf b = OVL_BUF_INIT;
  uint64_t id = 0;

  if (ovl_buf_printf (&b, "{\"%s\":", key) == 0 &&
      ovl_json_append_string (&b, name) == 0 &&
      ovl_buf_append (&b, "}", 1) == 0)
    id = ovl_qmp_send (q, execute, b.data);
  ovl_buf_reset (&b);
  return id;
}

/* Ask for the leftovers of dead callers to be removed too; their replies
 * are not checked (another caller may race us to it). */
static size_t
queue_leftovers (struct ovl_qmp *q, const struct ovl_json *jobs,
                 const struct ovl_json *nodes, uint64_t *ids, size_t max)
{
  size_t i, n = 0;

  for (i = 0; i < ovl_json_array_len (jobs) && n < max; i++) {
    const char *id = ovl_json_get_string (ovl_json_array_at (jobs, i), "id");
    const char *status = ovl_json_get_string (ovl_json_array_at (jobs, i), "status");
    if (id && status && strcmp (status, "concluded") == 0 &&
        pid_is_dead (owner_pid (id, OVL_NAME_PREFIX)))
      ids[n++] = send_named (q, "job-dismiss", "id", id);
  }
  for (i = 0; i < ovl_json_array_len (nodes) && n < max; i++) {
    const char *node = ovl_json_get_string (ovl_json_array_at (nodes, i), "node-name");
    if (node && pid_is_dead (owner_pid (node, OVL_NAME_PREFIX)))
      ids[n++] = send_named (q, "blockdev-del", "node-name", node);
  }
  return n;
}

/* The QMP exchange for the whole batch.  Per-request failures go to the
 * request; a failure of the connection is returned as -1. */
static int
run_batch (struct ovl_qmp *q, struct work *w, size_t n, int64_t deadline)
{
  CLEANUP_JSON struct ovl_json *jobs = NULL;
  CLEANUP_JSON struct ovl_json *nodes = NULL;
  CLEANUP_FREE uint64_t *cleanup_ids = NULL;
  uint64_t jobs_id, nodes_id;
  size_t i, ncleanup = 0, max_cleanup;
  int failed = 0;

  /* 1. Every blockdev-add and blockdev-create at once. */
  for (i = 0; i < n; i++) {
    CLEANUP_FREE char *a = add_args (&w[i]);
    CLEANUP_FREE char *c = create_args (&w[i]);
    if (!a || !c)
      return -1;
    if (!(w[i].add_id = ovl_qmp_send (q, "blockdev-add", a)) ||
        !(w[i].create_id = ovl_qmp_send (q, "blockdev-create", c)))
      return -1;
  }
  if (ovl_qmp_flush (q, deadline) == -1)
    return -1;

  /* 2. Their replies, then each created job's conclusion. */
  for (i = 0; i < n; i++) {
    struct ovl_json *r = ovl_qmp_wait (q, w[i].add_id, deadline);
    if (r) {
      w[i].node_added = true;
      ovl_json_free (r);
    }
    else {
      /* qsd refused it, or the connection died (then every later wait
       * fails too and the batch ends below). */
      req_failf (w[i].r, "overlay '%s': %s", w[i].r->overlay, ovl_error_msg ());
      failed = 1;
    }
    r = ovl_qmp_wait (q, w[i].create_id, deadline);
    if (r) {
      w[i].job_created = true;
      ovl_json_free (r);
    }
    else if (w[i].node_added) {
      req_failf (w[i].r, "overlay '%s': %s", w[i].r->overlay, ovl_error_msg ());
      failed = 1;
    }
  }
  for (i = 0; i < n; i++) {
    struct ovl_json *ev;
    if (!w[i].job_created)
      continue;
    ev = ovl_qmp_wait_event (q, deadline, "JOB_STATUS_CHANGE",
                             "id", w[i].id, "status", "concluded", NULL);
    if (!ev)
      return -1;
    ovl_json_free (ev);
  }

  /* 3. The verdicts, and the daemon's nodes to spot leftovers. */
  if (!(jobs_id = ovl_qmp_send (q, "query-jobs", NULL)) ||
      !(nodes_id = ovl_qmp_send (q, "query-named-block-nodes", "{\"flat\":true}")))
    return -1;
  if (!(jobs = ovl_qmp_wait (q, jobs_id, deadline)) ||
      !(nodes = ovl_qmp_wait (q, nodes_id, deadline)))
    return -1;
  for (i = 0; i < n; i++) {
    size_t j;
    if (!w[i].job_created)
      continue;
    for (j = 0; j < ovl_json_array_len (jobs); j++) {
      const struct ovl_json *job = ovl_json_array_at (jobs, j);
      const char *id = ovl_json_get_string (job, "id");
      const char *err = ovl_json_get_string (job, "error");
      if (id && strcmp (id, w[i].id) == 0) {
        if (err) {
          req_failf (w[i].r, "overlay '%s': qemu-storage-daemon: %s", w[i].r->overlay, err);
          failed = 1;
        }
        break;
      }
    }
    if (j == ovl_json_array_len (jobs)) {
      req_failf (w[i].r, "overlay '%s': job %s vanished from qemu-storage-daemon",
                 w[i].r->overlay, w[i].id);
      failed = 1;
    }
  }

  /* 4. Dismiss every job and delete every node we added, at once. */
  max_cleanup = 2 * n + ovl_json_array_len (jobs) + ovl_json_array_len (nodes);
  if (!(cleanup_ids = ovl_calloc (max_cleanup + 1, sizeof *cleanup_ids)))
    return -1;
  for (i = 0; i < n; i++) {
    if (w[i].job_created &&
        !(cleanup_ids[ncleanup++] = send_named (q, "job-dismiss", "id", w[i].id)))
      return -1;
    if (w[i].node_added &&
        !(cleanup_ids[ncleanup++] = send_named (q, "blockdev-del", "node-name", w[i].id)))
      return -1;
  }
  {
    size_t ours = ncleanup;
    ncleanup += queue_leftovers (q, jobs, nodes, cleanup_ids + ncleanup, max_cleanup - ncleanup);
    for (i = 0; i < ncleanup; i++) {
      struct ovl_json *r;
      if (!cleanup_ids[i])
        return -1;
      r = ovl_qmp_wait (q, cleanup_ids[i], deadline);
      if (r)
        ovl_json_free (r);
      else if (i < ours) {
        /* A node or job of ours stays behind: not all-or-nothing. */
        ovl_error_prefix ("cleaning up in qemu-storage-daemon: ");
        return -1;
      }
    }
  }
  return failed ? 1 : 0;
}

/* Make the temporary files durable and move them into place. */
static int
commit_batch (struct work *w, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (fdatasync (w[i].tmpfd) == -1) {
      req_failf (w[i].r, "overlay '%s': fdatasync: %m", w[i].r->overlay);
      return -1;
    }
  for (i = 0; i < n; i++) {
    struct stat st;
    if (fstat (w[i].tmpfd, &st) == -1) {
      req_failf (w[i].r, "overlay '%s': fstat: %m", w[i].r->overlay);
      return -1;
    }
    if (renameat2 (w[i].dirfd, w[i].tmpname, w[i].dirfd, w[i].name, RENAME_NOREPLACE) == -1) {
      if (errno == EEXIST)
        req_failf (w[i].r, "overlay '%s' appeared while it was being made; left alone",
                   w[i].r->overlay);
      else
        req_failf (w[i].r, "overlay '%s': rename: %m", w[i].r->overlay);
      return -1;
    }
    w[i].renamed = true;
    w[i].r->dev = st.st_dev;
    w[i].r->ino = st.st_ino;
  }
  for (i = 0; i < n; i++)
    if (fsync (w[i].dirfd) == -1) {
      req_failf (w[i].r, "overlay '%s': fsync of its directory: %m", w[i].r->overlay);
      return -1;
    }
  return 0;
}

/* Undo: remove what this batch created, and only that. */
static void
rollback (struct work *w, size_t n)
{
  size_t i;
  struct stat st;

  for (i = 0; i < n; i++) {
    if (w[i].tmpfd < 0)
      continue;
    if (w[i].renamed) {
      /* Ours only if it is still the inode we made. */
      if (fstatat (w[i].dirfd, w[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          st.st_dev == w[i].r->dev && st.st_ino == w[i].r->ino)
        unlinkat (w[i].dirfd, w[i].name, 0);
    }
    else
      unlinkat (w[i].dirfd, w[i].tmpname, 0);
  }
}

static void
free_work (struct work *w, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) {
    if (w[i].dirfd >= 0)
      close (w[i].dirfd);
    if (w[i].tmpfd >= 0)
      close (w[i].tmpfd);
    free (w[i].tmppath);
  }
  free (w);
}

/* The first failed request's error becomes the batch's error. */
static int
batch_failed (struct ovl_request *reqs, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (reqs[i].error) {
      ovl_error ("%s", reqs[i].error);
      break;
    }
  return -1;
}

/* A failure of the whole batch (no daemon, dead connection, timeout):
 * every request not already failed carries it. */
static void
fail_all (struct ovl_request *reqs, size_t n)
{
  CLEANUP_FREE char *msg = strdup (ovl_error_msg ());
  size_t i;

  for (i = 0; i < n; i++)
    if (!reqs[i].error && msg &&
        asprintf (&reqs[i].error, "overlay '%s': %s", reqs[i].overlay, msg) == -1)
      reqs[i].error = NULL;
}

int
ovl_overlay_create (const struct ovl_config *cfg, struct ovl_request *reqs,
                    size_t n, int64_t deadline)
{
  struct work *w;
  struct ovl_qmp *q = NULL;
  size_t i, j;
  int bad = 0, r;

  if (n == 0)
    return 0;
  if (!(w = ovl_calloc (n, sizeof *w)))
    return -1;
  for (i = 0; i < n; i++) {
    w[i].r = &reqs[i];
    w[i].dirfd = w[i].tmpfd = -1;
    w[i].seq = ++batch_seq;
    snprintf (w[i].id, sizeof w[i].id, OVL_NAME_PREFIX "%ld-%lu",
              (long) getpid (), w[i].seq);
  }

  /* Every check first: nothing is created unless all pass. */
  for (i = 0; i < n; i++) {
    for (j = 0; j < i; j++)
      if (strcmp (reqs[i].overlay, reqs[j].overlay) == 0) {
        req_failf (&reqs[i], "overlay '%s' is requested twice", reqs[i].overlay);
        bad = 1;
      }
    if (!reqs[i].error && check_request (cfg, &reqs[i], &w[i].dirfd, &w[i].name) == -1)
      bad = 1;
  }
  if (bad)
    goto fail;

  for (i = 0; i < n; i++) {
    remove_stale_temps (w[i].dirfd);
    if (create_temp (&w[i]) == -1)
      goto fail;
  }

  if (!(q = ovl_qsd_connect (cfg, deadline))) {
    fail_all (reqs, n);
    goto fail;
  }
  r = run_batch (q, w, n, deadline);
  if (r == -1)
    fail_all (reqs, n);
  ovl_qmp_close (q);
  if (r != 0 || commit_batch (w, n) == -1)
    goto fail;

  free_work (w, n);
  return 0;

 fail:
  rollback (w, n);
  free_work (w, n);
  return batch_failed (reqs, n);
}
