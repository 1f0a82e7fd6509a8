/* gc: see gc.h. */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "gc.h"
#include "ledger.h"
#include "lifecycle.h"
#include "overlay.h"
#include "paths.h"
#include "pool.h"
#include "util.h"

#define UUID_LEN 36
#define PERSISTENT_LEFT "a persistent overlay: gc never removes one (remove it by hand " \
  "if its domain is gone for good); forgotten"

/* NAME is a UUID as ledgers are named (lowercase), alone or followed by
 * ".lock" or ".tmp". */
static bool
ledger_name (const char *name, char uuid[UUID_LEN + 1])
{
  size_t i;

  for (i = 0; i < UUID_LEN; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? name[i] != '-' : !(isdigit ((unsigned char) name[i]) ||
                                  (name[i] >= 'a' && name[i] <= 'f')))
      return false;
  }
  if (name[i] && strcmp (name + i, ".lock") != 0 && strcmp (name + i, ".tmp") != 0)
    return false;
  memcpy (uuid, name, UUID_LEN);
  uuid[UUID_LEN] = '\0';
  return true;
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The UUIDs of STATE_DIR/domains, sorted, each once: *OUT (NULL when
 * there is none).  The count, or -1 (error set). */
static long
list_ledgers (const char *dir, char ***out)
{
  CLEANUP_CLOSEDIR DIR *d = opendir (dir);
  struct dirent *e;
  bool failed = false;
  char **v = NULL, uuid[UUID_LEN + 1];
  size_t n = 0, cap = 0, i, j;

  *out = NULL;
  if (!d && errno == ENOENT)
    return 0;
  if (!d) {
    ovl_error ("%s: %m", dir);
    return -1;
  }
  while ((e = ovl_readdir (d, &failed))) {
    if (!ledger_name (e->d_name, uuid))
      continue;
    if (OVL_RESERVE (v, cap, n + 1, 16) == -1 || !(v[n] = ovl_strdup (uuid)))
      goto fail;
    n++;
  }
  if (failed) {
    ovl_error ("%s: %m", dir);
    goto fail;
  }
  if (n)
    qsort (v, n, sizeof *v, cmp_str);
  for (i = j = 0; i < n; i++) {
    if (j && strcmp (v[j - 1], v[i]) == 0)
      free (v[i]);
    else
      v[j++] = v[i];
  }
  *out = v;
  return (long) j;

 fail:
  for (i = 0; i < n; i++)
    free (v[i]);
  free (v);
  return -1;
}

/* A domain name fit for one line of a report. */
static void
shown_name (const char *name, char *out, size_t len)
{
  size_t i;

  if (!name) {
    snprintf (out, len, "(unnamed)");
    return;
  }
  for (i = 0; name[i] && i + 4 < len; i++)
    out[i] = (unsigned char) name[i] < 0x20 || name[i] == 0x7f ? '?' : name[i];
  if (name[i])
    out[i++] = '.', out[i++] = '.', out[i++] = '.';
  out[i] = '\0';
}

struct gc_domain {
  const struct ovl_config *cfg;
  const struct ovl_gc_ops *ops;
  const char *uuid;
  const char *dir;              /* STATE_DIR/domains */
  char *file;                   /* the ledger */
  char why[160];                /* "domain NAME (UUID) is no longer defined" */
  struct ovl_ledger *peek;      /* the ledger as read without its lock */
  bool *used;                   /* per entry of peek: a domain uses its file */
};

/* Whether one of L's ephemeral overlays is still the file it records
 * (or that cannot be told): a saved state needs it.  One taken over by
 * a restore on another host, or removed there, no state here needs. */
static bool
holds_an_overlay (const struct gc_domain *g, const struct ovl_ledger *l)
{
  size_t i;

  for (i = 0; i < l->n; i++) {
    const struct ovl_ledger_entry *e = &l->entries[i];
    int p;

    if (e->persistent)
      continue;
    p = ovl_overlay_presence (g->cfg, e->path, &e->id);
    if (p != OVL_PRESENCE_OTHER && p != OVL_PRESENCE_ABSENT)
      return true;
  }
  return false;
}

