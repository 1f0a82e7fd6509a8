/* gc: remove what virt-overlay made that nobody needs any more.
 *
 *   - the ledgers of domains libvirt no longer knows (asked through a
 *     callback: this library never links libvirt), and the ephemeral
 *     overlays they record, each removed only if it is still the very
 *     file that was made (identity, as at release) and no QEMU holds it
 *     open; then the empty ledger and its lock file.  Persistent
 *     overlays are never removed (as "virsh undefine" keeps disks): they
 *     are reported, and forgotten;
 *   - temporary files whose maker is gone, at the top of each overlay
 *     directory and in each pool;
 *   - pools whose base changed or went.
 *
 * libvirt is asked first; then, under the domain's ledger lock (and
 * never asking libvirt there: libvirtd holds a domain's lock while its
 * hook runs, and the hook may be waiting for ours), the ledger must still
 * be what was asked about: one that a start changed meanwhile is left
 * to the next gc.  A domain with a managed-save image, saved to a file
 * (libvirt >= 10.5 says so at release) or being restored keeps
 * everything; an overlay that a domain libvirt knows uses as a disk
 * (a leftover taken over) is left to it.
 * Everything removed, and everything left that looked like garbage, is
 * reported with its reason; nothing is printed here.
 */
#ifndef OVL_GC_H
#define OVL_GC_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "pool.h"

struct ovl_gc_ops {
  /* Whether libvirt knows domain UUID: 1 it does, 0 it does not, -1 it
   * cannot tell (error set): then gc stops, removing nothing more. */
  int (*domain_known) (void *opaque, const char *uuid);
  /* Whether a domain libvirt knows uses PATH as a disk (its image or a
   * backing file): 1 (*WHO its name), 0 not, -1 cannot tell (error
   * set: gc stops).  Asked before an overlay is removed: a leftover
   * another domain now runs on is that domain's disk. */
  int (*path_used) (void *opaque, const char *path, const char **who);
  ovl_gc_say *say;
  void *opaque;
};

/* Everything above; with DRY_RUN, only reported as OVL_GC_WOULD_REMOVE.
 * Ledger locks are waited for until DEADLINE.  0, or -1 (error set)
 * when gc had to stop. */
int ovl_gc (const struct ovl_config *cfg, const struct ovl_gc_ops *ops, bool dry_run,
            int64_t deadline);

#endif
