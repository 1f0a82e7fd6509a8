/* Shared helpers; see util.h. */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "cleanup.h"
#include "error.h"
#include "util.h"

int64_t
ovl_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
ovl_ms_left (int64_t deadline)
{
  int64_t left;
  if (deadline < 0)
    return -1;
  left = deadline - ovl_now_ms ();
  if (left < 0)
    return 0;
  return left > 0x7fffffff ? 0x7fffffff : (int) left;
}

int
ovl_flock_until (int fd, int op, int64_t deadline, const char *what)
{
  long pause_ms = 1;

  /* Polling, not a blocking flock: SIGALRM belongs to the hook's
   * watchdog, and a lock is normally held for milliseconds. */
  for (;;) {
    struct timespec ts;
    int left;

    if (flock (fd, op | LOCK_NB) == 0)
      return 0;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      ovl_error ("%s: flock: %m", what);
      return -1;
    }
    left = ovl_ms_left (deadline);
    if (left == 0) {
      ovl_error ("%s: still held by another caller at the deadline", what);
      return -1;
    }
    if (left > 0 && left < pause_ms)
      pause_ms = left;
    ts.tv_sec = 0;
    ts.tv_nsec = pause_ms * 1000000L;
    nanosleep (&ts, NULL);
    if (pause_ms < 16)
      pause_ms *= 2;
  }
}