/* Why L's overlays wait for a saved state of its domain, or NULL. */
static const char *
keeps_state (const struct gc_domain *g, const struct ovl_ledger *l)
{
  int r;

  if (l->saved && holds_an_overlay (g, l))
    return "its domain stopped to be saved to a file (virsh save): the restore needs its "
      "overlays";
  if (ovl_migration_mark_fresh (l->restore_pending))
    return "a restore of its domain is under way";
  if (l->domain && (r = ovl_managed_save_exists (g->cfg, l->domain)) != 0)
    return r == 1 ? "a managed-save image of its domain exists" : ovl_error_msg ();
  return NULL;
}

/* Whether a domain libvirt knows uses E's file: then it is reported as
 * left.  -1 when that cannot be told (error set). */
static int
used_elsewhere (struct gc_domain *g, const struct ovl_ledger_entry *e)
{
  const char *who = NULL;
  char name[80], line[200];
  int r = g->ops->path_used (g->ops->opaque, e->path, &who);

  if (r == 1) {
    shown_name (who, name, sizeof name);
    snprintf (line, sizeof line, "domain %s uses it as a disk now; forgotten", name);
    g->ops->say (g->ops->opaque, OVL_GC_LEFT, "overlay", e->path, line);
  }
  return r;
}

#define HANDED_BACK "taken over from a migration's source, which never let go of " \
  "it: its token is given back, the source owns it again"

#define TAKEN "made for this domain, under another host's token: taken over by the " \
  "host the domain migrated to, from a host that never let go of it; not let go of " \
  "here, and the entry is kept, in case it comes back"
#define TAKEN_DRY "made for this domain, under another host's token: taken over by the " \
  "host the domain migrated to; let go of, or kept should the host this one took " \
  "it from never have let go"
#define LET_GO "taken over by the host the domain migrated to: let go of, that host " \
  "owns it"
#define NEVER_TAKEN "not this host's (never taken over, or made again since): left to " \
  "the host whose token it carries, and forgotten"

/* An entry whose file another host took: made for this domain, under
 * another token.  The release here never came (a crash), so gc lets go
 * of it as that release would have, under the same rule: where the
 * marks say this host's own claim was never settled, or a later holder
 * marked it, nothing is marked and the entry stays (should the file
 * come back to its token, it tells whose the file is).  With DRY_RUN
 * it only says so.  1 forgotten (said so), 2 kept (said so), 0 not
 * such a file, -1 (error set). */
static int
taken_elsewhere (struct gc_domain *g, const struct ovl_ledger_entry *e, bool dry_run)
{
  const struct ovl_gc_ops *ops = g->ops;
  struct ovl_file_id now;
  int r = ovl_overlay_made_for (g->cfg, e->path, g->uuid, &now);

  if (r != 1)
    return r;
  if (dry_run) {
    ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, TAKEN_DRY);
    return 2;
  }
  switch (ovl_lifecycle_let_go_taken (g->cfg, e, g->uuid, &now, false)) {
  case -1:
    return -1;
  case 0:
    ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, NEVER_TAKEN);
    return 1;
  case 1:
    ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, LET_GO);
    return 1;
  default:
    ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, TAKEN);
    return 2;
  }
}

/* An overlay this host took from a migration's source that never let go
 * of it (a migration that failed, and the hook never got to the
 * release): the source may need it still (its domain saved, or running
 * on), so gc gives it back rather than remove it; with DRY_RUN it only
 * says so.  1 handed back (or would be), 0 not such an entry, -1 left
 * (said why). */
static int
handed_back (struct gc_domain *g, const struct ovl_ledger_entry *e, bool dry_run)
{
  const struct ovl_gc_ops *ops = g->ops;
  int r;

  r = ovl_lifecycle_owed_back (g->cfg, e);
  /* hand_back gives 0 for a file no longer the one taken: the usual way. */
  if (r == 1 && !dry_run)
    r = ovl_overlay_hand_back (g->cfg, e->path, &e->id, e->adopted_from);
  if (r == -1) {
    ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, ovl_error_msg ());
    return -1;
  }
  if (r == 0)
    return 0;
  ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, HANDED_BACK);
  return 1;
}

