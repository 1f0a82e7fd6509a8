/* Configuration file; see config.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "error.h"
#include "util.h"

#define MAX_LINE 4096              /* a line, its newline and a NUL */
#define MAX_DIRS 64
#define MAX_FILE (1024 * 1024)

void
ovl_dirs_free (struct ovl_dirs *d)
{
  size_t i;
  for (i = 0; i < d->n; i++)
    free (d->dir[i]);
  free (d->dir);
  d->dir = NULL;
  d->n = 0;
}

void
ovl_config_free (struct ovl_config *c)
{
  if (!c)
    return;
  free (c->qsd_socket);
  free (c->qsd_binary);
  ovl_dirs_free (&c->overlay_dirs);
  ovl_dirs_free (&c->base_dirs);
  free (c->state_dir);
  free (c->managed_save_dir);
  free (c);
}

void
ovl_config_cleanup (struct ovl_config **c)
{
  ovl_config_free (*c);
}

int
ovl_check_cluster_size (uint64_t v)
{
  if (v < 512 || v > 2 * 1024 * 1024 || (v & (v - 1))) {
    ovl_error ("cluster size %llu is not a power of two between 512 and 2097152",
               (unsigned long long) v);
    return -1;
  }
  return 0;
}

/* An absolute, normalised directory: no ".", "..", "//" or trailing '/'. */
static int
check_abs_dir (const char *d)
{
  const char *p;

  if (d[0] != '/') {
    ovl_error ("'%s' is not an absolute path", d);
    return -1;
  }
  for (p = d; *p; p++)
    if (p[0] == '/' && (p[1] == '/' || (p[1] == '.' && (p[2] == '/' || !p[2] ||
                                                         (p[2] == '.' && (p[3] == '/' || !p[3]))))))
      break;
  if (*p || (strlen (d) > 1 && d[strlen (d) - 1] == '/')) {
    ovl_error ("'%s' is not a normalised absolute path", d);
    return -1;
  }
  return 0;
}

int
ovl_parse_dirs (const char *value, struct ovl_dirs *out)
{
  CLEANUP_FREE char *copy = ovl_strdup (value);
  char *tok, *save = NULL;
  struct ovl_dirs d = { NULL, 0 };

  if (!copy)
    return -1;
  if (!(d.dir = ovl_calloc (MAX_DIRS, sizeof *d.dir)))
    return -1;
  for (tok = strtok_r (copy, ",", &save); tok; tok = strtok_r (NULL, ",", &save)) {
    tok = ovl_trim (tok);
    if (!*tok)
      continue;
    if (d.n == MAX_DIRS) {
      ovl_error ("more than %d directories", MAX_DIRS);
      goto fail;
    }
    if (check_abs_dir (tok) == -1 || !(d.dir[d.n] = ovl_strdup (tok)))
      goto fail;
    d.n++;
  }
  if (d.n == 0) {
    ovl_error ("empty directory list");
    goto fail;
  }
  ovl_dirs_free (out);
  *out = d;
  return 0;
 fail:
  ovl_dirs_free (&d);
  return -1;
}

static int
set_string (char **field, const char *value)
{
  char *s = ovl_strdup (value);
  if (!s)
    return -1;
  free (*field);
  *field = s;
  return 0;
}

static int
set_abs_path (char **field, const char *value)
{
  if (check_abs_dir (value) == -1)
    return -1;
  return set_string (field, value);
}

static int
set_bool (bool *field, const char *value)
{
  return ovl_parse_bool (value, field);
}

static int
set_uint (unsigned *field, const char *value, uint64_t min, uint64_t max)
{
  uint64_t v;
  if (ovl_parse_u64 (value, &v) == -1)
    return -1;
  if (v < min || v > max) {
    ovl_error ("%llu is not between %llu and %llu", (unsigned long long) v,
               (unsigned long long) min, (unsigned long long) max);
    return -1;
  }
  *field = (unsigned) v;
  return 0;
}

static int
set_key (struct ovl_config *c, const char *key, const char *value)
{
  if (strcmp (key, "qsd_socket") == 0)
    return set_abs_path (&c->qsd_socket, value);
  if (strcmp (key, "qsd_spawn") == 0)
    return set_bool (&c->qsd_spawn, value);
  if (strcmp (key, "qsd_daemons") == 0)
    return set_uint (&c->qsd_daemons, value, 1, OVL_QSD_DAEMONS_MAX);
  if (strcmp (key, "qsd_binary") == 0)
    return set_abs_path (&c->qsd_binary, value);
  if (strcmp (key, "overlay_dirs") == 0)
    return ovl_parse_dirs (value, &c->overlay_dirs);
  if (strcmp (key, "base_dirs") == 0)
    return ovl_parse_dirs (value, &c->base_dirs);
  if (strcmp (key, "state_dir") == 0)
    return set_abs_path (&c->state_dir, value);
  if (strcmp (key, "managed_save_dir") == 0)
    return set_abs_path (&c->managed_save_dir, value);
  if (strcmp (key, "timeout_ms") == 0)
    return set_uint (&c->timeout_ms, value, 1, 3600 * 1000);
  if (strcmp (key, "cluster_size") == 0)
    return ovl_parse_u64 (value, &c->cluster_size) == -1 ? -1 :
      ovl_check_cluster_size (c->cluster_size);
  if (strcmp (key, "lazy_refcounts") == 0)
    return set_bool (&c->lazy_refcounts, value);
  if (strcmp (key, "extended_l2") == 0)
    return set_bool (&c->extended_l2, value);
  if (strcmp (key, "pool_size") == 0)
    return set_uint (&c->pool_size, value, 0, 64);
  ovl_error ("unknown key '%s'", key);
  return -1;
}

