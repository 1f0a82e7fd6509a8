/* The ledger of created overlays; see ledger.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "ledger.h"
#include "util.h"

#define LEDGER_V1_HEADER "# virt-overlay ledger 1"
#define MAX_ENTRIES OVL_LEDGER_MAX_ENTRIES

void
ovl_ledger_free (struct ovl_ledger *l)
{
  size_t i;
  if (!l)
    return;
  for (i = 0; i < l->n; i++)
    free (l->entries[i].path);
  free (l->entries);
  free (l->file);
  free (l->domain);
  if (l->lockfd >= 0)
    close (l->lockfd);          /* releases the lock */
  free (l);
}

void
ovl_ledger_cleanup (struct ovl_ledger **l)
{
  ovl_ledger_free (*l);
}

struct ovl_ledger_entry *
ovl_ledger_add (struct ovl_ledger *l, const char *path, const struct ovl_file_id *id)
{
  struct ovl_ledger_entry *e = ovl_ledger_find (l, path);

  if (!e) {
    if (l->n == MAX_ENTRIES) {
      ovl_error ("ledger %s is full", l->file);
      return NULL;
    }
    if (OVL_RESERVE (l->entries, l->entries_cap, l->n + 1, 8) == -1)
      return NULL;
    e = &l->entries[l->n];
    if (!(e->path = ovl_strdup (path)))
      return NULL;
    l->n++;
  }
  e->id = *id;
  e->persistent = false;
  e->from_pool = false;
  e->adopted_from[0] = '\0';
  e->restored = false;
  return e;
}

struct ovl_ledger_entry *
ovl_ledger_find (struct ovl_ledger *l, const char *path)
{
  size_t i;
  for (i = 0; i < l->n; i++)
    if (strcmp (l->entries[i].path, path) == 0)
      return &l->entries[i];
  return NULL;
}

void
ovl_ledger_remove (struct ovl_ledger *l, struct ovl_ledger_entry *e)
{
  free (e->path);
  *e = l->entries[--l->n];
}

static struct ovl_ledger *
ledger_new (const char *file)
{
  struct ovl_ledger *l = ovl_calloc (1, sizeof *l);

  if (!l)
    return NULL;
  l->lockfd = -1;
  if (!(l->file = ovl_strdup (file))) {
    ovl_ledger_free (l);
    return NULL;
  }
  return l;
}

/* Like ovl_ledger_add, but a second entry for one path is corruption. */
static struct ovl_ledger_entry *
add_entry (struct ovl_ledger *l, const char *path, const struct ovl_file_id *id)
{
  if (path[0] != '/') {
    ovl_error ("ledger %s: corrupt: overlay path '%s' is not absolute", l->file, path);
    return NULL;
  }
  if (ovl_ledger_find (l, path)) {
    ovl_error ("ledger %s: corrupt: '%s' is listed twice", l->file, path);
    return NULL;
  }
  return ovl_ledger_add (l, path, id);
}

static bool
valid_token (const char *t)
{
  size_t n = strspn (t, "0123456789abcdef");
  return t[n] == '\0' && (n == 0 || n == OVL_TOKEN_LEN);
}

/* ---- version 2: one JSON object ---- */

/* Check that OBJ is an object whose keys are all in KNOWN, once each. */
static int
check_keys (const struct ovl_ledger *l, const struct ovl_json *obj,
            const char *const *known, size_t nknown, const char *what)
{
  unsigned seen = 0;
  size_t i, k;

  if (!obj || obj->type != OVL_JSON_OBJECT) {
    ovl_error ("ledger %s: corrupt: %s is not an object", l->file, what);
    return -1;
  }
  for (i = 0; i < obj->u.c.n; i++) {
    for (k = 0; k < nknown && strcmp (obj->u.c.keys[i], known[k]) != 0; k++)
      ;
    if (k == nknown || (seen & (1u << k))) {
      ovl_error ("ledger %s: corrupt: %s key '%s' in %s", l->file,
                 k == nknown ? "unknown" : "repeated", obj->u.c.keys[i], what);
      return -1;
    }
    seen |= 1u << k;
  }
  return 0;
}