/* The dry run of one domain libvirt does not know. */
static int
gc_domain_dry (struct gc_domain *g)
{
  const struct ovl_gc_ops *ops = g->ops;
  const struct ovl_ledger *l = g->peek;
  const char *why;
  size_t i;
  int r;

  if ((why = keeps_state (g, l))) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, why);
    return 0;
  }
  for (i = 0; i < l->n; i++) {
    const struct ovl_ledger_entry *e = &l->entries[i];
    if (e->persistent) {
      ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, PERSISTENT_LEFT);
      continue;
    }
    switch (ovl_overlay_presence (g->cfg, e->path, &e->id)) {
    case OVL_PRESENCE_OURS:
      if ((r = used_elsewhere (g, e)) == -1)
        return -1;
      if (r == 0 && handed_back (g, e, true) == 0)
        ops->say (ops->opaque, OVL_GC_WOULD_REMOVE, "overlay", e->path, g->why);
      break;
    case OVL_PRESENCE_OTHER:
      if ((r = taken_elsewhere (g, e, true)) == 0)
        ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path,
                  "no longer the file virt-overlay made");
      else if (r == -1)
        ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, ovl_error_msg ());
      break;
    case -1:
      ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, ovl_error_msg ());
      break;
    }
  }
  ops->say (ops->opaque, OVL_GC_WOULD_REMOVE, "ledger", g->file, g->why);
  return 0;
}

/* Ask libvirt, before the lock, which of the peeked ledger's overlays a
 * domain it knows uses (reported as left).  Under the ledger's lock
 * nothing asks libvirt: libvirtd holds a domain's lock while its hook
 * runs, and the hook may be waiting for ours.  0, or -1 (error set). */
static int
gc_ask_libvirt (struct gc_domain *g)
{
  size_t i;
  int r;

  if (!(g->used = ovl_calloc (g->peek->n + 1, sizeof *g->used)))
    return -1;
  for (i = 0; i < g->peek->n; i++) {
    const struct ovl_ledger_entry *e = &g->peek->entries[i];
    if (e->persistent || ovl_overlay_presence (g->cfg, e->path, &e->id) != OVL_PRESENCE_OURS)
      continue;
    if ((r = used_elsewhere (g, e)) == -1)
      return -1;
    g->used[i] = r == 1;
  }
  return 0;
}

/* Remove what the ledger of a domain libvirt does not know records,
 * under its lock, if it still records what libvirt was asked about: a
 * domain defined and started meanwhile has changed it (and its prepare,
 * waiting for the lock, makes fresh overlays after us anyway).  0, or
 * -1 when libvirt could not tell (error set). */
static int
gc_domain (struct gc_domain *g, int64_t deadline)
{
  const struct ovl_gc_ops *ops = g->ops;
  CLEANUP_LEDGER struct ovl_ledger *l = NULL;
  CLEANUP_FREE char *lock = NULL, *tmp = NULL;
  const char *why;
  char line[200];
  size_t i;
  int r;

  if ((why = keeps_state (g, g->peek))) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, why);
    return 0;
  }
  if (gc_ask_libvirt (g) == -1)
    return -1;
  if (!(l = ovl_ledger_open (g->cfg->state_dir, g->uuid, deadline))) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, ovl_error_msg ());
    return 0;
  }
  if (!ovl_ledger_same (l, g->peek)) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file,
              "it changed while gc looked (its domain defined and started again?); "
              "left to the next gc");
    return 0;
  }
  if ((why = keeps_state (g, l))) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, why);
    return 0;
  }
  /* From the end: a removal moves the last entry, done already, into
   * the hole, so g->used[] still names the entries before I. */
  for (i = l->n; i-- > 0; ) {
    struct ovl_ledger_entry *e = &l->entries[i];

    /* A domain's persistent disk outlives it, as libvirt's do. */
    if (e->persistent) {
      if (ovl_overlay_presence (g->cfg, e->path, &e->id) == OVL_PRESENCE_OURS)
        ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, PERSISTENT_LEFT);
      ovl_ledger_remove (l, e);
      continue;
    }
    if (g->used[i]) {
      ovl_ledger_remove (l, e);
      continue;
    }
    if ((r = handed_back (g, e, false)) != 0) {
      if (r == 1)
        ovl_ledger_remove (l, e);
      continue;
    }
    r = ovl_overlay_remove_owned (g->cfg, e->path, &e->id);
    if (r == 1) {
      ops->say (ops->opaque, OVL_GC_REMOVED, "overlay", e->path, g->why);
      ovl_ledger_remove (l, e);
      continue;
    }
    if (r == 0)
      r = ovl_overlay_presence (g->cfg, e->path, &e->id);
    if (r == OVL_PRESENCE_OTHER) {
      int t = taken_elsewhere (g, e, false);
      if (t == 2)
        continue;
      if (t == 1) {
        ovl_ledger_remove (l, e);
        continue;
      }
      if (t == -1)
        r = -1;
    }
    if (r == OVL_PRESENCE_OTHER)
      ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path,
                "no longer the file virt-overlay made");
    if (r == -1)                /* kept, to be tried again */
      ops->say (ops->opaque, OVL_GC_LEFT, "overlay", e->path, ovl_error_msg ());
    else
      ovl_ledger_remove (l, e);
  }
  l->restore_pending = 0;
  l->migration_pending = 0;
  l->saved = false;             /* nothing here a saved state needs (keeps_state) */
  l->restoring[0] = '\0';
  if (ovl_ledger_save (l) == -1) {
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, ovl_error_msg ());
    return 0;
  }
  if (!ovl_ledger_is_empty (l)) {
    snprintf (line, sizeof line, "it still records %zu overlays that could not be removed", l->n);
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, line);
    return 0;
  }
  /* The lock file goes while we hold it: whoever waits for it takes the
   * lock again on a new file (see ovl_ledger_open). */
  if (asprintf (&lock, "%s.lock", g->file) == -1 || asprintf (&tmp, "%s.tmp", g->file) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  if ((unlink (tmp) == -1 && errno != ENOENT) || (unlink (lock) == -1 && errno != ENOENT)) {
    snprintf (line, sizeof line, "%s", strerror (errno));
    ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g->file, line);
    return 0;
  }
  ops->say (ops->opaque, OVL_GC_REMOVED, "ledger", g->file, g->why);
  return 0;
}

