/* The overlay engine: a batch of qcow2 overlays made by qemu-storage-daemon,
 * all or nothing, never touching a file it did not create.
 *
 * For each request we check the base (image.h) and the overlay path
 * (paths.h), create the overlay ourselves under a temporary name in its
 * directory (O_EXCL|O_NOFOLLOW, 0600: qsd's file driver would truncate an
 * existing file), mark it with a random token (a trusted.* attribute only
 * root can set), and have qsd format it.  qsd never opens a name: it gets
 * /proc/OURPID/fd/N, a link to the very inode we hold (qsd 7.2 has no
 * add-fd), so nobody can swap the file under it; a daemon in another pid
 * namespace than ours would resolve that name to another process, so
 * it is refused.  What is published is
 * checked to be that inode, before and after the rename.  The whole batch is one
 * pipelined QMP exchange per daemon: every blockdev-create at once (the
 * file node inline, so there is no node to add or delete), then the
 * JOB_STATUS_CHANGE "concluded" events, then one query-jobs for the
 * verdicts and every job-dismiss at once.  qsd's own
 * flushes are turned off (cache.no-flush); we fdatasync each file before
 * it becomes visible, move it into place without replacing anything
 * (ovl_publish_noreplace: renameat2(RENAME_NOREPLACE), or link and unlink
 * on NFS, CephFS and FUSE) and fsync the directory.  Any failure removes
 * every temporary file and leaves nothing at any final path.
 *
 * Leftovers of a caller that died are removed by the next one, judged by
 * locks, never by pids (a caller in a container or on another host shares
 * the directory or the daemon but not our pid namespace):
 * - a temporary file is flocked by its maker for its whole life, and
 *   removed by others only when that lock is free (paths.h);
 * - for its qsd jobs, a batch holds a flock on a file of its own beside
 *   the qsd socket, "SOCKET.caller-ID" (the socket's directory is shared
 *   by every caller of that daemon), with ID random; its job ids are
 *   "ovl-ID-SEQ".  A concluded job whose ID has no such file, or one
 *   nobody holds, is dismissed by whoever sees it.  The lock is taken
 *   before the first job is sent and dropped after the last is dismissed.
 */
#ifndef OVL_OVERLAY_H
#define OVL_OVERLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "image.h"
#include "util.h"

/* What is asked for one overlay. */
struct ovl_request {
  const char *base;
  enum ovl_format base_format;
  const char *overlay;
  uint64_t size;                /* 0: the base's virtual size */
  uint64_t cluster_size;
  bool lazy_refcounts;
  bool extended_l2;
  bool need_identity;           /* to be removed later (ephemeral): refuse a filesystem
                                 * where it could not be told from a replacement */
  const char *owner;            /* the UUID of the domain it is made for (marked on
                                 * the file, see OVL_OWNER_XATTR), or NULL */
};

/* What came of it.  Zeroed by the caller; ovl_result_clear frees it. */
struct ovl_result {
  char *error;                  /* why this request failed, or NULL */
  struct ovl_image base;        /* the base, as checked */
  uint64_t size;                /* the virtual size: the request's, or the base's */
  struct ovl_file_id made;      /* the overlay made, on success */
  bool taken;                   /* handed out by the supplier (the pool) */
  size_t left;                  /* ... which still holds that many (a lower bound) */
};

/* Fill the options of R from the configuration's defaults. */
void ovl_request_defaults (struct ovl_request *r, const struct ovl_config *cfg);
/* Set one option of R by the name the command lines use
 * ("backing-format", "cluster-size", "lazy-refcounts", "extended-l2",
 * "size") from its text.  0, or -1 (error set). */
int ovl_request_set_option (struct ovl_request *r, const char *name, const char *value);
void ovl_result_clear (struct ovl_result *res);

/* A source of ready overlays that the engine takes from before it asks
 * qsd (the warm pool, pool.h, provides one; the pool's own refills pass
 * none).  Taking is two steps, so that what is about to be published can
 * be recorded first (ovl_publish_hook): a claim holds a ready file and
 * knows its identity; publishing moves it into place. */
struct ovl_supplier {
  /* Claim a ready overlay for R, whose base RES has checked, to go into
   * directory DIRFD.  1 claimed (*CLAIM the supplier's handle, RES->made
   * the file's identity, RES->left how many stay), 0 none ready, -1
   * error (set). */
  int (*claim) (void *opaque, const struct ovl_request *r, struct ovl_result *res,
                int dirfd, void **claim);
  /* Give the claimed file the name NAME in DIRFD without replacing
   * anything (OVERLAY names it in errors).  0, or -1 with the error set
   * (the file stays with the supplier). */
  int (*publish) (void *opaque, void *claim, int dirfd, const char *name,
                  const char *overlay);
  /* Drop CLAIM, published or not. */
  void (*unclaim) (void *opaque, void *claim);
  void *opaque;
};

/* Called once each overlay of a batch exists under its temporary name,
 * durable, with every result's .made set (rename and link keep the
 * inode, so that is the identity of the overlay to be), before any is
 * published: the caller records what it is about to own (the write-ahead
 * ledger), so that a crash at any point after leaves nothing it cannot
 * recognise.  -1 (error set) aborts the batch; nothing is published. */
