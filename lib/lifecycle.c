/* The lifecycle of a domain's overlays; see lifecycle.h. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cleanup.h"
#include "error.h"
#include "ledger.h"
#include "lifecycle.h"
#include "overlay.h"
#include "pool.h"
#include "util.h"

/* ---- the rules ---- */

static struct ovl_decision
act (enum ovl_action a, bool forget)
{
  struct ovl_decision d = { a, OVL_WHY_NONE, forget };
  return d;
}

static struct ovl_decision
refuse (enum ovl_why why)
{
  struct ovl_decision d = { OVL_ACT_REFUSE, why, false };
  return d;
}

/* An ephemeral overlay that an incoming migration brings: the source's
 * QEMU runs on it until the end, so it is used as it is, and recorded
 * here if it is the one made for this domain. */
static struct ovl_decision
incoming_ephemeral (const struct ovl_disk_facts *k)
{
  switch (k->presence) {
  case OVL_OURS:
    return act (OVL_ACT_USE, false);
  case OVL_FOREIGN:
    /* A live migration's source holds it: not a leftover of a stop
     * (a saved state may need that) under a stale mark. */
    if (!k->made_for_domain)
      return refuse (OVL_WHY_NOT_MADE_FOR);
    return k->in_use ? act (OVL_ACT_ADOPT, k->in_ledger) : refuse (OVL_WHY_NOT_HELD);
  case OVL_ABSENT:
  default:
    return refuse (OVL_WHY_MIGRATION_MISSING);
  }
}

/* An ephemeral overlay a saved state is restored on: it needs that very
 * file.  Ours, it is used.  One made for this domain under another
 * host's token (saved there, or taken from here since) is taken over as
 * a migration's is, so that the host that saved it can no longer
 * remove it at a cold start of its own; unless a QEMU runs on it.  One
 * virt-overlay cannot tell (no trusted attributes, say) is used as it
 * is, and never removed. */
static struct ovl_decision
restored_ephemeral (const struct ovl_disk_facts *k)
{
  switch (k->presence) {
  case OVL_OURS:
    return act (OVL_ACT_USE, false);
  case OVL_FOREIGN:
    if (!k->made_for_domain)
      return act (OVL_ACT_USE, false);
    return k->in_use ? refuse (OVL_WHY_IN_USE) : act (OVL_ACT_ADOPT, k->in_ledger);
  case OVL_ABSENT:
  default:
    return refuse (OVL_WHY_RESTORE_MISSING);
  }
}

static struct ovl_decision
decide_prepare (const struct ovl_dom_facts *dom, const struct ovl_disk_facts *k)
{
  bool restoring = dom->restore_pending || dom->managed_save;
  bool exists = k->presence != OVL_ABSENT;

  if (k->mode == OVL_MODE_PERSISTENT) {
    /* Whatever it holds, it is the disk; the entry of a file that was
     * replaced goes (the caller drops one left from when the disk was
     * ephemeral, which must not get it removed at the next stop). */
    if (exists)
      return act (OVL_ACT_USE, k->in_ledger && k->presence == OVL_FOREIGN);
    if (dom->migration_pending)
      return refuse (OVL_WHY_MIGRATION_MISSING);
    if (restoring)
      return refuse (OVL_WHY_RESTORE_MISSING);
    return act (OVL_ACT_CREATE, k->in_ledger);
  }
  if (dom->migration_pending)
    return incoming_ephemeral (k);
  if (restoring)
    return restored_ephemeral (k);
  switch (k->presence) {
  case OVL_OURS:
    return act (OVL_ACT_RECREATE, false);
  case OVL_FOREIGN:
    return refuse (k->made_for_domain ? OVL_WHY_HELD_ELSEWHERE : OVL_WHY_FOREIGN);
  case OVL_ABSENT:
  default:
    /* An entry whose file is gone (a crash before publishing) goes. */
    return act (OVL_ACT_CREATE, k->in_ledger);
  }
}

static struct ovl_decision
decide_release (const struct ovl_dom_facts *dom, const struct ovl_disk_facts *k)
{
  if (!k->in_ledger)
    return act (OVL_ACT_USE, false);     /* not ours to touch */
  if (dom->saved || dom->managed_save)
    return act (OVL_ACT_USE, false);     /* the saved state runs on it later */
  switch (k->presence) {
  case OVL_OURS:
    if (dom->migrated)                   /* the host it runs on owns it now */
      return act (OVL_ACT_FORGET, true);
    /* Taken from a source that never let go: the migration failed (in
     * its last phase the source's QEMU holds no lock until it resumes). */
    if (k->adopted)
      return act (OVL_ACT_HAND_BACK, true);
    if (k->in_use)                       /* removed at a later stop */
      return act (OVL_ACT_USE, false);
    return act (OVL_ACT_REMOVE, true);
  case OVL_FOREIGN:                      /* ours is gone: replaced or moved */
  case OVL_ABSENT:
  default:
    return act (OVL_ACT_FORGET, true);
  }
}

