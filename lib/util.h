/* Small shared helpers: monotonic deadlines, a growable string buffer,
 * checked allocation and whole-number parsing.
 */
#ifndef OVL_UTIL_H
#define OVL_UTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t ovl_now_ms (void);
/* Milliseconds left until DEADLINE (>= 0), for poll(2); -1 if DEADLINE < 0 (none). */
int ovl_ms_left (int64_t deadline);

/* Take flock(2) OP (LOCK_SH or LOCK_EX) on FD, waiting no later than
 * DEADLINE (ovl_now_ms() scale; -1 waits for ever).  flock works across
 * pid namespaces, and NFS clients emulate it with POSIX locks, so
 * callers on other hosts see it too.  0 locked; -1 with the error set,
 * naming WHAT ("still held by another caller" when the deadline came). */
int ovl_flock_until (int fd, int op, int64_t deadline, const char *what);

struct ovl_buf {
  char *data;
  size_t len, cap;
};
#define OVL_BUF_INIT { NULL, 0, 0 }

int ovl_buf_append (struct ovl_buf *b, const void *data, size_t len);
int ovl_buf_printf (struct ovl_buf *b, const char *fmt, ...)
  __attribute__((format (printf, 2, 3)));
/* Drop the first N bytes. */
void ovl_buf_consume (struct ovl_buf *b, size_t n);
void ovl_buf_reset (struct ovl_buf *b);
/* Hand out the NUL-terminated contents; the buffer is emptied. */
char *ovl_buf_steal (struct ovl_buf *b);

/* Parse an unsigned decimal integer, no sign, no trailing junk. */
int ovl_parse_u64 (const char *s, uint64_t *out);
/* "on"/"yes"/"true"/"1" and "off"/"no"/"false"/"0". */
int ovl_parse_bool (const char *s, bool *out);

#define OVL_TOKEN_LEN 32
#define OVL_TOKEN_XATTR "trusted.virt-overlay.id"

/* Which file this is, robustly: device and inode numbers are reused as
 * soon as a file is deleted, so the birth time (statx) is part of it
 * where the filesystem records one (0 otherwise).  It survives the chown
 * libvirt does at start and stop, unlike ctime. */
struct ovl_file_id {
  uint64_t dev, ino;
  int64_t btime_sec;
  uint32_t btime_nsec;
  /* A random mark virt-overlay puts on a file it makes, in a trusted.*
   * extended attribute that only root can set: 32 hex digits, or "" where
   * the filesystem has no such attributes. */
  char token[OVL_TOKEN_LEN + 1];
};
/* Of NAME in DIRFD (not following a symlink), or of DIRFD itself when
 * NAME is "", token included for a regular file.  -1 with errno set. */
int ovl_file_id_at (int dirfd, const char *name, struct ovl_file_id *id, bool *is_reg);
/* Open NAME in DIRFD read-only into *FD only if it is a regular file
 * (not following a symlink): nothing else is ever opened, not even for
 * a moment, so no device or FIFO sees an open.  1 opened, 0 not a
 * regular file or not there, -1 (errno set). */
int ovl_open_regular_at (int dirfd, const char *name, int *fd);
/* Whether NAME in DIRFD (not following a symlink) is the regular file
 * open as FD: 1 yes, 0 no (or no such name), -1 with errno set when it
 * cannot be told. */
int ovl_fd_is_at (int fd, int dirfd, const char *name);
/* The same file: device, inode and birth time (a token may differ). */
bool ovl_file_id_same_file (const struct ovl_file_id *a, const struct ovl_file_id *b);
/* Every part equal, the token included. */
bool ovl_file_id_equal (const struct ovl_file_id *a, const struct ovl_file_id *b);
/* An identity a user cannot forge by making a new file: it has a birth
 * time or a token.  Device and inode alone are reused at once. */
bool ovl_file_id_is_strong (const struct ovl_file_id *id);
/* Mark the file open as FD with a new random token (stored in ID->token).
 * 0 marked, 1 the filesystem keeps no trusted attributes (token ""), -1
 * error with the error set. */