struct ovl_publish_hook {
  int (*fn) (void *opaque, const struct ovl_request *reqs,
             const struct ovl_result *res, size_t n);
  void *opaque;
};

struct ovl_create_opts {
  const struct ovl_supplier *supplier;   /* NULL: every overlay through qsd */
  const struct ovl_publish_hook *before; /* NULL: nothing to record */
  bool reserved_names;          /* the pool's own files: paths through
                                 * OVL_RESERVED names are allowed */
};

/* Make every overlay of REQS or none; RES[i] says what came of REQS[i].
 * OPTS may be NULL.  Returns 0, or -1 with the error of each failed
 * request in its result (and the first in ovl_error). */
int ovl_overlay_create (const struct ovl_config *cfg, const struct ovl_request *reqs,
                        struct ovl_result *res, size_t n, int64_t deadline,
                        const struct ovl_create_opts *opts);

/* Only the checks that need no daemon (base, path, options), each
 * failure in its result's .error; nothing is created.  0 or -1. */
int ovl_overlay_check (const struct ovl_config *cfg, const struct ovl_request *reqs,
                       struct ovl_result *res, size_t n);

/* Check only the base of R into RES (base and size).  RESERVED_NAMES as
 * in ovl_create_opts.  0 or -1 (error set, and in RES->error). */
int ovl_request_check_base (const struct ovl_config *cfg, const struct ovl_request *r,
                            struct ovl_result *res, bool reserved_names);

/* What is at PATH (in the overlay directories, reached without
 * symlinks) against ID (NULL: no record of it): */
enum {
  OVL_PRESENCE_ABSENT,          /* nothing, or a directory on the way is gone */
  OVL_PRESENCE_OURS,            /* the regular file ID, provably (see ovl_file_id_is_strong) */
  OVL_PRESENCE_OTHER,           /* anything else */
};
/* One of those, or -1 when it cannot be told (error set: the path is no
 * longer allowed, a symlink on the way, an I/O error). */
int ovl_overlay_presence (const struct ovl_config *cfg, const char *path,
                          const struct ovl_file_id *id);

/* Whether PATH (reached as for ovl_overlay_presence, with no name
 * reserved for virt-overlay) is a regular file of one link that
 * virt-overlay made for domain OWNER as an ephemeral overlay: it carries
 * a token and OWNER's mark, trusted attributes only root can set.  1
 * yes, with its identity in *ID; 0 no (absent, anything else); -1 when
 * it cannot be told (error set). */
int ovl_overlay_made_for (const struct ovl_config *cfg, const char *path, const char *owner,
                          struct ovl_file_id *id);

/* Take over PATH, still the file SEEN made for OWNER (as found by
 * ovl_overlay_made_for), for this host's ledger: give it the token
 * TOKEN, which the ledger of the host it came from does not know (that
 * host's release then leaves it).  Record TOKEN durably first.  1 taken,
 * 0 no longer that file, -1 error set. */
int ovl_overlay_take (const struct ovl_config *cfg, const char *path, const char *owner,
                      const struct ovl_file_id *seen, const char *token);

/* The source's answer: PATH, made for OWNER and since taken by another
 * host, is marked as let go by the holder of token MINE (so that the
 * taker removes it at its stop, or keeps it while held, rather than give
 * it back).  Only if the mark there now is AFTER, the token MINE's
 * holder took it from ("" for none: it made the file), or MINE itself:
 * a claim whose own source never let go, or a later holder's mark, is
 * never marked over.  AFTER NULL: whatever the mark (a take that is
 * settled by itself; no later holder marks before MINE is there).  1 marked, 0 not such a file, 2 not marked (the
 * mark is another's), -1 error set. */
int ovl_overlay_let_go (const struct ovl_config *cfg, const char *path, const char *owner,
                        const char *mine, const char *after);

/* Whether PATH, if still the regular file ID, was let go of by the
 * holder of token PREV: 1 yes, 0 no, -1 error set. */
int ovl_overlay_was_let_go (const struct ovl_config *cfg, const char *path,
                            const struct ovl_file_id *id, const char *prev);

/* Give PATH, if it is still the regular file ID, the token PREV back
 * (the host it was taken from owns it again).  1 done, 0 not that file,
 * -1 error set. */
int ovl_overlay_hand_back (const struct ovl_config *cfg, const char *path,
                           const struct ovl_file_id *id, const char *prev);

/* Whether a QEMU holds its image lock on PATH (reached as for
 * ovl_overlay_presence): 1 yes, 0 no (or nothing there), -1 when it
 * cannot be told (error set). */
int ovl_overlay_in_use (const struct ovl_config *cfg, const char *path);

/* Remove PATH (in the overlay directories, reached without symlinks) only
 * if it is still the regular file ID.  1 removed, 0 absent or not that
 * file (left alone), -1 error. */
int ovl_overlay_remove_owned (const struct ovl_config *cfg, const char *path,
                              const struct ovl_file_id *id);

/* Node names, job ids and temporary files carry this prefix.  Path
 * components starting with OVL_RESERVED (temporary files, the pool) are
 * refused in requests from outside. */
#define OVL_NAME_PREFIX "ovl-"
#define OVL_TMP_PREFIX ".virt-overlay-"
#define OVL_RESERVED ".virt-overlay"

#endif