static int
bad_field (const struct ovl_ledger *l, const char *key, size_t i)
{
  ovl_error ("ledger %s: corrupt: bad or missing \"%s\" in overlay %zu", l->file, key, i);
  return -1;
}

static int
parse_v2_entry (struct ovl_ledger *l, const struct ovl_json *e, size_t i)
{
  static const char *const known[] = {
    "path", "dev", "ino", "btime", "token", "mode", "from-pool", "adopted-from", "restored",
  };
  const struct ovl_json *bt = ovl_json_get (e, "btime");
  const struct ovl_json *tok = ovl_json_get (e, "token");
  const struct ovl_json *mode = ovl_json_get (e, "mode");
  const struct ovl_json *pool = ovl_json_get (e, "from-pool");
  const struct ovl_json *from = ovl_json_get (e, "adopted-from");
  const struct ovl_json *restored = ovl_json_get (e, "restored");
  struct ovl_ledger_entry *entry;
  struct ovl_file_id id = { 0 };
  const char *path;
  long long sec, nsec;

  if (check_keys (l, e, known, sizeof known / sizeof known[0], "an overlay") == -1)
    return -1;
  if (!(path = ovl_json_get_string (e, "path")))
    return bad_field (l, "path", i);
  if (ovl_json_get_u64 (e, "dev", &id.dev) == -1)
    return bad_field (l, "dev", i);
  if (ovl_json_get_u64 (e, "ino", &id.ino) == -1)
    return bad_field (l, "ino", i);
  if (!bt || bt->type != OVL_JSON_ARRAY || ovl_json_array_len (bt) != 2 ||
      ovl_json_get_int (ovl_json_array_at (bt, 0), "", &sec) == -1 ||
      ovl_json_get_int (ovl_json_array_at (bt, 1), "", &nsec) == -1 ||
      nsec < 0 || nsec > 999999999)
    return bad_field (l, "btime", i);
  id.btime_sec = sec;
  id.btime_nsec = (uint32_t) nsec;
  if (tok) {
    if (tok->type != OVL_JSON_STRING || !valid_token (tok->u.s))
      return bad_field (l, "token", i);
    strcpy (id.token, tok->u.s);
  }
  if (mode && (mode->type != OVL_JSON_STRING || (strcmp (mode->u.s, "ephemeral") != 0 &&
                                                  strcmp (mode->u.s, "persistent") != 0)))
    return bad_field (l, "mode", i);
  if (pool && pool->type != OVL_JSON_BOOL)
    return bad_field (l, "from-pool", i);
  if (from && (from->type != OVL_JSON_STRING || !valid_token (from->u.s)))
    return bad_field (l, "adopted-from", i);
  if (restored && (restored->type != OVL_JSON_BOOL || !from))
    return bad_field (l, "restored", i);
  if (!(entry = add_entry (l, path, &id)))
    return -1;
  entry->persistent = mode && strcmp (mode->u.s, "persistent") == 0;
  entry->from_pool = pool && pool->u.b;
  if (from)
    strcpy (entry->adopted_from, from->u.s);
  entry->restored = restored && restored->u.b;
  return 0;
}

