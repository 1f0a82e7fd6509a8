/* The lifecycle of a domain's overlays: what each libvirt hook operation
 * does to them.
 *
 * Two layers.  ovl_lifecycle_decide holds the rules and does no I/O: an
 * operation, what is known of the domain (a restore or an incoming
 * migration under way, a managed-save image, why it stopped) and of one
 * disk (its mode, what is at its overlay path, whether the ledger has it)
 * give one action.  ovl_lifecycle_run gathers those facts from the disk
 * and the ledger (under the ledger's lock), applies the actions (remove,
 * create through the engine with a write-ahead ledger entry, forget) and
 * reports one line per problem.  The hook keeps argv, stdin, printing and
 * the exit code.
 *
 * The rules, in short:
 *   prepare   a persistent overlay that exists is the disk; a missing one
 *             is made, except when the domain comes back from a saved
 *             state or an incoming migration (an empty overlay under a
 *             running guest would silently revert its disk to the base).
 *             An ephemeral overlay is made fresh at a cold boot (ours is
 *             removed first; anyone else's is refused), kept as it is for
 *             a restore, and for an incoming migration taken over into
 *             this host's ledger if it is the one virt-overlay made for
 *             this domain (shared storage; its owner mark says so) and
 *             the source's QEMU holds it: it gets a new token, which the
 *             source's ledger does not know.
 *   release   our ephemeral overlays are removed, unless the domain was
 *             saved, migrated away (libvirt says so from 10.5 on), or a
 *             QEMU still holds the overlay's image lock (the entry stays:
 *             it is removed at a later stop).  One this host took from a
 *             migration's source that has not let go of it goes back:
 *             the source's token is given back and the entry goes (a
 *             migration that failed: the source runs on, and owns it
 *             again).  A source's release that finds its overlay taken
 *             lets go of it (a mark on the file) and drops its entry;
 *             only, the marks form a chain (see ovl_overlay_let_go), and
 *             where the chain forbids the mark the entry stays.  The
 *             pending marks are dropped.
 *   restore   marks the next prepare as a restore.
 *   migrate   (incoming) refuses a disk whose overlay is not on this
 *             host (no shared storage), and an ephemeral one that is not
 *             the one made for this domain; marks the next prepare as a
 *             migration's for OVL_MIGRATION_MARK_SECONDS at most.
 *
 * So the ledger that owns an ephemeral overlay is the one whose entry has
 * the token the file has: the source's until the destination's prepare,
 * the destination's from then on (the source's release finds another
 * token and drops its entry), or the source's again if the destination
 * gives the token back at the release of a failed migration.
 */
#ifndef OVL_LIFECYCLE_H
#define OVL_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "domxml.h"
#include "ledger.h"

enum ovl_op { OVL_OP_PREPARE, OVL_OP_RELEASE, OVL_OP_RESTORE, OVL_OP_MIGRATE };

/* libvirt runs "migrate begin" and the prepare of the same incoming
 * migration within moments; a mark older than this belongs to a
 * migration that failed before its prepare. */
#define OVL_MIGRATION_MARK_SECONDS 120
/* A migration mark set at WHEN (unix seconds; 0: none) still holds; so
 * does a restore's ("restore begin" and its prepare come as close). */
bool ovl_migration_mark_fresh (long long when);

struct ovl_dom_facts {
  bool restore_pending;         /* "restore begin" came before this prepare */
  bool migration_pending;       /* "migrate begin" came, recently */
  bool managed_save;            /* libvirt holds a managed-save image */
  bool saved;                   /* release: the reason was "saved", or "failed"
                                 * after a restore of a state saved here */
  bool migrated;                /* release: the reason was "migrated" */
  bool ran;                     /* release: a reason other than "failed" (the
                                 * domain ran: a restore went through) */
  bool failed;                  /* release: the reason was "failed" */
};

/* What is at a disk's overlay path, against the ledger's entry. */
enum ovl_presence {
  OVL_ABSENT,                   /* nothing */
  OVL_OURS,                     /* the very file the ledger records */
  OVL_FOREIGN,                  /* something else (or no entry to tell) */
};

struct ovl_disk_facts {
  enum ovl_mode mode;
  enum ovl_presence presence;
  bool in_ledger;
  bool made_for_domain;         /* not ours, but a file virt-overlay made as this
                                 * domain's ephemeral overlay */
  bool in_use;                  /* (ours, or made for it) a QEMU holds its image lock */
  bool adopted;                 /* the entry is of a file taken from a migration's
                                 * source, which has not let go of it */
};