int ovl_file_id_mark (int fd, struct ovl_file_id *id);
/* The same, replacing a token the file may have: a pooled overlay gets
 * a new one each time it is claimed, so that an identity recorded for a
 * claim that was abandoned (a crash before publishing) never matches
 * the file once another take has it. */
int ovl_file_id_remark (int fd, struct ovl_file_id *id);

/* The domain (its UUID) a file was made for, in a trusted.* attribute
 * beside the token: on shared storage another host's virt-overlay can
 * tell that an overlay a migration brings is one virt-overlay made for
 * that very domain, which its own ledger cannot. */
#define OVL_OWNER_XATTR "trusted.virt-overlay.owner"
/* Mark the file open as FD as made for OWNER, or, OWNER NULL, for no
 * domain (a mark it had goes).  0 (also where the filesystem keeps no
 * trusted attributes: nothing is marked), or -1 with the error set. */
int ovl_file_set_owner (int fd, const char *owner);
/* Whether the regular file open as FD is marked as made for OWNER: 1
 * yes, 0 no, -1 with errno set. */
int ovl_file_owner_is (int fd, const char *owner);
/* Whether extended attribute NAME of the file open as FD is VALUE: 1
 * yes, 0 no (or none), -1 with errno set. */
int ovl_file_xattr_is (int fd, const char *name, const char *value);
/* Set by the source of a migration on an ephemeral overlay the
 * destination took: its own token, which it no longer claims. */
#define OVL_RELEASED_XATTR "trusted.virt-overlay.released"

/* This boot of the kernel: /proc/sys/kernel/random/boot_id, 36
 * characters, into OUT.  A mark that says "in this boot" is stale after
 * a crash.  0, or -1 with the error set. */
#define OVL_BOOT_ID_LEN 36
int ovl_boot_id (char out[OVL_BOOT_ID_LEN + 1]);
/* Whether S looks like a boot id (8-4-4-4-12 lowercase hex digits). */
bool ovl_boot_id_valid (const char *s);

/* The whole of the file open as FD, at most MAX bytes, into *BUF (NUL-
 * terminated, LEN bytes): anything but a regular file is refused (a FIFO
 * would block for ever, a device never end), and so is a larger file.
 * WHAT names it in errors. */
int ovl_read_regular (int fd, const char *what, size_t max, char **buf, size_t *len);

/* Whether S holds a control character (< 0x20 or DEL). */
bool ovl_has_control (const char *s);

/* A directory stream of its own on DIRFD's directory (a fresh open of
 * "." so that its read position is not shared with DIRFD), or NULL. */
DIR *ovl_opendir_at (int dirfd);

/* NBYTES random bytes as 2*NBYTES hex digits and a NUL into OUT: names
 * that stay unique across pid namespaces and hosts, unlike pids. */
int ovl_random_hex (char *out, size_t nbytes);

/* The growable array, written once: make room in *PTRP (an array of
 * ELEM-byte items, *CAP of them allocated) for at least NEED items,
 * doubling from MIN, with every size checked for overflow.  0, or -1
 * with the error set ("out of memory"; *PTRP and *CAP unchanged).  The
 * macro takes the array itself: OVL_RESERVE (v, cap, n + 1, 16). */
int ovl_reserve (void *ptrp, size_t *cap, size_t need, size_t elem, size_t min);
#define OVL_RESERVE(ptr, cap, need, min) \
  ovl_reserve (&(ptr), &(cap), (need), sizeof *(ptr), (min))

/* mkdir -p: DIR (absolute) and every missing directory above it, with
 * MODE.  0, or -1 with the error set naming the directory. */
int ovl_mkdir_p (const char *dir, mode_t mode);

/* S without the white space at either end (S is changed in place). */
char *ovl_trim (char *s);

/* readdir, telling the end of D from a failure to read it: NULL at
 * either, and then *FAILED is set when it was a failure (errno set). */
struct dirent *ovl_readdir (DIR *d, bool *failed);

char *ovl_strdup (const char *s);
void *ovl_calloc (size_t n, size_t size);

#endif