static int
parse_v2_object (struct ovl_ledger *l, const struct ovl_json *root)
{
  static const char *const known[] = {
    "virt-overlay-ledger", "domain", "restore-pending", "migration-pending", "saved",
    "restoring", "overlays",
  };
  const struct ovl_json *sv = ovl_json_get (root, "saved");
  const struct ovl_json *rs = ovl_json_get (root, "restoring");
  const struct ovl_json *mp = ovl_json_get (root, "migration-pending");
  const struct ovl_json *dom = ovl_json_get (root, "domain");
  const struct ovl_json *rp = ovl_json_get (root, "restore-pending");
  const struct ovl_json *ov = ovl_json_get (root, "overlays");
  long long version;
  size_t i;

  if (check_keys (l, root, known, sizeof known / sizeof known[0], "the ledger") == -1)
    return -1;
  if (ovl_json_get_int (root, "virt-overlay-ledger", &version) == -1 || version != 2) {
    ovl_error ("ledger %s: corrupt: not a version 2 ledger", l->file);
    return -1;
  }
  if ((dom && dom->type != OVL_JSON_STRING) ||
      (rp && rp->type != OVL_JSON_BOOL && rp->type != OVL_JSON_INT) ||
      (sv && sv->type != OVL_JSON_BOOL) ||
      (rs && (rs->type != OVL_JSON_STRING || !ovl_boot_id_valid (rs->u.s))) ||
      !ov || ov->type != OVL_JSON_ARRAY) {
    ovl_error ("ledger %s: corrupt: \"domain\", \"restore-pending\", \"saved\", \"restoring\" or "
               "\"overlays\" of the wrong type", l->file);
    return -1;
  }
  if (ovl_json_array_len (ov) > MAX_ENTRIES) {
    ovl_error ("ledger %s: corrupt: more than %d overlays", l->file, MAX_ENTRIES);
    return -1;
  }
  if (dom && !(l->domain = ovl_strdup (dom->u.s)))
    return -1;
  /* Once a flag: true says it came, not when (a mark long past). */
  if (rp && rp->type == OVL_JSON_BOOL)
    l->restore_pending = rp->u.b ? 1 : 0;
  else if (rp && (ovl_json_get_int (root, "restore-pending", &l->restore_pending) == -1 ||
                  l->restore_pending < 0)) {
    ovl_error ("ledger %s: corrupt: bad \"restore-pending\"", l->file);
    return -1;
  }
  l->saved = sv && sv->u.b;
  if (rs)
    strcpy (l->restoring, rs->u.s);
  if (mp && (ovl_json_get_int (root, "migration-pending", &l->migration_pending) == -1 ||
             l->migration_pending <= 0)) {
    ovl_error ("ledger %s: corrupt: bad \"migration-pending\"", l->file);
    return -1;
  }
  for (i = 0; i < ovl_json_array_len (ov); i++)
    if (parse_v2_entry (l, ovl_json_array_at (ov, i), i) == -1)
      return -1;
  return 0;
}

static int
parse_v2 (struct ovl_ledger *l, const char *buf, size_t len)
{
  struct ovl_json_parser *p = ovl_json_parser_new (OVL_LEDGER_MAX_BYTES, 8);
  CLEANUP_FREE char *label = NULL;
  CLEANUP_JSON struct ovl_json *root = NULL;
  CLEANUP_JSON struct ovl_json *more = NULL;
  int r = -1;

  if (!p)
    goto out;
  if (asprintf (&label, "ledger %s", l->file) == -1) {
    label = NULL;
    ovl_error ("out of memory");
    goto out;
  }
  if (ovl_json_parser_set_label (p, label) == -1)
    goto out;
  if (ovl_json_parser_feed (p, buf, len) == -1 || ovl_json_parser_finish (p) == -1)
    goto out;
  root = ovl_json_parser_next (p);
  more = ovl_json_parser_next (p);
  if (!root || more) {
    ovl_error ("ledger %s: corrupt: %s", l->file,
               root ? "more than one JSON value" : "empty");
    goto out;
  }
  r = parse_v2_object (l, root);
 out:
  ovl_json_parser_free (p);
  return r;
}

/* ---- version 1: lines, split on '\n' over the whole buffer so that no
 * line can be cut in two and read as another ---- */

/* "DEV INO BIRTH-SEC BIRTH-NSEC PATH": single spaces, plain numbers. */
static int
parse_v1_ephemeral (struct ovl_ledger *l, char *rest)
{
  struct ovl_file_id id = { 0 };
  char *f[4];
  uint64_t sec, nsec;
  bool neg;
  size_t i;

  for (i = 0; i < 4; i++) {
    char *sp = strchr (rest, ' ');
    if (!sp || sp == rest)
      goto bad;
    *sp = '\0';
    f[i] = rest;
    rest = sp + 1;
  }
  neg = f[2][0] == '-';
  if (ovl_parse_u64 (f[0], &id.dev) == -1 || ovl_parse_u64 (f[1], &id.ino) == -1 ||
      ovl_parse_u64 (f[2] + neg, &sec) == -1 || sec > INT64_MAX ||
      ovl_parse_u64 (f[3], &nsec) == -1 || nsec > 999999999)
    goto bad;
  id.btime_sec = neg ? -(int64_t) sec : (int64_t) sec;
  id.btime_nsec = (uint32_t) nsec;
  return add_entry (l, rest, &id) ? 0 : -1;

 bad:
  ovl_error ("ledger %s: corrupt: unreadable version 1 \"ephemeral\" line", l->file);
  return -1;
}