static int
gc_ledgers (const struct ovl_config *cfg, const struct ovl_gc_ops *ops, bool dry_run,
            int64_t deadline)
{
  CLEANUP_FREE char *dir = NULL;
  char **uuids = NULL;
  long n, i;
  int ret = 0;

  if (asprintf (&dir, "%s/domains", cfg->state_dir) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  if ((n = list_ledgers (dir, &uuids)) == -1)
    return -1;
  for (i = 0; i < n && ret == 0; i++) {
    struct gc_domain g = { cfg, ops, uuids[i], dir, NULL, "", NULL, NULL };
    CLEANUP_LEDGER struct ovl_ledger *peek = NULL;
    char name[80];
    int known = ops->domain_known (ops->opaque, uuids[i]);

    if (known == -1) {
      ret = -1;
      break;
    }
    if (known == 1)
      continue;
    if (asprintf (&g.file, "%s/%s", dir, uuids[i]) == -1) {
      ovl_error ("out of memory");
      ret = -1;
      break;
    }
    /* A look without the lock: the name, for the report, and what
     * libvirt is asked about. */
    peek = ovl_ledger_load (cfg->state_dir, uuids[i]);
    shown_name (peek ? peek->domain : NULL, name, sizeof name);
    snprintf (g.why, sizeof g.why, "domain %s (%s) is no longer defined", name, uuids[i]);
    g.peek = peek;
    if (!peek)
      ops->say (ops->opaque, OVL_GC_LEFT, "ledger", g.file, ovl_error_msg ());
    else if (dry_run)
      ret = gc_domain_dry (&g);
    else
      ret = gc_domain (&g, deadline);
    free (g.used);
    free (g.file);
  }
  for (i = 0; i < n; i++)
    free (uuids[i]);
  free (uuids);
  return ret;
}

int
ovl_gc (const struct ovl_config *cfg, const struct ovl_gc_ops *ops, bool dry_run,
        int64_t deadline)
{
  size_t i;

  if (gc_ledgers (cfg, ops, dry_run, deadline) == -1)
    return -1;
  for (i = 0; i < cfg->overlay_dirs.n; i++) {
    const char *dir = cfg->overlay_dirs.dir[i];
    CLEANUP_CLOSE int fd = -1;

    if (access (dir, F_OK) == -1 && errno == ENOENT)
      continue;
    /* (the pools' pass says why it is left) */
    if (ovl_path_open_dir (dir, &cfg->overlay_dirs, "overlay", &fd) == -1)
      continue;
    ovl_gc_temps (fd, dir, dry_run, ops->say, ops->opaque);
  }
  return ovl_pool_gc (cfg, dry_run, ops->say, ops->opaque);
}
