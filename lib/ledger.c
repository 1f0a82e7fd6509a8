/* The ledger of created overlays; see ledger.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "ledger.h"
#include "util.h"

#define LEDGER_HEADER "# virt-overlay ledger 1"
#define MAX_ENTRIES 1024

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
  free (l);
}

void
ovl_ledger_cleanup (struct ovl_ledger **l)
{
  ovl_ledger_free (*l);
}

int
ovl_ledger_add (struct ovl_ledger *l, const char *path, const struct ovl_file_id *id)
{
  struct ovl_ledger_entry *e = ovl_ledger_find (l, path);

  if (!e) {
    if (l->n == MAX_ENTRIES) {
      ovl_error ("ledger %s is full", l->file);
      return -1;
    }
    e = &l->entries[l->n];
    if (!(e->path = ovl_strdup (path)))
      return -1;
    l->n++;
  }
  e->id = *id;
  return 0;
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

static int
parse_line (struct ovl_ledger *l, char *line)
{
  struct ovl_file_id id;
  unsigned long long dev, ino;
  long long bsec;
  unsigned bnsec;
  int off = 0;

  line[strcspn (line, "\n")] = '\0';
  if (!*line || line[0] == '#')
    return 0;
  if (strcmp (line, "restore-pending") == 0) {
    l->restore_pending = true;
    return 0;
  }
  if (strncmp (line, "domain ", 7) == 0) {
    free (l->domain);
    return (l->domain = ovl_strdup (line + 7)) ? 0 : -1;
  }
  if (sscanf (line, "ephemeral %llu %llu %lld %u %n", &dev, &ino, &bsec, &bnsec, &off) == 4 &&
      off > 0 && line[off] == '/') {
    id.dev = dev;
    id.ino = ino;
    id.btime_sec = bsec;
    id.btime_nsec = bnsec;
    return ovl_ledger_add (l, line + off, &id);
  }
  ovl_error ("ledger %s: unreadable line '%s'", l->file, line);
  return -1;
}

struct ovl_ledger *
ovl_ledger_load (const char *state_dir, const char *uuid)
{
  struct ovl_ledger *l = ovl_calloc (1, sizeof *l);
  CLEANUP_FCLOSE FILE *f = NULL;
  char line[8192];

  if (!l)
    return NULL;
  if (asprintf (&l->file, "%s/domains/%s", state_dir, uuid) == -1) {
    l->file = NULL;
    goto fail;
  }
  if (!(l->entries = ovl_calloc (MAX_ENTRIES, sizeof *l->entries)))
    goto fail;
  f = fopen (l->file, "re");
  if (!f) {
    if (errno == ENOENT)
      return l;
    ovl_error ("ledger %s: %m", l->file);
    goto fail;
  }
  while (fgets (line, sizeof line, f))
    if (parse_line (l, line) == -1)
      goto fail;
  return l;

 fail:
  ovl_ledger_free (l);
  return NULL;
}

static int
mkdir_p (const char *dir, mode_t mode)
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

int
ovl_ledger_save (struct ovl_ledger *l)
{
  CLEANUP_FREE char *dir = ovl_strdup (l->file);
  CLEANUP_FREE char *tmp = NULL;
  struct ovl_buf b = OVL_BUF_INIT;
  CLEANUP_CLOSE int fd = -1;
  size_t i;
  ssize_t w;

  if (!dir)
    return -1;
  *strrchr (dir, '/') = '\0';
  if (l->n == 0 && !l->restore_pending) {
    if (unlink (l->file) == -1 && errno != ENOENT) {
      ovl_error ("ledger %s: %m", l->file);
      return -1;
    }
    return 0;
  }
  ovl_buf_printf (&b, LEDGER_HEADER "\n");
  if (l->domain)
    ovl_buf_printf (&b, "domain %s\n", l->domain);
  if (l->restore_pending)
    ovl_buf_printf (&b, "restore-pending\n");
  for (i = 0; i < l->n; i++)
    ovl_buf_printf (&b, "ephemeral %llu %llu %lld %u %s\n",
                    (unsigned long long) l->entries[i].id.dev,
                    (unsigned long long) l->entries[i].id.ino,
                    (long long) l->entries[i].id.btime_sec, l->entries[i].id.btime_nsec,
                    l->entries[i].path);
  if (!b.data || mkdir_p (dir, 0700) == -1 || asprintf (&tmp, "%s.tmp", l->file) == -1)
    goto fail;
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    ovl_error ("ledger %s: %m", tmp);
    goto fail;
  }
  w = write (fd, b.data, b.len);
  if (w != (ssize_t) b.len || fsync (fd) == -1) {
    ovl_error ("ledger %s: write: %m", tmp);
    unlink (tmp);
    goto fail;
  }
  if (rename (tmp, l->file) == -1) {
    ovl_error ("ledger %s: rename: %m", l->file);
    unlink (tmp);
    goto fail;
  }
  ovl_buf_reset (&b);
  return fsync_dir (dir);

 fail:
  ovl_buf_reset (&b);
  return -1;
}