/* migrate begin (incoming): the overlay must be here already. */
static struct ovl_decision
decide_migrate (const struct ovl_disk_facts *k)
{
  if (k->mode == OVL_MODE_EPHEMERAL) {
    struct ovl_decision d = incoming_ephemeral (k);
    return d.action == OVL_ACT_REFUSE ? d : act (OVL_ACT_USE, false);
  }
  return k->presence == OVL_ABSENT ? refuse (OVL_WHY_MIGRATION_MISSING)
    : act (OVL_ACT_USE, false);
}

struct ovl_decision
ovl_lifecycle_decide (enum ovl_op op, const struct ovl_dom_facts *dom,
                      const struct ovl_disk_facts *k)
{
  switch (op) {
  case OVL_OP_PREPARE:
    return decide_prepare (dom, k);
  case OVL_OP_RELEASE:
    return decide_release (dom, k);
  case OVL_OP_MIGRATE:
    return decide_migrate (k);
  case OVL_OP_RESTORE:
  default:
    return act (OVL_ACT_USE, false);
  }
}

const char *
ovl_op_name (enum ovl_op op)
{
  static const char *const n[] = { "prepare", "release", "restore", "migrate" };
  return (unsigned) op < sizeof n / sizeof n[0] ? n[op] : "?";
}

const char *
ovl_action_name (enum ovl_action a)
{
  static const char *const n[] = {
    "use", "create", "recreate", "remove", "forget", "adopt", "hand-back", "refuse",
  };
  return (unsigned) a < sizeof n / sizeof n[0] ? n[a] : "?";
}

const char *
ovl_why_name (enum ovl_why w)
{
  static const char *const n[] = {
    "-", "foreign", "restore-missing", "migration-missing", "not-made-for", "not-held",
    "in-use", "held-elsewhere",
  };
  return (unsigned) w < sizeof n / sizeof n[0] ? n[w] : "?";
}

/* ---- carrying them out ---- */

void
ovl_outcome_clear (struct ovl_outcome *o)
{
  size_t i;
  for (i = 0; i < o->nlines; i++)
    free (o->lines[i]);
  free (o->lines);
  for (i = 0; i < o->ndone; i++)
    free (o->done[i]);
  free (o->done);
  memset (o, 0, sizeof *o);
}

/* Add a line to *LINES (N of them, CAP room): false if it was lost. */
static bool
add_line (char ***lines, size_t *n, size_t *cap, const char *fmt, va_list ap)
{
  char *line;

  if (OVL_RESERVE (*lines, *cap, *n + 1, 4) == -1)
    return false;
  if (vasprintf (&line, fmt, ap) < 0) {
    ovl_error ("out of memory");
    return false;
  }
  (*lines)[(*n)++] = line;
  return true;
}

/* A problem. */
static void __attribute__((format (printf, 2, 3)))
say (struct ovl_outcome *o, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (!add_line (&o->lines, &o->nlines, &o->lines_cap, fmt, ap))
    o->lost = true;
  va_end (ap);
}

/* Something done. */
static void __attribute__((format (printf, 2, 3)))
say_done (struct ovl_outcome *o, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (!add_line (&o->done, &o->ndone, &o->done_cap, fmt, ap))
    o->lost = true;
  va_end (ap);
}

static const char *
mode_name (enum ovl_mode m)
{
  return m == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent";
}