static int
parse_v1_line (struct ovl_ledger *l, char *line)
{
  if (strcmp (line, "restore-pending") == 0 && !l->restore_pending) {
    l->restore_pending = 1;     /* it came, not said when */
    return 0;
  }
  if (strncmp (line, "domain ", 7) == 0 && !l->domain)
    return (l->domain = ovl_strdup (line + 7)) ? 0 : -1;
  if (strncmp (line, "ephemeral ", 10) == 0)
    return parse_v1_ephemeral (l, line + 10);
  ovl_error ("ledger %s: corrupt: unreadable version 1 line '%.64s'", l->file, line);
  return -1;
}

static int
parse_v1 (struct ovl_ledger *l, const char *buf, size_t len)
{
  CLEANUP_FREE char *copy = NULL;
  char *line, *nl;

  if (memchr (buf, '\0', len) || buf[len - 1] != '\n') {
    ovl_error ("ledger %s: corrupt: version 1 ledger with a NUL byte or cut short",
               l->file);
    return -1;
  }
  if (!(copy = malloc (len))) {
    ovl_error ("out of memory");
    return -1;
  }
  memcpy (copy, buf, len);
  /* The header line, then one line per item. */
  line = copy + strlen (LEDGER_V1_HEADER) + 1;
  for (; line < copy + len; line = nl + 1) {
    nl = memchr (line, '\n', (size_t) (copy + len - line));
    *nl = '\0';
    if (parse_v1_line (l, line) == -1)
      return -1;
  }
  return 0;
}

struct ovl_ledger *
ovl_ledger_parse (const char *file, const char *buf, size_t len)
{
  struct ovl_ledger *l = ledger_new (file);
  size_t hl = strlen (LEDGER_V1_HEADER);
  int r;

  if (!l)
    return NULL;
  if (len > hl && memcmp (buf, LEDGER_V1_HEADER "\n", hl + 1) == 0)
    r = parse_v1 (l, buf, len);
  else
    r = parse_v2 (l, buf, len);
  if (r == -1) {
    ovl_ledger_free (l);
    return NULL;
  }
  return l;
}

/* Read the whole of FILE into *BUF, refusing anything but a regular file
 * (a FIFO would block for ever, a device never end) and more than the
 * cap.  1 when there is no such file. */
