/* The ledger: which ephemeral overlays this project created, per domain.
 *
 * One small text file per domain UUID under STATE_DIR/domains/, replaced
 * atomically (temporary file, fsync, rename, fsync of the directory).  It
 * lives on persistent storage so that leftovers survive a host reboot.
 * A file is only ever removed when its path, device and inode match an
 * entry: a file that was moved, replaced or belongs to someone else is
 * left alone.
 *
 *   # virt-overlay ledger 1
 *   domain NAME
 *   restore-pending
 *   ephemeral DEV INO BIRTH-SEC BIRTH-NSEC PATH
 */
#ifndef OVL_LEDGER_H
#define OVL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

struct ovl_ledger_entry {
  char *path;
  struct ovl_file_id id;
};

struct ovl_ledger {
  char *file;                   /* STATE_DIR/domains/UUID */
  char *domain;
  bool restore_pending;
  struct ovl_ledger_entry *entries;
  size_t n;
};

/* Load the ledger of UUID (validated by the caller); an absent file gives
 * an empty ledger. */
struct ovl_ledger *ovl_ledger_load (const char *state_dir, const char *uuid);
/* Write it back (or remove the file when it holds nothing). */
int ovl_ledger_save (struct ovl_ledger *l);
void ovl_ledger_free (struct ovl_ledger *l);
#define CLEANUP_LEDGER __attribute__((cleanup (ovl_ledger_cleanup)))
void ovl_ledger_cleanup (struct ovl_ledger **l);

int ovl_ledger_add (struct ovl_ledger *l, const char *path, const struct ovl_file_id *id);
/* The entry for PATH, or NULL. */
struct ovl_ledger_entry *ovl_ledger_find (struct ovl_ledger *l, const char *path);
void ovl_ledger_remove (struct ovl_ledger *l, struct ovl_ledger_entry *e);

#endif