enum ovl_action {
  OVL_ACT_USE,                  /* leave what is there: it is the disk */
  OVL_ACT_CREATE,               /* make the overlay */
  OVL_ACT_RECREATE,             /* remove our overlay, make a fresh one */
  OVL_ACT_REMOVE,               /* remove our overlay and its entry */
  OVL_ACT_FORGET,               /* drop the entry, touch no file */
  OVL_ACT_ADOPT,                /* leave what is there, take it (a new token), record it */
  OVL_ACT_HAND_BACK,            /* give the source's token back, drop the entry */
  OVL_ACT_REFUSE,               /* fail the operation for this disk */
};

enum ovl_why {
  OVL_WHY_NONE,
  OVL_WHY_FOREIGN,              /* an ephemeral overlay we did not make is there */
  OVL_WHY_RESTORE_MISSING,      /* a saved state cannot run on a fresh disk */
  OVL_WHY_MIGRATION_MISSING,    /* an incoming guest cannot run on a fresh disk */
  OVL_WHY_NOT_MADE_FOR,         /* an incoming ephemeral overlay is not provably ours */
  OVL_WHY_NOT_HELD,             /* ... nor held by the source's QEMU */
  OVL_WHY_IN_USE,               /* a QEMU runs on the overlay a restore needs */
  OVL_WHY_HELD_ELSEWHERE,       /* a cold start finds one made for the domain
                                 * under a token another host holds */
};

struct ovl_decision {
  enum ovl_action action;
  enum ovl_why why;             /* for OVL_ACT_REFUSE */
  bool forget;                  /* also drop the disk's ledger entry */
};

/* The rule for one disk (for release: one ledger entry). */
struct ovl_decision ovl_lifecycle_decide (enum ovl_op op, const struct ovl_dom_facts *dom,
                                          const struct ovl_disk_facts *disk);

/* Whether ledger entry E is a take from a migration's source that never
 * let go of it, its file still the one taken: then it is owed back
 * (release does so, and so does "virt-overlay gc").  1 owed back, 0 not,
 * -1 it cannot be told (error set). */
int ovl_lifecycle_owed_back (const struct ovl_config *cfg, const struct ovl_ledger_entry *e);

/* Ledger entry E's file, made for domain UUID, carries another token
 * (FOUND, as read): the host the domain migrated to took it.  Mark it
 * let go of (see ovl_overlay_let_go: only where the last mark is of the
 * host E was taken from, so a late mark never stands for a claim that
 * was not settled, nor overwrites a later holder's), unless its token is
 * the one E was taken from (a take that never happened, or a file given
 * back: still the source's), or the file is not the one E names (a take
 * changes the token only).  RAN: the release says the domain ran on
 * here (see ovl_dom_facts): a restore's take is settled then, the
 * state saved on the host it was taken from being stale, and is let go
 * of whatever the last mark (no later holder marks before this one).
 * 1 let go: E can go; 0 not E's to let go of: E can go; 2 not marked:
 * E must stay, should the file come back to its token; -1 (error
 * set): E stays. */
int ovl_lifecycle_let_go_taken (const struct ovl_config *cfg, const struct ovl_ledger_entry *e,
                                const char *uuid, const struct ovl_file_id *found, bool ran);

const char *ovl_op_name (enum ovl_op op);
const char *ovl_action_name (enum ovl_action a);
const char *ovl_why_name (enum ovl_why w);

/* What ovl_lifecycle_run did. */
struct ovl_outcome {
  int status;                   /* 0, or 1: libvirt must not go on */
  char **lines;                 /* one line per problem ("disk vda: ..."): */
  size_t nlines;                /* errors when status is 1, else warnings */
  size_t lines_cap;
  char **done;                  /* one line per thing done ("disk vda: ... made") */
  size_t ndone, done_cap;
  bool lost;                    /* a line could not be kept (out of memory) */
  size_t created, removed;      /* overlays made and removed */
};
void ovl_outcome_clear (struct ovl_outcome *o);

/* libvirt keeps a managed-save image of domain NAME at
 * managed_save_dir/NAME.save: 1 it does, 0 it does not, -1 it cannot be
 * told (error set). */
int ovl_managed_save_exists (const struct ovl_config *cfg, const char *name);

/* Carry out OP for DOM.  REASON is libvirt's shutoff reason (release),
 * or NULL.  Everything ends by DEADLINE.  Returns o->status. */
int ovl_lifecycle_run (const struct ovl_config *cfg, enum ovl_op op,
                       const struct ovl_domain *dom, const char *reason,
                       int64_t deadline, struct ovl_outcome *o);

#endif