static int
read_ledger_file (const char *file, char **buf, size_t *len)
{
  CLEANUP_CLOSE int fd = open (file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  CLEANUP_FREE char *what = NULL;

  if (fd == -1) {
    if (errno == ENOENT)
      return 1;
    if (errno == ELOOP)
      ovl_error ("ledger %s: is a symbolic link", file);
    else
      ovl_error ("ledger %s: %m", file);
    return -1;
  }
  if (asprintf (&what, "ledger %s", file) == -1) {
    what = NULL;
    ovl_error ("out of memory");
    return -1;
  }
  return ovl_read_regular (fd, what, OVL_LEDGER_MAX_BYTES, buf, len);
}

struct ovl_ledger *
ovl_ledger_load (const char *state_dir, const char *uuid)
{
  CLEANUP_FREE char *file = NULL;
  CLEANUP_FREE char *buf = NULL;
  size_t len = 0;
  int r;

  if (asprintf (&file, "%s/domains/%s", state_dir, uuid) == -1) {
    file = NULL;
    ovl_error ("out of memory");
    return NULL;
  }
  r = read_ledger_file (file, &buf, &len);
  if (r == -1)
    return NULL;
  if (r == 1)
    return ledger_new (file);
  return ovl_ledger_parse (file, buf ? buf : "", len);
}


struct ovl_ledger *
ovl_ledger_open (const char *state_dir, const char *uuid, int64_t deadline)
{
  CLEANUP_FREE char *dir = NULL, *lockfile = NULL;
  CLEANUP_CLOSE int fd = -1;
  struct ovl_ledger *l;

  if (asprintf (&dir, "%s/domains", state_dir) == -1 ||
      asprintf (&lockfile, "%s/%s.lock", dir, uuid) == -1) {
    ovl_error ("out of memory");
    return NULL;
  }
  if (ovl_mkdir_p (dir, 0700) == -1)
    return NULL;
  /* "virt-overlay gc" removes the lock file of a domain that is gone,
   * holding it: a lock taken on a name removed meanwhile is taken again
   * on the new file. */
  for (;;) {
    struct stat a, b;

    fd = open (lockfile, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd == -1) {
      ovl_error ("ledger lock %s: %m", lockfile);
      return NULL;
    }
    if (ovl_flock_until (fd, LOCK_EX, deadline, lockfile) == -1)
      return NULL;
    if (fstat (fd, &a) == -1) {
      ovl_error ("ledger lock %s: %m", lockfile);
      return NULL;
    }
    if (lstat (lockfile, &b) == 0) {
      if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        break;
    }
    else if (errno != ENOENT) {
      ovl_error ("ledger lock %s: %m", lockfile);
      return NULL;
    }
    close (fd);
    fd = -1;
  }
  if (!(l = ovl_ledger_load (state_dir, uuid)))
    return NULL;
  l->lockfd = OVL_STEAL_FD (fd);
  return l;
}

bool
ovl_ledger_same (const struct ovl_ledger *a, const struct ovl_ledger *b)
{
  size_t i;

  if (a->n != b->n || a->restore_pending != b->restore_pending ||
      a->migration_pending != b->migration_pending || a->saved != b->saved ||
      strcmp (a->restoring, b->restoring) != 0 ||
      (!a->domain) != (!b->domain) || (a->domain && strcmp (a->domain, b->domain) != 0))
    return false;
  for (i = 0; i < a->n; i++) {
    const struct ovl_ledger_entry *x = &a->entries[i], *y = &b->entries[i];
    if (strcmp (x->path, y->path) != 0 || !ovl_file_id_equal (&x->id, &y->id) ||
        x->persistent != y->persistent || x->from_pool != y->from_pool ||
        strcmp (x->adopted_from, y->adopted_from) != 0 || x->restored != y->restored)
      return false;
  }
  return true;
}

bool
ovl_ledger_is_empty (const struct ovl_ledger *l)
{
  return l->n == 0 && !l->restore_pending && !l->migration_pending && !l->saved &&
    !l->restoring[0];
}

static int
fsync_dir (const char *dir)
{
  CLEANUP_CLOSE int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1 || fsync (fd) == -1) {
    ovl_error ("fsync %s: %m", dir);
    return -1;
  }
  return 0;
}

