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

/* Handing out is two steps, so that the caller can record what it is
 * about to own before it is published (the write-ahead ledger).  A
 * claimed file is locked (flock: other takers skip it, across pid
 * namespaces and NFS clients alike) and known by identity; publishing
 * moves it into place; until then it is still in the pool, and a taker
 * that dies leaves it there, ready. */
struct ovl_pool_claim {
  int pfd;                      /* the pool directory */
  int fd;                       /* the claimed file, flocked */
  char name[64];                /* its name there ("" once published) */
};
#define OVL_POOL_CLAIM_INIT { -1, -1, "" }
/* Claim a ready overlay for R (checked), to go into directory DIRFD.
 * 1 claimed (*ID its identity, *LEFT how many stay ready), 0 none ready,
 * -1 error. */
int ovl_pool_claim (const struct ovl_request *r, int dirfd, struct ovl_pool_claim *c,
                    struct ovl_file_id *id, size_t *left);
/* Move it to DIRFD/NAME (OVERLAY names it in errors), never replacing
 * anything.  0, or -1 with the error set (it stays in the pool). */
int ovl_pool_publish (struct ovl_pool_claim *c, int dirfd, const char *name,
                      const char *overlay);
/* Let the claim go. */
void ovl_pool_unclaim (struct ovl_pool_claim *c);

/* Whether R's pool wants topping up: refills come in batches, when a
 * take left it at half or less (or it had nothing for R). */
bool ovl_pool_wants_refill (const struct ovl_config *cfg, const struct ovl_request *r);

/* Top up the pool of each request's key to cfg->pool_size, through qsd.
 * Requests are examples of what to pool (their .overlay gives the
 * directory); nothing of theirs is touched. */
int ovl_pool_fill (const struct ovl_config *cfg, const struct ovl_request *reqs,
                   size_t n, int64_t deadline);
/* The same in a fully detached process (this program run again with
 * OVL_POOL_FILL_ARG); returns at once. */
void ovl_pool_fill_detached (const struct ovl_config *cfg, const struct ovl_request *reqs,
                             size_t n);
#define OVL_POOL_FILL_ARG "--pool-fill"
/* main() of that process: argv[1] is OVL_POOL_FILL_ARG. */
int ovl_pool_fill_main (int argc, char **argv);

/* One line per pool in every overlay directory: count and key
 * (a new string). */
char *ovl_pool_status (const struct ovl_config *cfg);
/* Remove every pooled overlay; returns how many, or -1. */
long ovl_pool_flush (const struct ovl_config *cfg);

#endif