static struct ovl_config *
config_defaults (void)
{
  struct ovl_config *c = ovl_calloc (1, sizeof *c);

  if (!c)
    return NULL;
  c->qsd_spawn = true;
  c->qsd_daemons = 1;
  c->timeout_ms = 30000;
  c->cluster_size = 65536;
  if (set_string (&c->qsd_socket, RUNSTATEDIR "/virt-overlay/qsd.sock") == -1 ||
      set_string (&c->qsd_binary, OVL_QSD_BINARY) == -1 ||
      set_string (&c->state_dir, LOCALSTATEDIR "/lib/virt-overlay") == -1 ||
      set_string (&c->managed_save_dir, OVL_LIBVIRT_SAVE_DIR) == -1 ||
      ovl_parse_dirs ("/var/lib/libvirt/images", &c->overlay_dirs) == -1 ||
      ovl_parse_dirs ("/var/lib/libvirt/images", &c->base_dirs) == -1) {
    ovl_config_free (c);
    return NULL;
  }
  return c;
}

/* One line (LEN bytes, no newline) into C; LINE is a scratch buffer. */
static int
parse_line (struct ovl_config *c, const char *name, unsigned lineno,
            const char *text, size_t len, char line[MAX_LINE])
{
  char *eq, *key, *value, *hash;

  /* The old fgets() reader's limit: line, newline and NUL in MAX_LINE. */
  if (len + 2 > MAX_LINE) {
    ovl_error ("%s:%u: line too long", name, lineno);
    return -1;
  }
  if (memchr (text, '\0', len)) {
    ovl_error ("%s:%u: NUL byte in line", name, lineno);
    return -1;
  }
  memcpy (line, text, len);
  line[len] = '\0';
  if ((hash = strchr (line, '#')))
    *hash = '\0';
  key = ovl_trim (line);
  if (!*key)
    return 0;
  if (!(eq = strchr (key, '='))) {
    ovl_error ("%s:%u: expected 'key = value'", name, lineno);
    return -1;
  }
  *eq = '\0';
  value = ovl_trim (eq + 1);
  key = ovl_trim (key);
  if (set_key (c, key, value) == -1) {
    ovl_error_prefix ("%s:%u: %s: ", name, lineno, key);
    return -1;
  }
  return 0;
}

struct ovl_config *
ovl_config_parse (const char *name, const char *buf, size_t len)
{
  struct ovl_config *c = config_defaults ();
  char line[MAX_LINE];
  const char *p = buf, *end = buf + len;
  unsigned lineno = 0;

  if (!c)
    return NULL;
  while (p < end) {
    const char *nl = memchr (p, '\n', (size_t) (end - p));
    size_t n = (size_t) ((nl ? nl : end) - p);

    if (parse_line (c, name, ++lineno, p, n, line) == -1) {
      ovl_config_free (c);
      return NULL;
    }
    p += n + (nl ? 1 : 0);
  }
  return c;
}

/* Read all of PATH (at most MAX_FILE bytes) into *BUF: 0, or 1 when it
 * does not exist and need not, or -1 with the error set.  A symlink is
 * followed (a packaged /etc often links its configuration elsewhere). */
static int
read_config_file (const char *path, bool must_exist, char **buf, size_t *len)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

  if (fd == -1) {
    if (errno == ENOENT && !must_exist)
      return 1;
    ovl_error ("%s: %m", path);
    return -1;
  }
  return ovl_read_regular (fd, path, MAX_FILE, buf, len);
}

struct ovl_config *
ovl_config_load_file (const char *path, bool must_exist)
{
  CLEANUP_FREE char *buf = NULL;
  size_t len = 0;
  int r = read_config_file (path, must_exist, &buf, &len);

  if (r == 1)
    return config_defaults ();
  if (r == -1)
    return NULL;
  return ovl_config_parse (path, buf, len);
}

struct ovl_config *
ovl_config_load (void)
{
  const char *env = getenv ("VIRT_OVERLAY_CONFIG");

  if (env && *env)
    return ovl_config_load_file (env, true);
  return ovl_config_load_file (OVL_CONFIG_DEFAULT_PATH, false);
}