/* The line for a refusal of DISK. */
static void
say_refusal (struct ovl_outcome *o, const struct ovl_disk *k, enum ovl_why why)
{
  switch (why) {
  case OVL_WHY_FOREIGN:
    say (o, "disk %s: ephemeral overlay '%s' exists and was not created by virt-overlay "
         "for this domain; refusing to replace it", k->target, k->overlay);
    break;
  case OVL_WHY_RESTORE_MISSING:
    say (o, "disk %s: %s overlay '%s' is missing; the saved state cannot run on a fresh disk",
         k->target, k->mode == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent", k->overlay);
    break;
  case OVL_WHY_MIGRATION_MISSING:
    if (k->mode == OVL_MODE_EPHEMERAL)
      say (o, "disk %s: ephemeral overlay '%s' is not on this host; an ephemeral overlay "
           "migrates only on storage both hosts share", k->target, k->overlay);
    else
      say (o, "disk %s: overlay '%s' is not on this host; migrating needs storage both "
           "hosts share, or, for --copy-storage-inc, the overlay made here first over "
           "the same base ('virt-overlay create --backing-format %s %s %s')",
           k->target, k->overlay, ovl_format_name (k->base_format), k->base, k->overlay);
    break;
  case OVL_WHY_NOT_HELD:
    say (o, "disk %s: ephemeral overlay '%s' is not in use by a QEMU on the migration's "
         "source; refusing to take over what may be a stopped or saved domain's",
         k->target, k->overlay);
    break;
  case OVL_WHY_NOT_MADE_FOR:
    say (o, "disk %s: ephemeral overlay '%s' here is not one virt-overlay made for this "
         "domain (or its filesystem keeps no trusted attributes to tell); refusing to "
         "take it over", k->target, k->overlay);
    break;
  case OVL_WHY_HELD_ELSEWHERE:
    say (o, "disk %s: ephemeral overlay '%s' was made for this domain, but under a token "
         "this host's ledger does not know: another host took it over (a migration or a "
         "restore there) and holds it; refusing to replace it (start the domain there, or "
         "run 'virt-overlay gc' on the hosts it ran on)", k->target, k->overlay);
    break;
  case OVL_WHY_IN_USE:
    say (o, "disk %s: ephemeral overlay '%s' is in use by a QEMU (the domain runs on it, "
         "on this host or another); the saved state cannot run on it", k->target, k->overlay);
    break;
  case OVL_WHY_NONE:
  default:
    say (o, "disk %s: refused", k->target);
    break;
  }
}

int
ovl_managed_save_exists (const struct ovl_config *cfg, const char *name)
{
  CLEANUP_FREE char *p = NULL;
  struct stat st;

  if (strchr (name, '/'))
    return 0;                   /* libvirt refuses such a name */
  if (asprintf (&p, "%s/%s.save", cfg->managed_save_dir, name) == -1) {
    ovl_error ("out of memory");
    return -1;
  }
  if (lstat (p, &st) == 0)
    return 1;
  if (errno == ENOENT || errno == ENAMETOOLONG)
    return 0;                   /* a name libvirt could not have saved under */
  ovl_error ("cannot tell whether a managed save exists ('%s'): %m", p);
  return -1;
}

/* Within the window either way: a wall clock stepped back between
 * migrate begin and its prepare must not make the mark look unset. */
bool
ovl_migration_mark_fresh (long long when)
{
  long long now = (long long) time (NULL);
  return when > 0 && now - when <= OVL_MIGRATION_MARK_SECONDS &&
    when - now <= OVL_MIGRATION_MARK_SECONDS;
}

/* Whether L says a restore of a state saved here is under way in this
 * boot: after a crash, the restored domain may have run on. */
static bool
restoring_now (const struct ovl_ledger *l)
{
  char boot[OVL_BOOT_ID_LEN + 1];

  return l->restoring[0] && ovl_boot_id (boot) == 0 && strcmp (boot, l->restoring) == 0;
}

/* The domain's facts; -1 (error set) when one cannot be told. */
static int
dom_facts (const struct ovl_config *cfg, const struct ovl_domain *dom,
           const struct ovl_ledger *l, const char *reason, struct ovl_dom_facts *f)
{
  int ms = ovl_managed_save_exists (cfg, dom->name);

  if (ms == -1)
    return -1;
  memset (f, 0, sizeof *f);
  f->managed_save = ms == 1;
  f->restore_pending = l && ovl_migration_mark_fresh (l->restore_pending);
  f->migration_pending = l && ovl_migration_mark_fresh (l->migration_pending);
  /* Saved, or a restore of a state saved here failed (libvirt says
   * "failed"): the state still needs what it needed. */
  f->saved = reason && (strcmp (reason, "saved") == 0 ||
                        (strcmp (reason, "failed") == 0 && l && restoring_now (l)));
  f->migrated = reason && strcmp (reason, "migrated") == 0;
  f->ran = reason && strcmp (reason, "failed") != 0;
  f->failed = reason && strcmp (reason, "failed") == 0;
  return 0;
}

/* The rule of a take, for an entry E of one (adopted_from set) whose
 * file is still the one taken: owed back to the migration's source
 * unless the source let go of it.  1 owed back, 0 not, -1 (error set). */
static int
owed_back_ours (const struct ovl_config *cfg, const struct ovl_ledger_entry *e)
{
  int r;

  if ((r = ovl_overlay_was_let_go (cfg, e->path, &e->id, e->adopted_from)) == -1)
    return -1;
  return r == 0;
}

int
ovl_lifecycle_let_go_taken (const struct ovl_config *cfg, const struct ovl_ledger_entry *e,
                            const char *uuid, const struct ovl_file_id *found, bool ran)
{
  /* A take recorded ahead that never happened (a crash), or a file
   * given back: still the source's. */
  if (e->adopted_from[0] && strcmp (found->token, e->adopted_from) == 0)
    return 0;
  /* A take changes the token only: another file (the one E names was
   * removed, and one made again since) is not E's to let go of. */
  if (!ovl_file_id_same_file (found, &e->id))
    return 0;
  /* Tell the taker: it keeps the overlay, rather than give it back (to
   * a token no ledger knows once this entry is gone), should something
   * hold it at its own stop. */
  if (!e->id.token[0])
    return 1;
  return ovl_overlay_let_go (cfg, e->path, uuid, e->id.token,
                             e->restored && ran ? NULL : e->adopted_from);
}

int
ovl_lifecycle_owed_back (const struct ovl_config *cfg, const struct ovl_ledger_entry *e)
{
  int r;

  if (!e->adopted_from[0])
    return 0;
  if ((r = ovl_overlay_presence (cfg, e->path, &e->id)) != OVL_PRESENCE_OURS)
    return r == -1 ? -1 : 0;
  return owed_back_ours (cfg, e);
}

/* One disk's facts against ENTRY (or NULL).  With OWNER (the domain's
 * UUID), whether a file made for it is there (its identity into *FOUND)
 * and a QEMU holds it; with ASK_IN_USE, whether a QEMU holds ours, and
 * for one taken from a migration's source, whether that source has let
 * go of it.  -1 (error set). */
static int
disk_facts (const struct ovl_config *cfg, enum ovl_mode mode, const char *path,
            const struct ovl_ledger_entry *e, const char *owner, bool ask_in_use,
            struct ovl_disk_facts *f, struct ovl_file_id *found)
{
  int p = ovl_overlay_presence (cfg, path, e ? &e->id : NULL);

  if (p == -1)
    return -1;
  memset (f, 0, sizeof *f);
  f->mode = mode;
  f->in_ledger = e != NULL;
  f->adopted = e && e->adopted_from[0];
  f->presence = p == OVL_PRESENCE_ABSENT ? OVL_ABSENT
    : p == OVL_PRESENCE_OURS ? OVL_OURS : OVL_FOREIGN;
  if (owner && f->presence == OVL_FOREIGN) {
    if ((p = ovl_overlay_made_for (cfg, path, owner, found)) == -1)
      return -1;
    f->made_for_domain = p == 1;
  }
  if ((ask_in_use && f->presence == OVL_OURS) || f->made_for_domain) {
    if ((p = ovl_overlay_in_use (cfg, path)) == -1)
      return -1;
    f->in_use = p == 1;
  }
  /* Let go of by the source: the migration went through. */
  if (ask_in_use && f->adopted && f->presence == OVL_OURS) {
    if ((p = owed_back_ours (cfg, e)) == -1)
      return -1;
    f->adopted = p == 1;
  }
  return 0;
}

/* The prepare of one domain: everything a batch needs. */
struct prepare {
  const struct ovl_config *cfg;
  const struct ovl_domain *dom;
  struct ovl_ledger *ledger;    /* NULL: the domain has no UUID */
  struct ovl_outcome *o;
  struct ovl_request *reqs;
  struct ovl_result *res;
  const struct ovl_disk **which;
  size_t n;
  bool saved;                   /* the write-ahead save holds it all */
  const struct ovl_disk **adopt;  /* ephemeral overlays an incoming migration */
  struct ovl_file_id *adopt_id;   /* brings, as found, to take once every */
  size_t nadopt;                  /* disk has passed */
  bool restoring;                 /* a restore (restore begin came, or a managed
                                   * save is there), not a migration */
};

/* Write ahead: every ephemeral overlay of the batch is in the ledger,
 * durably, before the first is published (see ovl_publish_hook); so is
 * every persistent one whose identity can be told later (for "virt-overlay
 * reset"; a filesystem without birth times or trusted attributes just
 * leaves it unrecorded). */
static int
record_batch (void *opaque, const struct ovl_request *reqs, const struct ovl_result *res,
              size_t n)
{
  struct prepare *p = opaque;
  struct ovl_ledger_entry *e;
  size_t i;

  for (i = 0; i < n; i++) {
    bool persistent = p->which[i]->mode == OVL_MODE_PERSISTENT;
    if (persistent && !ovl_file_id_is_strong (&res[i].made))
      continue;
    if (!(e = ovl_ledger_add (p->ledger, reqs[i].overlay, &res[i].made)))
      return -1;
    e->persistent = persistent;
    e->from_pool = res[i].taken;
  }
  if (ovl_ledger_save (p->ledger) == -1)
    return -1;
  p->saved = true;
  return 0;
}

/* A failed batch published nothing: its entries go again, unless the
 * undo could not remove one (best effort: an entry whose file never
 * appeared is dropped at the next start). */
static void
unrecord_batch (struct prepare *p)
{
  size_t i;
  struct ovl_ledger_entry *e;

  if (!p->ledger)
    return;
  for (i = 0; i < p->n; i++)
    if ((e = ovl_ledger_find (p->ledger, p->reqs[i].overlay)) &&
        ovl_file_id_equal (&e->id, &p->res[i].made) &&
        ovl_overlay_presence (p->cfg, e->path, &e->id) != OVL_PRESENCE_OURS)
      ovl_ledger_remove (p->ledger, e);
}

static void
queue_request (struct prepare *p, const struct ovl_disk *k)
{
  struct ovl_request *r = &p->reqs[p->n];

  r->base = k->base;
  r->base_format = k->base_format;
  r->overlay = k->overlay;
  r->size = k->size;
  r->cluster_size = k->cluster_size;
  r->lazy_refcounts = k->lazy_refcounts;
  r->extended_l2 = k->extended_l2;
  r->need_identity = k->mode == OVL_MODE_EPHEMERAL;
  r->owner = k->mode == OVL_MODE_EPHEMERAL ? p->dom->uuid : NULL;
  p->which[p->n++] = k;
}

/* Decide and do what comes before the batch for disk K: 0 fine, -1 the
 * disk fails (a line said why). */
static int
prepare_disk (struct prepare *p, const struct ovl_dom_facts *df, const struct ovl_disk *k)
{
  struct ovl_ledger_entry *e = p->ledger ? ovl_ledger_find (p->ledger, k->overlay) : NULL;
  struct ovl_disk_facts f;
  struct ovl_decision d;
  struct ovl_file_id found = { 0 };
  /* Whether a file that is not ours was made for this domain: another
   * host's to take over, or (a cold start) to be refused as such. */
  bool ask_made_for = k->mode == OVL_MODE_EPHEMERAL;
  int r;

  /* An entry of the other mode is not this disk's: one left from when
   * the disk was ephemeral goes (its file is the disk now); one of a
   * persistent overlay stays, and that file is not an ephemeral
   * overlay of ours. */
  if (e && e->persistent != (k->mode == OVL_MODE_PERSISTENT)) {
    if (k->mode == OVL_MODE_PERSISTENT)
      ovl_ledger_remove (p->ledger, e);
    e = NULL;
  }
  if (disk_facts (p->cfg, k->mode, k->overlay, e, ask_made_for ? p->dom->uuid : NULL, false,
                  &f, &found) == -1) {
    say (p->o, "disk %s: %s", k->target, ovl_error_msg ());
    return -1;
  }
  d = ovl_lifecycle_decide (OVL_OP_PREPARE, df, &f);
  if (d.action == OVL_ACT_REFUSE) {
    say_refusal (p->o, k, d.why);
    return -1;
  }
  if (d.action == OVL_ACT_RECREATE) {
    r = ovl_overlay_remove_owned (p->cfg, k->overlay, &e->id);
    if (r != 1) {
      if (r == 0)
        say (p->o, "disk %s: ephemeral overlay '%s' changed while it was being replaced; "
             "left alone", k->target, k->overlay);
      else
        say (p->o, "disk %s: %s", k->target, ovl_error_msg ());
      return -1;
    }
    p->o->removed++;
    say_done (p->o, "disk %s: ephemeral overlay '%s' of the last boot removed",
              k->target, k->overlay);
    d.forget = true;
  }
  /* An earlier claim of this host on the file an incoming migration
   * brings (its release never came): let go of it before its entry is
   * replaced, so that the host this one takes it from, should the
   * migration fail, keeps it rather than give it back to a token no
   * ledger here knows.  Where the marks forbid it, the claim was never
   * settled and the file may yet come back to its token: it is not
   * forgotten, and the migration is refused. */
  if (d.action == OVL_ACT_ADOPT && e) {
    r = ovl_lifecycle_let_go_taken (p->cfg, e, p->dom->uuid, &found, false);
    if (r == -1) {
      say (p->o, "disk %s: %s", k->target, ovl_error_msg ());
      return -1;
    }
    if (r == 2) {
      say (p->o, "disk %s: this host's earlier claim on ephemeral overlay '%s' was never "
           "settled (the host it took it from never let go of it); not taken over again: "
           "run 'virt-overlay gc' on the hosts the domain ran on", k->target, k->overlay);
      return -1;
    }
  }
  if (d.forget && e)
    ovl_ledger_remove (p->ledger, e);
  if (d.action == OVL_ACT_ADOPT) {
    /* Not over a persistent overlay's entry (a disk switched from
     * persistent): that file is the disk, not an ephemeral overlay. */
    if (!p->ledger || ovl_ledger_find (p->ledger, k->overlay)) {
      say_refusal (p->o, k, OVL_WHY_NOT_MADE_FOR);
      return -1;
    }
    p->adopt[p->nadopt] = k;
    p->adopt_id[p->nadopt++] = found;
  }
  if (d.action == OVL_ACT_CREATE || d.action == OVL_ACT_RECREATE)
    queue_request (p, k);
  return 0;
}

/* Take the overlays an incoming migration brings, once every disk has
 * passed: each gets a new token, recorded durably before it is set (a
 * crash in between leaves the file with the source's token, which the
 * source's ledger still knows).  0, or -1 (lines said why). */
static int
adopt_all (struct prepare *p)
{
  size_t i;
  int bad = 0;

  for (i = 0; i < p->nadopt; i++) {
    struct ovl_ledger_entry *e;
    struct ovl_file_id id = p->adopt_id[i];

    if (ovl_random_hex (id.token, OVL_TOKEN_LEN / 2) == -1 ||
        !(e = ovl_ledger_add (p->ledger, p->adopt[i]->overlay, &id))) {
      say (p->o, "disk %s: %s", p->adopt[i]->target, ovl_error_msg ());
      return -1;
    }
    memcpy (e->adopted_from, p->adopt_id[i].token, sizeof e->adopted_from);
    e->restored = p->restoring;
  }
  if (ovl_ledger_save (p->ledger) == -1) {
    say (p->o, "%s", ovl_error_msg ());
    return -1;
  }
  for (i = 0; i < p->nadopt; i++) {
    const struct ovl_disk *k = p->adopt[i];
    const struct ovl_ledger_entry *e = ovl_ledger_find (p->ledger, k->overlay);
    int r = ovl_overlay_take (p->cfg, k->overlay, p->dom->uuid, &p->adopt_id[i], e->id.token);

    if (r == 1)
      say_done (p->o, "disk %s: ephemeral overlay '%s' taken over from %s", k->target,
                k->overlay, p->restoring ? "the host its state was saved on"
                : "the migration's source");
    else {
      if (r == 0)
        say (p->o, "disk %s: ephemeral overlay '%s' changed while it was being taken over; "
             "left alone", k->target, k->overlay);
      else
        say (p->o, "disk %s: %s", k->target, ovl_error_msg ());
      bad = -1;
    }
  }
  return bad;
}

/* A start that fails says everything wrong with it at once: the disks
 * that passed so far are checked too, and nothing is made. */
static void
report_other_problems (struct prepare *p)
{
  size_t i;

  ovl_overlay_check (p->cfg, p->reqs, p->res, p->n);
  for (i = 0; i < p->n; i++)
    if (p->res[i].error)
      say (p->o, "disk %s: %s", p->which[i]->target, p->res[i].error);
}

static int
run_prepare (struct prepare *p, const struct ovl_dom_facts *df, int64_t deadline)
{
  const struct ovl_publish_hook hook = { record_batch, p };
  const struct ovl_create_opts opts = {
    .supplier = ovl_pool_supplier (p->cfg),
    .before = p->ledger ? &hook : NULL,
  };
  size_t i;
  int bad = 0;
  int64_t t0 = 0;

  if (p->ledger) {
    char *name = ovl_strdup (p->dom->name);
    if (!name) {
      say (p->o, "%s", ovl_error_msg ());
      return 1;
    }
    free (p->ledger->domain);
    p->ledger->domain = name;
  }
  p->restoring = !df->migration_pending && (df->restore_pending || df->managed_save);
  for (i = 0; i < p->dom->ndisks; i++)
    if (prepare_disk (p, df, &p->dom->disks[i]) == -1)
      bad = 1;
  if (p->ledger) {
    /* This prepare is what the marks were for, whatever comes of it;
     * cleared before the write-ahead save of a take, so that a crash
     * after it leaves none behind.  A restore of a state saved here
     * that fails keeps its overlays: its release knows it by
     * "restoring", which gc does not read (after a crash, the restored
     * domain may have run on). */
    /* Saved here, or a restore of it before that never ended (a crash
     * in it: the state was never loaded). */
    if (!p->restoring || (!p->ledger->saved && !p->ledger->restoring[0]))
      p->ledger->restoring[0] = '\0';
    else if (ovl_boot_id (p->ledger->restoring) == -1) {
      say (p->o, "%s; should this restore fail, its overlays are not kept", ovl_error_msg ());
      p->ledger->restoring[0] = '\0';
    }
    p->ledger->restore_pending = 0;
    p->ledger->migration_pending = 0;
    p->ledger->saved = false;
  }
  if (!bad && p->nadopt && adopt_all (p) == -1)
    bad = 1;
  if (bad && p->n)
    report_other_problems (p);
  if (!bad && p->n) {
    if (!p->ledger && ovl_domain_has_ephemeral (p->dom)) {
      say (p->o, "domain %s has ephemeral disks but no UUID", p->dom->name);
      bad = 1;
    }
    else if ((t0 = ovl_now_ms ()),
             ovl_overlay_create (p->cfg, p->reqs, p->res, p->n, deadline, &opts) == -1) {
      size_t said = p->o->nlines;
      for (i = 0; i < p->n; i++)
        if (p->res[i].error)
          say (p->o, "disk %s: %s", p->which[i]->target, p->res[i].error);
      /* An error of the whole batch (qsd, the ledger) is no disk's. */
      if (p->o->nlines == said)
        say (p->o, "%s", ovl_error_msg ());
      unrecord_batch (p);
      p->saved = false;
      bad = 1;
    }
    else {
      long long ms = (long long) (ovl_now_ms () - t0);
      p->o->created = p->n;
      for (i = 0; i < p->n; i++)
        say_done (p->o, "disk %s: %s overlay '%s' made on '%s' %s in %lld ms",
                  p->which[i]->target, mode_name (p->which[i]->mode), p->reqs[i].overlay,
                  p->reqs[i].base, p->res[i].taken ? "from the pool" : "through qsd", ms);
    }
  }
  if (p->ledger && !p->saved && ovl_ledger_save (p->ledger) == -1) {
    say (p->o, "%s", ovl_error_msg ());
    bad = 1;
  }
  /* The start goes on without a refill: the pool is topped up next time. */
  if (!bad && p->n && ovl_pool_refill_detached (p->cfg, p->reqs, p->res, p->n) == -1)
    say (p->o, "%s", ovl_error_msg ());
  return bad;
}

/* Release: each ledger entry, one by one. */
static void
run_release (const struct ovl_config *cfg, struct ovl_ledger *l, const char *uuid,
             const struct ovl_dom_facts *df, struct ovl_outcome *o, bool *kept_for_state)
{
  size_t i;

  l->restore_pending = 0;
  l->migration_pending = 0;
  l->restoring[0] = '\0';
  for (i = l->n; i-- > 0; ) {
    struct ovl_ledger_entry *e = &l->entries[i];
    struct ovl_disk_facts f;
    struct ovl_decision d;
    struct ovl_file_id found;
    int r;

    if (e->persistent)
      continue;                 /* the disk, kept; see "virt-overlay reset" */
    /* Kept, with a true line, whenever what is there cannot be told. */
    if (disk_facts (cfg, OVL_MODE_EPHEMERAL, e->path, e, uuid, true, &f, &found) == -1) {
      say (o, "release: %s; its ledger entry is kept", ovl_error_msg ());
      continue;
    }
    /* A restore's take is owed back while the state saved on the host
     * it was taken from may be restored again: not once the restored
     * domain ran on it (libvirt 10.5 and later say so by a reason other
     * than "failed"; without one it cannot be told). */
    if (f.adopted && e->restored && df->ran)
      f.adopted = false;
    /* A failed restore's take of a file the saving host has let go of
     * since (its gc ran meanwhile): no ledger there knows it any more,
     * and the state still needs it.  Kept here, as a saved state's. */
    if (df->failed && e->restored && !f.adopted && f.presence == OVL_OURS) {
      *kept_for_state = true;
      say_done (o, "ephemeral overlay '%s' kept for the saved state its restore failed to "
                "load (the host it was taken from has let go of it)", e->path);
      continue;
    }
    d = ovl_lifecycle_decide (OVL_OP_RELEASE, df, &f);
    if (d.action == OVL_ACT_REMOVE) {
      r = ovl_overlay_remove_owned (cfg, e->path, &e->id);
      if (r == -1) {
        say (o, "release: %s; its ledger entry is kept", ovl_error_msg ());
        continue;
      }
      if (r == 1) {
        o->removed++;
        say_done (o, "ephemeral overlay '%s' removed", e->path);
      }
    }
    else if (d.action == OVL_ACT_HAND_BACK) {
      r = ovl_overlay_hand_back (cfg, e->path, &e->id, e->adopted_from);
      if (r == -1) {
        say (o, "release: %s; its ledger entry is kept", ovl_error_msg ());
        continue;
      }
      if (r == 1)
        say_done (o, "ephemeral overlay '%s' handed back to the migration's source, "
                  "which never let go of it", e->path);
    }
    else if (d.action == OVL_ACT_USE && f.presence == OVL_OURS && f.in_use)
      say (o, "release: overlay '%s' is in use (a QEMU holds its image lock); left alone; "
           "its ledger entry is kept", e->path);
    else if (d.action == OVL_ACT_FORGET && f.presence == OVL_FOREIGN && f.made_for_domain) {
      r = ovl_lifecycle_let_go_taken (cfg, e, uuid, &found, df->ran);
      if (r == 0)
        say_done (o, "ephemeral overlay '%s' is not this host's (never taken over, or made "
                  "again since); left to the host whose token it carries", e->path);
      else if (r == 1)
        say_done (o, "ephemeral overlay '%s' taken over by the host the domain runs on now",
                  e->path);
      else {
        if (r == -1)
          say (o, "release: %s; its ledger entry is kept", ovl_error_msg ());
        else
          say (o, "release: ephemeral overlay '%s' was taken over by another host, but the "
               "host this one took it from never let go of it; not let go of here, and its "
               "ledger entry is kept, should it come back", e->path);
        continue;
      }
    }
    else if (d.action == OVL_ACT_FORGET && f.presence == OVL_FOREIGN)
      say (o, "release: '%s' is no longer the overlay virt-overlay made; left alone", e->path);
    else if (d.action == OVL_ACT_FORGET && f.presence == OVL_OURS)
      say_done (o, "ephemeral overlay '%s' left to the host the domain migrated to", e->path);
    if (d.forget)
      ovl_ledger_remove (l, e);
  }
}

int
ovl_lifecycle_run (const struct ovl_config *cfg, enum ovl_op op,
                   const struct ovl_domain *dom, const char *reason,
                   int64_t deadline, struct ovl_outcome *o)
{
  CLEANUP_LEDGER struct ovl_ledger *ledger = NULL;
  struct ovl_dom_facts df;
  size_t i;

  memset (o, 0, sizeof *o);
  if (dom->ndisks == 0)
    return 0;
  /* Every read-modify-write of the ledger is under its lock. */
  if (dom->uuid && !(ledger = ovl_ledger_open (cfg->state_dir, dom->uuid, deadline)))
    goto fail;
  if (dom_facts (cfg, dom, ledger, reason, &df) == -1)
    goto fail;

  switch (op) {
  case OVL_OP_PREPARE: {
    CLEANUP_FREE struct ovl_request *reqs = ovl_calloc (dom->ndisks, sizeof *reqs);
    CLEANUP_FREE struct ovl_result *res = ovl_calloc (dom->ndisks, sizeof *res);
    CLEANUP_FREE const struct ovl_disk **which = ovl_calloc (dom->ndisks, sizeof *which);
    CLEANUP_FREE const struct ovl_disk **adopt = ovl_calloc (dom->ndisks, sizeof *adopt);
    CLEANUP_FREE struct ovl_file_id *adopt_id = ovl_calloc (dom->ndisks, sizeof *adopt_id);
    struct prepare p = {
      .cfg = cfg, .dom = dom, .ledger = ledger, .o = o, .reqs = reqs, .res = res,
      .which = which, .adopt = adopt, .adopt_id = adopt_id,
    };

    if (!reqs || !res || !which || !adopt || !adopt_id)
      goto fail;
    o->status = run_prepare (&p, &df, deadline);
    for (i = 0; i < p.n; i++)
      ovl_result_clear (&res[i]);
    return o->status;
  }
  case OVL_OP_RELEASE:
    if (!ledger)
      return 0;
    {
      bool kept = false;

      run_release (cfg, ledger, dom->uuid, &df, o, &kept);
      /* What a restore from a file needs stays: gc must tell it from a
       * leftover. */
      ledger->saved = (df.saved || kept) && ledger->n > 0;
    }
    if (ovl_ledger_save (ledger) == -1)
      say (o, "release: %s", ovl_error_msg ());
    return 0;                   /* libvirt ignores it, the domain is gone */
  case OVL_OP_RESTORE:
  case OVL_OP_MIGRATE:
    for (i = 0; i < dom->ndisks; i++) {
      const struct ovl_disk *k = &dom->disks[i];
      struct ovl_disk_facts f = { .mode = k->mode, .presence = OVL_ABSENT };
      struct ovl_file_id found = { 0 };
      struct ovl_decision d;
      const struct ovl_ledger_entry *e = ledger ? ovl_ledger_find (ledger, k->overlay) : NULL;

      if (e && e->persistent != (k->mode == OVL_MODE_PERSISTENT))
        e = NULL;
      if (op == OVL_OP_MIGRATE &&
          disk_facts (cfg, k->mode, k->overlay, e,
                      k->mode == OVL_MODE_EPHEMERAL ? dom->uuid : NULL, false, &f,
                      &found) == -1) {
        say (o, "disk %s: %s", k->target, ovl_error_msg ());
        o->status = 1;
        continue;
      }
      d = ovl_lifecycle_decide (op, &df, &f);
      if (d.action == OVL_ACT_REFUSE) {
        say_refusal (o, &dom->disks[i], d.why);
        o->status = 1;
      }
    }
    if (o->status || !ledger)
      return o->status;
    if (op == OVL_OP_RESTORE)
      ledger->restore_pending = (long long) time (NULL);
    else
      ledger->migration_pending = (long long) time (NULL);
    if (ovl_ledger_save (ledger) == -1)
      goto fail;
    return 0;
  }
 fail:
  say (o, "%s%s", op == OVL_OP_RELEASE ? "release: " : "", ovl_error_msg ());
  o->status = op == OVL_OP_RELEASE ? 0 : 1;
  return o->status;
}