/* The version 2 text of L into B; -1 if anything could not be added. */
static int
format_v2 (const struct ovl_ledger *l, struct ovl_buf *b)
{
  size_t i;

  if (ovl_buf_printf (b, "{\"virt-overlay-ledger\":2") == -1)
    return -1;
  if (l->domain && (ovl_buf_printf (b, ",\"domain\":") == -1 ||
                    ovl_json_append_string (b, l->domain) == -1))
    return -1;
  if (l->restore_pending &&
      ovl_buf_printf (b, ",\"restore-pending\":%lld", l->restore_pending) == -1)
    return -1;
  if (l->migration_pending &&
      ovl_buf_printf (b, ",\"migration-pending\":%lld", (long long) l->migration_pending) == -1)
    return -1;
  if (l->saved && ovl_buf_printf (b, ",\"saved\":true") == -1)
    return -1;
  if (l->restoring[0] && (ovl_buf_printf (b, ",\"restoring\":") == -1 ||
                          ovl_json_append_string (b, l->restoring) == -1))
    return -1;
  if (ovl_buf_printf (b, ",\"overlays\":[") == -1)
    return -1;
  for (i = 0; i < l->n; i++) {
    const struct ovl_ledger_entry *e = &l->entries[i];
    if (ovl_buf_printf (b, "%s{\"path\":", i ? "," : "") == -1 ||
        ovl_json_append_string (b, e->path) == -1 ||
        ovl_buf_printf (b, ",\"dev\":%llu,\"ino\":%llu,\"btime\":[%lld,%u]",
                        (unsigned long long) e->id.dev, (unsigned long long) e->id.ino,
                        (long long) e->id.btime_sec, e->id.btime_nsec) == -1)
      return -1;
    if (e->id.token[0] && (ovl_buf_printf (b, ",\"token\":") == -1 ||
                           ovl_json_append_string (b, e->id.token) == -1))
      return -1;
    if ((e->persistent && ovl_buf_printf (b, ",\"mode\":\"persistent\"") == -1) ||
        (e->from_pool && ovl_buf_printf (b, ",\"from-pool\":true") == -1))
      return -1;
    if (e->adopted_from[0] && (ovl_buf_printf (b, ",\"adopted-from\":") == -1 ||
                               ovl_json_append_string (b, e->adopted_from) == -1))
      return -1;
    if (e->restored && ovl_buf_printf (b, ",\"restored\":true") == -1)
      return -1;
    if (ovl_buf_printf (b, "}") == -1)
      return -1;
  }
  return ovl_buf_printf (b, "]}\n");
}

/* Never write a ledger that would not load again (a name that is not
 * UTF-8, a bad token, too large): the domain could never start again. */
static int
check_readable (const struct ovl_ledger *l, const struct ovl_buf *b)
{
  struct ovl_ledger *again = ovl_ledger_parse (l->file, b->data, b->len);

  if (!again) {
    ovl_error_prefix ("not saved: ");
    return -1;
  }
  ovl_ledger_free (again);
  return 0;
}

static int
write_atomically (const char *file, const char *dir, const struct ovl_buf *b)
{
  CLEANUP_FREE char *tmp = NULL;
  CLEANUP_CLOSE int fd = -1;
  size_t off = 0;

  if (ovl_mkdir_p (dir, 0700) == -1)
    return -1;
  if (asprintf (&tmp, "%s.tmp", file) == -1) {
    tmp = NULL;
    ovl_error ("out of memory");
    return -1;
  }
  /* A leftover of a crash is ours to replace; a fresh file of our own,
   * never through a link, is what gets written. */
  if (unlink (tmp) == -1 && errno != ENOENT) {
    ovl_error ("ledger %s: %m", tmp);
    return -1;
  }
  fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    ovl_error ("ledger %s: %m", tmp);
    return -1;
  }
  while (off < b->len) {
    ssize_t w = write (fd, b->data + off, b->len - off);
    if (w == -1 && errno == EINTR)
      continue;
    if (w <= 0) {
      if (w == 0)
        errno = ENOSPC;
      break;
    }
    off += (size_t) w;
  }
  if (off < b->len || fsync (fd) == -1) {
    ovl_error ("ledger %s: write: %m", tmp);
    unlink (tmp);
    return -1;
  }
  if (rename (tmp, file) == -1) {
    ovl_error ("ledger %s: rename: %m", file);
    unlink (tmp);
    return -1;
  }
  return fsync_dir (dir);
}

int
ovl_ledger_save (struct ovl_ledger *l)
{
  CLEANUP_FREE char *dir = ovl_strdup (l->file);
  struct ovl_buf b = OVL_BUF_INIT;
  int r = -1;

  if (!dir)
    return -1;
  *strrchr (dir, '/') = '\0';
  if (ovl_ledger_is_empty (l)) {
    if (unlink (l->file) == -1 && errno != ENOENT) {
      ovl_error ("ledger %s: %m", l->file);
      return -1;
    }
    return 0;
  }
  if (format_v2 (l, &b) == -1)
    ovl_error ("ledger %s: out of memory", l->file);
  else if (check_readable (l, &b) == 0)
    r = write_atomically (l->file, dir, &b);
  ovl_buf_reset (&b);
  return r;
}