static int
buf_reserve (struct ovl_buf *b, size_t extra)
{
  size_t need = b->len + extra + 1, cap;
  char *p;

  if (need <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  p = realloc (b->data, cap);
  if (!p) {
    ovl_error ("out of memory");
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

int
ovl_buf_append (struct ovl_buf *b, const void *data, size_t len)
{
  if (buf_reserve (b, len) == -1)
    return -1;
  memcpy (b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int
ovl_buf_printf (struct ovl_buf *b, const char *fmt, ...)
{
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vsnprintf (NULL, 0, fmt, ap);
  va_end (ap);
  if (n < 0) {
    ovl_error ("formatting a message: %m");
    return -1;
  }
  if (buf_reserve (b, (size_t) n) == -1)
    return -1;
  va_start (ap, fmt);
  vsnprintf (b->data + b->len, (size_t) n + 1, fmt, ap);
  va_end (ap);
  b->len += (size_t) n;
  return 0;
}

void
ovl_buf_consume (struct ovl_buf *b, size_t n)
{
  if (n >= b->len) {
    b->len = 0;
    if (b->data)
      b->data[0] = '\0';
    return;
  }
  memmove (b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

void
ovl_buf_reset (struct ovl_buf *b)
{
  free (b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *
ovl_buf_steal (struct ovl_buf *b)
{
  char *p = b->data;
  if (!p)
    p = ovl_strdup ("");
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

int
ovl_parse_u64 (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;

  if (!s || *s < '0' || *s > '9') {
    ovl_error ("'%s' is not a whole number", s ? s : "");
    return -1;
  }
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || *end) {
    ovl_error ("'%s' is not a whole number in range", s);
    return -1;
  }
  *out = v;
  return 0;
}

int
ovl_parse_bool (const char *s, bool *out)
{
  static const char *yes[] = { "on", "yes", "true", "1" };
  static const char *no[] = { "off", "no", "false", "0" };
  size_t i;

  for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcmp (s, yes[i]) == 0) { *out = true; return 0; }
    if (strcmp (s, no[i]) == 0) { *out = false; return 0; }
  }
  ovl_error ("'%s' is not on/off", s);
  return -1;
}

/* The token of the regular file open as FD ("" when it has none). */
static int
read_token (int fd, char token[OVL_TOKEN_LEN + 1])
{
  char buf[OVL_TOKEN_LEN + 1];
  ssize_t n = fgetxattr (fd, OVL_TOKEN_XATTR, buf, sizeof buf);
  size_t i;

  token[0] = '\0';
  if (n == -1)
    return errno == ENODATA || errno == ENOTSUP || errno == ERANGE ? 0 : -1;
  if (n != OVL_TOKEN_LEN)
    return 0;                   /* not one of ours: no token */
  for (i = 0; i < OVL_TOKEN_LEN; i++)
    if (!strchr ("0123456789abcdef", buf[i]) || !buf[i])
      return 0;
  memcpy (token, buf, OVL_TOKEN_LEN);
  token[OVL_TOKEN_LEN] = '\0';
  return 0;
}

int
ovl_fd_is_at (int fd, int dirfd, const char *name)
{
  struct stat a, b;

  if (fstat (fd, &a) == -1)
    return -1;
  if (fstatat (dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  return S_ISREG (a.st_mode) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Open, for reading, the very inode the O_PATH descriptor PIN holds,
 * whatever its name means by now: -1 with errno set. */
static int
reopen_pinned (int pin)
{
  char link[64];

  snprintf (link, sizeof link, "/proc/self/fd/%d", pin);
  return open (link, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
}

int
ovl_open_regular_at (int dirfd, const char *name, int *fdp)
{
  CLEANUP_CLOSE int pin = openat (dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  int fd;

  if (pin == -1)
    return errno == ENOENT || errno == ELOOP ? 0 : -1;
  if (fstat (pin, &st) == -1)
    return -1;
  if (!S_ISREG (st.st_mode))
    return 0;
  if ((fd = reopen_pinned (pin)) == -1)
    return errno == ENOENT ? 0 : -1;
  *fdp = fd;
  return 1;
}

int
ovl_file_id_at (int dirfd, const char *name, struct ovl_file_id *id, bool *is_reg)
{
  struct statx stx;
  int fd = dirfd, r = 0;

  /* Pin the inode first (O_PATH opens nothing, even a device or FIFO),
   * so that the numbers and the token are of the same file. */
  if (*name && (fd = openat (dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1)
    return -1;
  if (statx (fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_BTIME, &stx) == -1)
    r = -1;
  else {
    memset (id, 0, sizeof *id);
    id->dev = ((uint64_t) stx.stx_dev_major << 32) | stx.stx_dev_minor;
    id->ino = stx.stx_ino;
    id->btime_sec = (stx.stx_mask & STATX_BTIME) ? stx.stx_btime.tv_sec : 0;
    id->btime_nsec = (stx.stx_mask & STATX_BTIME) ? stx.stx_btime.tv_nsec : 0;
    if (is_reg)
      *is_reg = S_ISREG (stx.stx_mode);
    if (S_ISREG (stx.stx_mode)) {
      /* fgetxattr refuses an O_PATH descriptor; its /proc link does not. */
      int rfd = *name ? reopen_pinned (fd) : fd;
      if (rfd == -1 || read_token (rfd, id->token) == -1)
        r = -1;
      if (*name && rfd >= 0)
        close (rfd);
    }
  }
  if (*name) {
    int e = errno;
    close (fd);
    errno = e;
  }
  return r;
}

bool
ovl_file_id_same_file (const struct ovl_file_id *a, const struct ovl_file_id *b)
{
  return a->dev == b->dev && a->ino == b->ino &&
    a->btime_sec == b->btime_sec && a->btime_nsec == b->btime_nsec;
}

bool
ovl_file_id_equal (const struct ovl_file_id *a, const struct ovl_file_id *b)
{
  return ovl_file_id_same_file (a, b) && strcmp (a->token, b->token) == 0;
}

bool
ovl_file_id_is_strong (const struct ovl_file_id *id)
{
  return id->token[0] || id->btime_sec || id->btime_nsec;
}

int
ovl_random_hex (char *out, size_t nbytes)
{
  unsigned char rnd[64];
  size_t i;

  out[0] = '\0';
  if (nbytes > sizeof rnd || getrandom (rnd, nbytes, 0) != (ssize_t) nbytes) {
    ovl_error ("getrandom: %m");
    return -1;
  }
  for (i = 0; i < nbytes; i++)
    snprintf (out + 2 * i, 3, "%02x", rnd[i]);
  return 0;
}

static int mark (int fd, struct ovl_file_id *id, int flags);

int
ovl_file_id_mark (int fd, struct ovl_file_id *id)
{
  return mark (fd, id, XATTR_CREATE);
}

int
ovl_file_id_remark (int fd, struct ovl_file_id *id)
{
  return mark (fd, id, 0);
}

static int
mark (int fd, struct ovl_file_id *id, int flags)
{
  unsigned char rnd[OVL_TOKEN_LEN / 2];
  size_t i;

  id->token[0] = '\0';
  if (getrandom (rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd) {
    ovl_error ("getrandom: %m");
    return -1;
  }
  for (i = 0; i < sizeof rnd; i++)
    snprintf (id->token + 2 * i, 3, "%02x", rnd[i]);
  if (fsetxattr (fd, OVL_TOKEN_XATTR, id->token, OVL_TOKEN_LEN, flags) == 0)
    return 0;
  id->token[0] = '\0';
  if (errno == ENOTSUP)
    return 1;
  ovl_error ("setting the " OVL_TOKEN_XATTR " attribute: %m");
  return -1;
}

int
ovl_file_set_owner (int fd, const char *owner)
{
  if (owner ? fsetxattr (fd, OVL_OWNER_XATTR, owner, strlen (owner), 0) == 0
      : fremovexattr (fd, OVL_OWNER_XATTR) == 0)
    return 0;
  if (errno == ENOTSUP || (!owner && errno == ENODATA))
    return 0;
  ovl_error ("setting the " OVL_OWNER_XATTR " attribute: %m");
  return -1;
}

int
ovl_file_xattr_is (int fd, const char *name, const char *value)
{
  char buf[256];
  ssize_t n = fgetxattr (fd, name, buf, sizeof buf);

  if (n == -1)
    return errno == ENODATA || errno == ENOTSUP || errno == ERANGE ? 0 : -1;
  return (size_t) n == strlen (value) && memcmp (buf, value, (size_t) n) == 0;
}

int
ovl_file_owner_is (int fd, const char *owner)
{
  return ovl_file_xattr_is (fd, OVL_OWNER_XATTR, owner);
}

int
ovl_read_regular (int fd, const char *what, size_t max, char **buf, size_t *len)
{
  struct ovl_buf b = OVL_BUF_INIT;
  struct stat st;
  char chunk[65536];
  ssize_t n;

  if (fstat (fd, &st) == -1) {
    ovl_error ("%s: %m", what);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    ovl_error ("%s: not a regular file", what);
    return -1;
  }
  while (b.len <= max) {
    n = read (fd, chunk, sizeof chunk);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      ovl_error ("%s: read: %m", what);
      goto fail;
    }
    if (n == 0) {
      *len = b.len;
      *buf = ovl_buf_steal (&b);
      return *buf ? 0 : -1;
    }
    if (ovl_buf_append (&b, chunk, (size_t) n) == -1)
      goto fail;
  }
  ovl_error ("%s: larger than %zu bytes", what, max);
 fail:
  ovl_buf_reset (&b);
  return -1;
}

bool
ovl_has_control (const char *s)
{
  for (; *s; s++)
    if ((unsigned char) *s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

DIR *
ovl_opendir_at (int dirfd)
{
  int fd = openat (dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d;

  if (fd == -1)
    return NULL;
  if (!(d = fdopendir (fd)))
    close (fd);
  return d;
}

struct dirent *
ovl_readdir (DIR *d, bool *failed)
{
  struct dirent *e;

  errno = 0;
  e = readdir (d);
  if (!e && errno)
    *failed = true;
  return e;
}

char *
ovl_strdup (const char *s)
{
  char *p = strdup (s);
  if (!p)
    ovl_error ("out of memory");
  return p;
}

void *
ovl_calloc (size_t n, size_t size)
{
  void *p = calloc (n, size);
  if (!p)
    ovl_error ("out of memory");
  return p;
}

int
ovl_mkdir_p (const char *dir, mode_t mode)
{
  CLEANUP_FREE char *d = ovl_strdup (dir);
  char *p;

  if (!d)
    return -1;
  for (p = d + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir (d, mode) == -1 && errno != EEXIST) {
        ovl_error ("mkdir %s: %m", d);
        return -1;
      }
      *p = c;
      if (!c)
        break;
    }
  }
  return 0;
}

char *
ovl_trim (char *s)
{
  char *end;

  while (isspace ((unsigned char) *s))
    s++;
  end = s + strlen (s);
  while (end > s && isspace ((unsigned char) end[-1]))
    *--end = '\0';
  return s;
}

int
ovl_reserve (void *ptrp, size_t *cap, size_t need, size_t elem, size_t min)
{
  void **ptr = ptrp;
  size_t n = *cap ? *cap : (min ? min : 1);
  void *p;

  if (need <= *cap)
    return 0;
  while (n < need) {
    if (n > SIZE_MAX / 2)
      goto oom;
    n *= 2;
  }
  if (n > SIZE_MAX / elem || !(p = realloc (*ptr, n * elem)))
    goto oom;
  *ptr = p;
  *cap = n;
  return 0;
 oom:
  ovl_error ("out of memory");
  return -1;
}

bool
ovl_boot_id_valid (const char *s)
{
  size_t i;

  for (i = 0; i < OVL_BOOT_ID_LEN; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return s[i] == '\0';
}

int
ovl_boot_id (char out[OVL_BOOT_ID_LEN + 1])
{
  static const char path[] = "/proc/sys/kernel/random/boot_id";
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  char buf[OVL_BOOT_ID_LEN + 2];
  ssize_t n;

  if (fd == -1 || (n = read (fd, buf, sizeof buf - 1)) == -1) {
    ovl_error ("%s: %m", path);
    return -1;
  }
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n')
    buf[--n] = '\0';
  if (!ovl_boot_id_valid (buf)) {
    ovl_error ("%s: not a boot id: '%s'", path, buf);
    return -1;
  }
  memcpy (out, buf, OVL_BOOT_ID_LEN + 1);
  return 0;
}
