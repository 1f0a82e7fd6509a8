/* The warm pool: ready overlays kept per base image and option set, so
 * that a domain start is a rename instead of a round trip to qsd.
 *
 * Layout, inside each overlay directory (same filesystem, so handing one
 * out is ovl_publish_noreplace: a rename, or a link and an unlink):
 *
 *   DIR/.virt-overlay-pool/HASH/key              the exact key, one line
 *   DIR/.virt-overlay-pool/HASH/lock             one refiller at a time
 *   DIR/.virt-overlay-pool/HASH/ready-ID-N.qcow2 ID random, not a pid
 *
 * The key names the base path and what the base file is (device, inode,
 * size, mtime) plus backing format, cluster size, lazy refcounts,
 * extended L2 and virtual size: a pooled overlay is only handed out for
 * exactly that request.  A base that changed gives another key, and the
 * refiller discards the pools of its old self.  Pooled files belong to
 * nobody until handed out; a refiller that dies leaves only temporary
 * files, which the next caller removes once their lock is free (see
 * overlay.h).  A taker holds a pooled file's flock while it moves it, so
 * that two takers never both link it; a pooled file with a second name
 * (a take that died between link and unlink: it may be a domain's disk)
 * is never handed out, its pool name is removed.
 */
#ifndef OVL_POOL_H
#define OVL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "overlay.h"

#define OVL_POOL_DIR ".virt-overlay-pool"

/* The pool as the engine's supplier of ready overlays (overlay.h), or
 * NULL when CFG keeps no pool.  A claim locks a ready file (flock: other
 * takers skip it, across pid namespaces and NFS clients alike) and knows
 * it by identity, with a token of its own; publishing moves it into
 * place; until then it is still in the pool, and a taker that dies
 * leaves it there, ready. */
const struct ovl_supplier *ovl_pool_supplier (const struct ovl_config *cfg);

/* Whether the pool R came from (RES) wants topping up: refills come in
 * batches, when a take left it at half or less (or it had nothing). */
bool ovl_pool_wants_refill (const struct ovl_config *cfg, const struct ovl_result *res);

/* Top up the pool of what TMPL asks for (base, format, options, size;
 * its .overlay is not used) in overlay directory DIR to cfg->pool_size,
 * through qsd.  LOCKFD is that pool's lock when the caller holds it
 * already (a refiller is handed it by whoever started it), else -1:
 * then it is taken here, and if another refiller holds it there is
 * nothing to do.  Returns how many overlays were made, or -1. */
long ovl_pool_fill (const struct ovl_config *cfg, const struct ovl_request *tmpl,
                    const char *dir, int lockfd, int64_t deadline);

/* The refiller: a program of its own in LIBEXECDIR (the environment
 * variable OVL_REFILL_ENV names another, for builds that are not
 * installed), run detached as
 *
 *   virt-overlay-refill --lock-fd 3 [OPTIONS] BASE DIR
 *
 * with the pool's lock as descriptor 3.  See hook/virt-overlay-refill.c. */
#define OVL_REFILL_PROGRAM "virt-overlay-refill"
#define OVL_REFILL_ENV "VIRT_OVERLAY_REFILL"

/* Start a refiller for each pool of REQS that wants one (RES says what
 * the engine took), without waiting for it: it runs in a session of its
 * own with stdio on /dev/null and only its lock, so that libvirt, which
 * reads the hook's output to EOF, does not wait for it either.  Each
 * pool's lock is taken here and handed down, so that of many domains
 * starting at once only one starts a refiller per pool.  0, or -1 with
 * the error set (no refill started for some pool: the overlays made are
 * fine, the pool will be topped up next time). */
int ovl_pool_refill_detached (const struct ovl_config *cfg, const struct ovl_request *reqs,
                              const struct ovl_result *res, size_t n);

/* One line per pool in every overlay directory: count and key
 * (a new string). */
char *ovl_pool_status (const struct ovl_config *cfg);
/* Remove every pooled overlay and its pool; returns how many, or -1.
 * A pool whose lock a refiller holds is left whole and counted in
 * *BUSY (if not NULL). */
long ovl_pool_flush (const struct ovl_config *cfg, long *busy);

/* ---- gc: what virt-overlay made and nobody needs any more ---- */

enum ovl_gc_action { OVL_GC_REMOVED, OVL_GC_WOULD_REMOVE, OVL_GC_LEFT };
/* One thing gc removed (or, with a dry run, would remove) or had to
 * leave: its kind ("overlay", "pool", ...), its path, and why. */
typedef void ovl_gc_say (void *opaque, enum ovl_gc_action action, const char *kind,
                         const char *path, const char *why);

/* The temporary files in directory FD (called PATH) whose maker is
 * gone: removed (or, with DRY_RUN, only named) through SAY. */
void ovl_gc_temps (int fd, const char *path, bool dry_run, ovl_gc_say *say, void *opaque);

/* Every pool that serves no key any more (its base changed or went,
 * or a first fill died before writing the key), and the temporary files
 * of dead refillers.  A pool a refill is filling is left to it.  0, or
 * -1 (error set) if the pools could not be listed. */
int ovl_pool_gc (const struct ovl_config *cfg, bool dry_run, ovl_gc_say *say, void *opaque);

#endif
