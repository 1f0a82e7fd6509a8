/* The ledger: which overlays this project created, per domain.
 *
 * One small file per domain UUID under STATE_DIR/domains/, replaced
 * atomically (temporary file, fsync, rename, fsync of the directory).  It
 * lives on persistent storage so that leftovers survive a host reboot.
 * A file is only ever removed when its path and its whole identity
 * (device, inode, birth time, token: see struct ovl_file_id) match an
 * entry: a file that was moved, replaced or belongs to someone else is
 * left alone.
 *
 * The domain name comes from the domain XML and can be megabytes long, so
 * the ledger is one JSON object, which no string can break out of
 * (version 2; optional keys may be absent, unknown keys are refused, so a
 * per-entry key can be added later without a format break):
 *
 *   {"virt-overlay-ledger":2,"domain":"NAME","restore-pending":UNIX-SECONDS,
 *    "migration-pending":UNIX-SECONDS,"saved":true,"restoring":"BOOT-ID",
 *    "overlays":[{"path":"/abs","dev":N,"ino":N,"btime":[SEC,NSEC],
 *                 "token":"32 lowercase hex digits",
 *                 "mode":"persistent","from-pool":true,
 *                 "adopted-from":"32 lowercase hex digits","restored":true}]}
 *
 * "domain", "restore-pending", "migration-pending", "saved", "restoring" and
 * each "token" are left out
 * when unknown or unset; "mode" is left out for an ephemeral overlay and
 * "from-pool" when false, "adopted-from" (the token an overlay an
 * incoming migration brought had on the source, before this host took
 * it) when there is none, "restored" (the take was a restore's, not a
 * migration's) when false (ledgers of releases that knew none of them
 * read the same; a "restore-pending" of older ones is true or false: true
 * reads as a mark long past).  Version 1 ledgers
 * of older releases ("# virt-overlay ledger 1", then "domain NAME",
 * "restore-pending" and "ephemeral DEV INO BIRTH-SEC BIRTH-NSEC PATH"
 * lines) are still read; the next save writes version 2.  Anything
 * malformed, truncated or not a regular file is refused as a whole, never
 * half-read.
 */
#ifndef OVL_LEDGER_H
#define OVL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct ovl_ledger_entry {
  char *path;
  struct ovl_file_id id;
  bool persistent;              /* a persistent overlay (else ephemeral) */
  bool from_pool;               /* handed out by the warm pool */
  char adopted_from[OVL_TOKEN_LEN + 1];  /* taken from a migration's source,
                                 * whose token this was; or "" */
  bool restored;                /* ... taken by a restore of a state saved
                                 * on the host of that token */
};

struct ovl_ledger {
  char *file;                   /* STATE_DIR/domains/UUID */
  int lockfd;                   /* STATE_DIR/domains/UUID.lock, held; or -1 */
  char *domain;
  long long restore_pending;    /* when (unix seconds) "restore begin" came, the
                                 * next prepare being the restore's; or 0 (1: it
                                 * came, in a ledger that did not say when) */
  long long migration_pending;  /* when (unix seconds) an incoming migration's
                                 * migrate begin came, or 0 */
  bool saved;                   /* it stopped to be saved to a file ("virsh
                                 * save"): its overlays wait for the restore */
  char restoring[OVL_BOOT_ID_LEN + 1];  /* the boot (its id) in which the
                                 * prepare of a restore of a state saved here
                                 * ran, its release not come yet; or "": a
                                 * release "failed" in that boot keeps the
                                 * overlays (gc does not read it) */
  struct ovl_ledger_entry *entries;
  size_t n, entries_cap;
};

/* The most a ledger file may hold: a domain name may be as long as the
 * domain XML libvirt accepts (4 MiB), escaped; 1024 entries. */
#define OVL_LEDGER_MAX_BYTES (16 * 1024 * 1024)
#define OVL_LEDGER_MAX_ENTRIES 1024

/* Load the ledger of UUID (validated by the caller); an absent file gives
 * an empty ledger. */
struct ovl_ledger *ovl_ledger_load (const char *state_dir, const char *uuid);
/* The same, under the exclusive lock of UUID's ledger, waited for until
 * DEADLINE: every read-modify-write of a ledger goes through this, so
 * that concurrent callers for one domain cannot lose each other's
 * entries.  The lock is held until ovl_ledger_free.  Lock files stay
 * (removing one would let two callers hold "the" lock at once). */
struct ovl_ledger *ovl_ledger_open (const char *state_dir, const char *uuid, int64_t deadline);
/* A and B record the same (what a reader without the lock saw is what
 * the lock holder sees). */
bool ovl_ledger_same (const struct ovl_ledger *a, const struct ovl_ledger *b);
/* Nothing recorded: no overlay, no pending restore or migration, not
 * saved. */
bool ovl_ledger_is_empty (const struct ovl_ledger *l);
/* The ledger in BUF (LEN bytes, either version), without any I/O; FILE
 * names it in errors and becomes its l->file. */
struct ovl_ledger *ovl_ledger_parse (const char *file, const char *buf, size_t len);
/* Write it back, always as version 2 (or remove the file when it holds
 * nothing). */
int ovl_ledger_save (struct ovl_ledger *l);
void ovl_ledger_free (struct ovl_ledger *l);
#define CLEANUP_LEDGER __attribute__((cleanup (ovl_ledger_cleanup)))
void ovl_ledger_cleanup (struct ovl_ledger **l);

/* Record PATH as the file ID (an ephemeral overlay not from the pool,
 * until the caller says otherwise), replacing an entry for PATH: the
 * entry, or NULL (error set). */
struct ovl_ledger_entry *ovl_ledger_add (struct ovl_ledger *l, const char *path,
                                         const struct ovl_file_id *id);
/* The entry for PATH, or NULL. */
struct ovl_ledger_entry *ovl_ledger_find (struct ovl_ledger *l, const char *path);
void ovl_ledger_remove (struct ovl_ledger *l, struct ovl_ledger_entry *e);

#endif
