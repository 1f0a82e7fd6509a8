/* virt-overlay-admin: the subcommands of virt-overlay that need the
 * libvirt API, in a program of their own so that neither the hook nor
 * "virt-overlay create" is linked with libvirt (a hook that calls
 * libvirt deadlocks it; linking it alone costs every start).
 * virt-overlay runs it from LIBEXECDIR for these subcommands:
 *
 *   virt-overlay status [--json] [--connect URI] [DOMAIN...]
 *   virt-overlay gc [--dry-run] [--json] [--connect URI]
 *   virt-overlay reset [--disk TARGET] [--json] [--connect URI] DOMAIN
 *   virt-overlay clone [--mode persistent|ephemeral] [--json] [--connect URI] SOURCE NEW
 *
 * status: for each domain whose disks virt-overlay handles (or each
 * DOMAIN named), its state and, per disk, the mode, the overlay, whether
 * it exists, its allocated and virtual size, its base, and whether
 * virt-overlay made it (the ledger, with the file's identity checked);
 * then the pools and the daemons.  Read-only: it opens libvirt
 * read-only, takes no lock, and changes nothing.
 *
 * gc: what lib/gc.h removes, with libvirt telling which domains it
 * knows.  A connection that is not this host's system QEMU driver would
 * make every domain look undefined, so it is refused.
 *
 * reset: for a shut-off domain, remove the persistent overlays that
 * virt-overlay made (the ledger says so, and the file is still that
 * one), so that the next start makes fresh ones from the base.
 *
 * clone: define NEW from SOURCE's XML as a linked clone (see
 * ovl_domxml_clone): its handled disks on new overlays beside SOURCE's,
 * on the same bases.  Nothing is made until NEW starts: the hook does
 * it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cleanup.h"
#include "config.h"
#include "domxml.h"
#include "error.h"
#include "gc.h"
#include "image.h"
#include "json.h"
#include "ledger.h"
#include "lifecycle.h"
#include "overlay.h"
#include "pool.h"
#include "qmp.h"
#include "qsd.h"
#include "util.h"

static const char *prog = "virt-overlay";

static void
usage (FILE *f)
{
  fprintf (f, "Usage: %s status [--json] [--connect URI] [DOMAIN...]\n"
           "       %s gc [--dry-run] [--json] [--connect URI]\n"
           "       %s reset [--disk TARGET] [--json] [--connect URI] DOMAIN\n"
           "       %s clone [--mode persistent|ephemeral] [--json] [--connect URI] SOURCE NEW\n",
           prog, prog, prog, prog);
}

/* libvirt's last error, as one line. */
static const char *
virt_error (void)
{
  const virErrorPtr e = virGetLastError ();
  return e && e->message ? e->message : "unknown libvirt error";
}

static void
silence_libvirt (void *opaque, virErrorPtr e)
{
}

static const char *
state_name (int state)
{
  switch (state) {
  case VIR_DOMAIN_RUNNING: return "running";
  case VIR_DOMAIN_BLOCKED: return "blocked";
  case VIR_DOMAIN_PAUSED: return "paused";
  case VIR_DOMAIN_SHUTDOWN: return "shutting down";
  case VIR_DOMAIN_SHUTOFF: return "shut off";
  case VIR_DOMAIN_CRASHED: return "crashed";
  case VIR_DOMAIN_PMSUSPENDED: return "suspended";
  default: return "unknown";
  }
}

/* What is known of one disk's overlay. */
struct disk_status {
  bool exists;
  uint64_t allocated;           /* bytes on disk */
  bool have_size;
  uint64_t virtual_size;
  bool ours;                    /* in the ledger, and provably that file */
  bool from_pool;               /* ... handed out by the warm pool */
};

/* Read-only, never following a symlink, never blocking on a FIFO. */
static void
look_at (const struct ovl_config *cfg, struct ovl_ledger *l, const char *path,
         struct disk_status *s)
{
  unsigned char buf[4096];
  struct ovl_image_header h;
  struct stat st;
  struct ovl_ledger_entry *e;
  ssize_t n;
  int fd;

  memset (s, 0, sizeof *s);
  if (lstat (path, &st) == -1)
    return;
  s->exists = true;
  s->allocated = (uint64_t) st.st_blocks * 512;
  if (S_ISREG (st.st_mode) &&
      (fd = open (path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) >= 0) {
    n = pread (fd, buf, sizeof buf, 0);
    if (n > 0 && ovl_image_parse_header (buf, (size_t) n, (uint64_t) st.st_size,
                                         OVL_FMT_QCOW2, &h) == 0) {
      s->have_size = true;
      s->virtual_size = h.size;
    }
    close (fd);
  }
  if (l && (e = ovl_ledger_find (l, path))) {
    s->ours = ovl_overlay_presence (cfg, path, &e->id) == OVL_PRESENCE_OURS;
    s->from_pool = s->ours && e->from_pool;
  }
}

/* "12.5 MiB" */
static void
human (char *out, size_t size, uint64_t v)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  double d = (double) v;
  int u = 0;

  while (d >= 1024 && u < 4) {
    d /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (out, size, "%llu B", (unsigned long long) v);
  else
    snprintf (out, size, "%.1f %s", d, units[u]);
}

/* ---- output: a table, or JSON built in a buffer ---- */

struct out {
  bool json;
  struct ovl_buf b;             /* the JSON document */
  bool first_domain;
};

static int
json_str (struct ovl_buf *b, const char *key, const char *value, bool comma)
{
  if ((comma && ovl_buf_printf (b, ",") == -1) || ovl_json_append_string (b, key) == -1 ||
      ovl_buf_printf (b, ":") == -1)
    return -1;
  return value ? ovl_json_append_string (b, value) : ovl_buf_printf (b, "null");
}

static int
show_domain (struct out *out, const struct ovl_config *cfg, virDomainPtr dom,
             const struct ovl_domain *d)
{
  CLEANUP_LEDGER struct ovl_ledger *l = NULL;
  struct ovl_buf *b = &out->b;
  int state = VIR_DOMAIN_NOSTATE, reason;
  size_t i;

  if (virDomainGetState (dom, &state, &reason, 0) == -1)
    state = VIR_DOMAIN_NOSTATE;
  if (d->uuid && !(l = ovl_ledger_load (cfg->state_dir, d->uuid))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, d->name, ovl_error_msg ());
    return -1;
  }
  if (out->json) {
    if ((!out->first_domain && ovl_buf_printf (b, ",") == -1) ||
        ovl_buf_printf (b, "{") == -1 || json_str (b, "name", d->name, false) == -1 ||
        json_str (b, "uuid", d->uuid, true) == -1 ||
        json_str (b, "state", state_name (state), true) == -1 ||
        ovl_buf_printf (b, ",\"disks\":[") == -1)
      return -1;
  }
  else
    printf ("domain %s (%s)\n", d->name, state_name (state));
  out->first_domain = false;

  for (i = 0; i < d->ndisks; i++) {
    const struct ovl_disk *k = &d->disks[i];
    const char *mode = k->mode == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent";
    struct disk_status s;

    look_at (cfg, l, k->overlay, &s);
    if (out->json) {
      if ((i && ovl_buf_printf (b, ",") == -1) || ovl_buf_printf (b, "{") == -1 ||
          json_str (b, "target", k->target, false) == -1 ||
          json_str (b, "mode", mode, true) == -1 ||
          json_str (b, "overlay", k->overlay, true) == -1 ||
          ovl_buf_printf (b, ",\"exists\":%s", s.exists ? "true" : "false") == -1 ||
          (s.exists && ovl_buf_printf (b, ",\"allocated\":%llu",
                                       (unsigned long long) s.allocated) == -1) ||
          (s.have_size && ovl_buf_printf (b, ",\"virtual-size\":%llu",
                                          (unsigned long long) s.virtual_size) == -1) ||
          json_str (b, "base", k->base, true) == -1 ||
          json_str (b, "base-format", ovl_format_name (k->base_format), true) == -1 ||
          ovl_buf_printf (b, ",\"made-by-virt-overlay\":%s,\"from-pool\":%s}",
                          s.ours ? "true" : "false", s.from_pool ? "true" : "false") == -1)
        return -1;
    }
    else {
      char alloc[32] = "", vsize[32] = "";
      human (alloc, sizeof alloc, s.allocated);
      if (s.have_size)
        human (vsize, sizeof vsize, s.virtual_size);
      printf ("  %-6s %-10s %s\n", k->target, mode, k->overlay);
      if (s.exists)
        printf ("         exists, %s allocated%s%s%s\n", alloc, s.have_size ? ", " : "",
                vsize, s.have_size ? " virtual" : "");
      else
        printf ("         missing (made at the next start)\n");
      printf ("         base %s (%s)%s\n", k->base, ovl_format_name (k->base_format),
              s.from_pool ? ", made by virt-overlay (from the pool)"
              : s.ours ? ", made by virt-overlay" : "");
    }
  }
  if (out->json && ovl_buf_printf (b, "]}") == -1)
    return -1;
  return 0;
}

/* The pools, from ovl_pool_status's lines "PATH ready=N KEY". */
static int
show_pools (struct out *out, const struct ovl_config *cfg)
{
  CLEANUP_FREE char *text = ovl_pool_status (cfg);
  struct ovl_buf *b = &out->b;
  char *line, *save = NULL;
  bool first = true;

  if (!text)
    return -1;
  if (out->json) {
    if (ovl_buf_printf (b, "],\"pool-size\":%u,\"pools\":[", cfg->pool_size) == -1)
      return -1;
  }
  else
    printf ("pools (pool_size %u)%s\n", cfg->pool_size, *text ? "" : ": none");
  for (line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
    char *ready = strstr (line, " ready="), *key;
    unsigned long n;
    if (!ready)
      continue;
    *ready = '\0';
    n = strtoul (ready + 7, &key, 10);
    key = *key == ' ' ? key + 1 : key;
    if (out->json) {
      if ((!first && ovl_buf_printf (b, ",") == -1) || ovl_buf_printf (b, "{") == -1 ||
          json_str (b, "path", line, false) == -1 ||
          ovl_buf_printf (b, ",\"ready\":%lu", n) == -1 ||
          json_str (b, "key", key, true) == -1 || ovl_buf_printf (b, "}") == -1)
        return -1;
    }
    else
      printf ("  %s: %lu ready, %s\n", line, n, key);
    first = false;
  }
  return 0;
}

/* Each daemon: its socket, its pid (its pidfile, when we started it),
 * whether it answers, and its jobs. */
static int
show_daemons (struct out *out, const struct ovl_config *cfg)
{
  struct ovl_buf *b = &out->b;
  unsigned i;

  if (out->json && ovl_buf_printf (b, "],\"daemons\":[") == -1)
    return -1;
  if (!out->json)
    printf ("daemons\n");
  for (i = 0; i < cfg->qsd_daemons; i++) {
    CLEANUP_FREE char *sock = ovl_qsd_socket (cfg, i), *pidfile = NULL, *pidtext = NULL;
    struct ovl_qmp *q;
    struct ovl_json *jobs = NULL;
    size_t len;
    long pid = 0;

    if (!sock || asprintf (&pidfile, "%s.pid", sock) == -1)
      return -1;
    {
      int fd = open (pidfile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        if (ovl_read_regular (fd, pidfile, 64, &pidtext, &len) == 0)
          pid = strtol (pidtext, NULL, 10);
        close (fd);
      }
    }
    /* A short wait: another caller may be holding the monitor. */
    if ((q = ovl_qmp_connect (sock, ovl_now_ms () + 2000)))
      jobs = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 2000);
    ovl_qmp_close (q);
    if (out->json) {
      if ((i && ovl_buf_printf (b, ",") == -1) || ovl_buf_printf (b, "{") == -1 ||
          json_str (b, "socket", sock, false) == -1 ||
          (pid > 0 ? ovl_buf_printf (b, ",\"pid\":%ld", pid) : ovl_buf_printf (b, ",\"pid\":null")) == -1 ||
          ovl_buf_printf (b, ",\"answering\":%s", jobs ? "true" : "false") == -1 ||
          (jobs && ovl_buf_printf (b, ",\"jobs\":%zu", ovl_json_array_len (jobs)) == -1) ||
          ovl_buf_printf (b, "}") == -1) {
        ovl_json_free (jobs);
        return -1;
      }
    }
    else if (jobs)
      printf ("  %s: answering, %zu jobs%s\n", sock, ovl_json_array_len (jobs),
              pid > 0 ? "" : " (not started by virt-overlay)");
    else
      printf ("  %s: not answering (%s)\n", sock, ovl_error_msg ());
    ovl_json_free (jobs);
  }
  return 0;
}

static int
cmd_status (int argc, char **argv)
{
  static const struct option opts[] = {
    { "json", no_argument, NULL, 'j' },
    { "connect", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  struct out out = { .b = OVL_BUF_INIT, .first_domain = true };
  const char *uri = "qemu:///system";
  virConnectPtr conn;
  virDomainPtr *doms = NULL;
  int c, i, n = 0, status = 0;

  while ((c = getopt_long (argc, argv, "+", opts, NULL)) != -1) {
    switch (c) {
    case 'j': out.json = true; break;
    case 'c': uri = optarg; break;
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 2;
    }
  }
  if (!(cfg = ovl_config_load ())) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 1;
  }
  virSetErrorFunc (NULL, silence_libvirt);
  if (!(conn = virConnectOpenReadOnly (uri))) {
    fprintf (stderr, "%s: %s: %s\n", prog, uri, virt_error ());
    return 1;
  }
  if (optind < argc) {
    n = argc - optind;
    if (!(doms = calloc ((size_t) n, sizeof *doms)))
      goto oom;
    for (i = 0; i < n; i++)
      if (!(doms[i] = virDomainLookupByName (conn, argv[optind + i]))) {
        fprintf (stderr, "%s: domain %s: %s\n", prog, argv[optind + i], virt_error ());
        status = 1;
      }
  }
  else if ((n = virConnectListAllDomains (conn, &doms, 0)) == -1) {
    fprintf (stderr, "%s: %s\n", prog, virt_error ());
    virConnectClose (conn);
    return 1;
  }

  if (out.json && ovl_buf_printf (&out.b, "{\"domains\":[") == -1)
    goto oom;
  for (i = 0; i < n; i++) {
    CLEANUP_DOMAIN struct ovl_domain *d = NULL;
    char *xml;

    if (!doms[i])
      continue;
    if (!(xml = virDomainGetXMLDesc (doms[i], 0))) {
      fprintf (stderr, "%s: domain %s: %s\n", prog, virDomainGetName (doms[i]), virt_error ());
      status = 1;
      continue;
    }
    d = ovl_domxml_parse (xml, strlen (xml), cfg);
    free (xml);
    if (!d) {
      fprintf (stderr, "%s: domain %s: %s\n", prog, virDomainGetName (doms[i]), ovl_error_msg ());
      status = 1;
      continue;
    }
    /* Named domains are shown whatever they hold; the rest only with
     * disks virt-overlay handles. */
    if (d->ndisks == 0 && optind == argc)
      continue;
    if (show_domain (&out, cfg, doms[i], d) == -1)
      status = 1;
  }
  if (show_pools (&out, cfg) == -1 || show_daemons (&out, cfg) == -1) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    status = 1;
  }
  if (out.json) {
    if (ovl_buf_printf (&out.b, "]}\n") == -1)
      goto oom;
    fwrite (out.b.data, 1, out.b.len, stdout);
  }
  ovl_buf_reset (&out.b);
  for (i = 0; i < n; i++)
    if (doms[i])
      virDomainFree (doms[i]);
  free (doms);
  virConnectClose (conn);
  return status;

 oom:
  fprintf (stderr, "%s: out of memory\n", prog);
  return 1;
}

/* ---- gc ---- */

/* The disks of the domains libvirt knows (live and inactive
 * definitions, backing chains included), as last listed. */
struct known_disks {
  const struct ovl_config *cfg;
  virConnectPtr conn;
  struct ovl_domain **doms;
  size_t ndoms;
  bool stale;                   /* list them again before the next question */
};

static void
known_disks_free (struct known_disks *k)
{
  size_t i;

  for (i = 0; i < k->ndoms; i++)
    ovl_domain_free (k->doms[i]);
  free (k->doms);
  k->doms = NULL;
  k->ndoms = 0;
  k->stale = true;
}

/* The XML of DOM (FLAGS) parsed into K->doms.  0, or -1 (error set). */
static int
known_disks_add (struct known_disks *k, virDomainPtr dom, unsigned flags)
{
  char *xml = virDomainGetXMLDesc (dom, flags);
  struct ovl_domain *d;

  if (!xml) {
    ovl_error ("domain %s: its XML: %s", virDomainGetName (dom), virt_error ());
    return -1;
  }
  d = ovl_domxml_parse (xml, strlen (xml), k->cfg);
  free (xml);
  if (!d) {
    ovl_error_prefix ("domain %s: ", virDomainGetName (dom));
    return -1;
  }
  k->doms[k->ndoms++] = d;
  return 0;
}

static int
known_disks_list (struct known_disks *k)
{
  virDomainPtr *doms = NULL;
  int n, i, ret = 0;

  known_disks_free (k);
  if ((n = virConnectListAllDomains (k->conn, &doms, 0)) == -1) {
    ovl_error ("listing the domains: %s", virt_error ());
    return -1;
  }
  if (!(k->doms = ovl_calloc ((size_t) n * 2 + 1, sizeof *k->doms)))
    ret = -1;
  for (i = 0; i < n; i++) {
    if (ret == 0 && (known_disks_add (k, doms[i], 0) == -1 ||
                     (virDomainIsPersistent (doms[i]) == 1 && virDomainIsActive (doms[i]) == 1 &&
                      known_disks_add (k, doms[i], VIR_DOMAIN_XML_INACTIVE) == -1)))
      ret = -1;
    virDomainFree (doms[i]);
  }
  free (doms);
  k->stale = ret == -1;
  return ret;
}

/* Whether a domain libvirt knows, other than the one of UUID EXCEPT (if
 * not NULL), uses PATH as a disk or backing file: 1 (*WHO its name), 0,
 * or -1 (error set). */
static int
known_disks_user (struct known_disks *k, const char *path, const char *except,
                  const char **who)
{
  size_t i, j;

  if (k->stale && known_disks_list (k) == -1)
    return -1;
  for (i = 0; i < k->ndoms; i++) {
    if (except && k->doms[i]->uuid && strcmp (k->doms[i]->uuid, except) == 0)
      continue;
    for (j = 0; j < k->doms[i]->nfiles; j++)
      if (strcmp (k->doms[i]->files[j], path) == 0) {
        *who = k->doms[i]->name;
        return 1;
      }
  }
  return 0;
}

struct gc_out {
  struct known_disks disks;
  bool json, dry_run, oom;
  struct ovl_buf b;
  size_t removed, left;
};

static int
gc_path_used (void *opaque, const char *path, const char **who)
{
  struct gc_out *g = opaque;
  return known_disks_user (&g->disks, path, NULL, who);
}

/* 1 libvirt knows UUID, 0 it does not, -1 it cannot tell. */
static int
gc_domain_known (void *opaque, const char *uuid)
{
  struct gc_out *g = opaque;
  virDomainPtr dom = virDomainLookupByUUIDString (g->disks.conn, uuid);
  virErrorPtr e;

  g->disks.stale = true;        /* libvirt may know more domains now */
  if (dom) {
    virDomainFree (dom);
    return 1;
  }
  e = virGetLastError ();
  if (e && e->code == VIR_ERR_NO_DOMAIN)
    return 0;
  ovl_error ("domain %s: libvirt cannot tell whether it is defined: %s", uuid, virt_error ());
  return -1;
}

static void
gc_say (void *opaque, enum ovl_gc_action action, const char *kind, const char *path,
        const char *why)
{
  struct gc_out *g = opaque;
  const char *a = action == OVL_GC_REMOVED ? "removed"
    : action == OVL_GC_WOULD_REMOVE ? "would remove" : "left";

  if (action == OVL_GC_LEFT)
    g->left++;
  else
    g->removed++;
  if (!g->json) {
    printf ("%s %s %s: %s\n", a, kind, path, why);
    return;
  }
  if ((g->removed + g->left > 1 && ovl_buf_printf (&g->b, ",\n") == -1) ||
      ovl_buf_printf (&g->b, "{") == -1 || json_str (&g->b, "action", a, false) == -1 ||
      json_str (&g->b, "kind", kind, true) == -1 || json_str (&g->b, "path", path, true) == -1 ||
      json_str (&g->b, "reason", why, true) == -1 || ovl_buf_printf (&g->b, "}") == -1)
    g->oom = true;
}

/* Only this host's system QEMU driver, through its own socket, knows
 * the domains this host's hook works for: the URI must be exactly
 * qemu:///system, no transport, host, socket or anything else given. */
static int
check_system_connection (virConnectPtr conn, const char *what, const char *uri)
{
  const char *type = virConnectGetType (conn);
  char *real = virConnectGetURI (conn);
  int ok = -1;

  if (!type || strcmp (type, "QEMU") != 0)
    fprintf (stderr, "%s: %s: %s is not a QEMU driver (%s): refused, every domain would "
             "look undefined\n", prog, what, uri, type ? type : "?");
  else if (strcmp (uri, "qemu:///system") != 0 || !real || strcmp (real, "qemu:///system") != 0)
    fprintf (stderr, "%s: %s: %s is not qemu:///system: refused, another daemon's domains "
             "are not the ones this host's hook worked for\n", prog, what, uri);
  else
    ok = 0;
  free (real);
  return ok;
}

static int
cmd_gc (int argc, char **argv)
{
  static const struct option opts[] = {
    { "dry-run", no_argument, NULL, 'n' },
    { "json", no_argument, NULL, 'j' },
    { "connect", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  struct gc_out g = { .b = OVL_BUF_INIT, .disks = { .stale = true } };
  const struct ovl_gc_ops ops = { gc_domain_known, gc_path_used, gc_say, &g };
  const char *uri = "qemu:///system";
  int c, status = 0;

  while ((c = getopt_long (argc, argv, "+", opts, NULL)) != -1) {
    switch (c) {
    case 'n': g.dry_run = true; break;
    case 'j': g.json = true; break;
    case 'c': uri = optarg; break;
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 2;
    }
  }
  if (optind < argc) {
    usage (stderr);
    return 2;
  }
  if (!(cfg = ovl_config_load ())) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 1;
  }
  g.disks.cfg = cfg;
  virSetErrorFunc (NULL, silence_libvirt);
  if (!(g.disks.conn = virConnectOpenReadOnly (uri))) {
    fprintf (stderr, "%s: %s: %s\n", prog, uri, virt_error ());
    return 1;
  }
  if (check_system_connection (g.disks.conn, "gc", uri) == -1) {
    virConnectClose (g.disks.conn);
    return 1;
  }
  if (ovl_gc (cfg, &ops, g.dry_run, ovl_now_ms () + cfg->timeout_ms) == -1) {
    fprintf (stderr, "%s: gc stopped: %s\n", prog, ovl_error_msg ());
    status = 1;
  }
  if (g.json) {
    if (g.oom) {
      fprintf (stderr, "%s: out of memory\n", prog);
      status = 1;
    }
    printf ("{\"dry-run\":%s,\"items\":[%s%.*s%s]}\n", g.dry_run ? "true" : "false",
            g.b.len ? "\n" : "", (int) g.b.len, g.b.data ? g.b.data : "", g.b.len ? "\n" : "");
  }
  else
    printf ("gc: %zu %s, %zu left\n", g.removed, g.dry_run ? "to remove" : "removed", g.left);
  ovl_buf_reset (&g.b);
  known_disks_free (&g.disks);
  virConnectClose (g.disks.conn);
  return status;
}

/* ---- reset ---- */

struct reset {
  const struct ovl_config *cfg;
  bool json;
  struct ovl_buf b;             /* the JSON disks */
  size_t ndone;
  bool oom;
};

/* One disk's outcome: removed (a line on stdout), or refused (on
 * stderr); both in the JSON document. */
static void __attribute__((format (printf, 4, 5)))
reset_say (struct reset *r, const struct ovl_disk *k, bool removed, const char *fmt, ...)
{
  char line[4200];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  if (!removed)
    fprintf (stderr, "%s: disk %s: %s\n", prog, k->target, line);
  else if (!r->json)
    printf ("disk %s: %s\n", k->target, line);
  if (r->json &&
      ((r->ndone && ovl_buf_printf (&r->b, ",\n") == -1) || ovl_buf_printf (&r->b, "{") == -1 ||
       json_str (&r->b, "target", k->target, false) == -1 ||
       json_str (&r->b, "overlay", k->overlay, true) == -1 ||
       json_str (&r->b, "result", removed ? "removed" : "refused", true) == -1 ||
       json_str (&r->b, "reason", line, true) == -1 || ovl_buf_printf (&r->b, "}") == -1))
    r->oom = true;
  r->ndone++;
}

/* Whether reset without --disk takes disk K: a persistent disk, or one
 * whose overlay the ledger (PEEK) records as a persistent one made
 * before the disk became ephemeral. */
static bool
reset_wanted (const struct ovl_disk *k, struct ovl_ledger *peek)
{
  const struct ovl_ledger_entry *e = ovl_ledger_find (peek, k->overlay);
  return k->mode == OVL_MODE_PERSISTENT || (e && e->persistent);
}

/* Reset disk K of the domain whose ledger is L: 0, or -1 refused. */
static int
reset_disk (struct reset *r, struct ovl_ledger *l, const struct ovl_disk *k)
{
  struct ovl_ledger_entry *e = ovl_ledger_find (l, k->overlay);
  int got;

  if (!e || !e->persistent) {
    reset_say (r, k, false, "overlay '%s' was not made by virt-overlay as a persistent "
               "overlay (its ledger does not have it); left alone", k->overlay);
    return -1;
  }
  got = ovl_overlay_remove_owned (r->cfg, k->overlay, &e->id);
  if (got == 1) {
    ovl_ledger_remove (l, e);
    reset_say (r, k, true, "persistent overlay '%s' removed: the next start makes a fresh "
               "one on '%s'", k->overlay, k->base);
    return 0;
  }
  if (got == 0)
    got = ovl_overlay_presence (r->cfg, k->overlay, &e->id);
  if (got == OVL_PRESENCE_ABSENT) {
    ovl_ledger_remove (l, e);
    reset_say (r, k, true, "no overlay at '%s': the next start makes a fresh one on '%s'",
               k->overlay, k->base);
    return 0;
  }
  if (got == OVL_PRESENCE_OTHER)
    reset_say (r, k, false, "'%s' is no longer the overlay virt-overlay made; left alone",
               k->overlay);
  else
    reset_say (r, k, false, "%s", ovl_error_msg ());
  return -1;
}

static int
cmd_reset (int argc, char **argv)
{
  static const struct option opts[] = {
    { "disk", required_argument, NULL, 'd' },
    { "json", no_argument, NULL, 'j' },
    { "connect", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  CLEANUP_DOMAIN struct ovl_domain *d = NULL;
  CLEANUP_LEDGER struct ovl_ledger *l = NULL, *peek = NULL;
  struct known_disks kd = { .stale = true };
  struct reset r = { .b = OVL_BUF_INIT };
  const char *uri = "qemu:///system", *disk = NULL, *name;
  virConnectPtr conn = NULL;
  virDomainPtr dom = NULL;
  char *xml = NULL;
  int c, status = 1;
  size_t i, matched = 0;

  while ((c = getopt_long (argc, argv, "+", opts, NULL)) != -1) {
    switch (c) {
    case 'd': disk = optarg; break;
    case 'j': r.json = true; break;
    case 'c': uri = optarg; break;
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 2;
    }
  }
  if (argc - optind != 1) {
    usage (stderr);
    return 2;
  }
  name = argv[optind];
  if (!(cfg = ovl_config_load ())) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 1;
  }
  r.cfg = cfg;
  virSetErrorFunc (NULL, silence_libvirt);
  if (!(conn = virConnectOpenReadOnly (uri))) {
    fprintf (stderr, "%s: %s: %s\n", prog, uri, virt_error ());
    return 1;
  }
  if (check_system_connection (conn, "reset", uri) == -1)
    goto out;
  kd.cfg = cfg;
  kd.conn = conn;
  if (!(dom = virDomainLookupByName (conn, name))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, name, virt_error ());
    goto out;
  }
  if (!(xml = virDomainGetXMLDesc (dom, VIR_DOMAIN_XML_INACTIVE)) ||
      !(d = ovl_domxml_parse (xml, strlen (xml), cfg))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, name, xml ? ovl_error_msg () : virt_error ());
    goto out;
  }
  if (d->ndisks == 0) {
    fprintf (stderr, "%s: domain %s has no disk virt-overlay handles\n", prog, name);
    goto out;
  }
  /* What the ledger says, without its lock: what libvirt is asked about. */
  if (!(peek = ovl_ledger_load (cfg->state_dir, d->uuid))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, name, ovl_error_msg ());
    goto out;
  }
  if (disk) {
    for (i = 0; i < d->ndisks && strcmp (d->disks[i].target, disk) != 0; i++)
      ;
    if (i == d->ndisks) {
      fprintf (stderr, "%s: disk %s: not a disk of domain %s that virt-overlay handles\n",
               prog, disk, name);
      goto out;
    }
    if (!reset_wanted (&d->disks[i], peek)) {
      fprintf (stderr, "%s: disk %s: ephemeral, and its overlay was not made as a persistent "
               "one: every start makes it fresh already\n", prog, disk);
      goto out;
    }
  }
  /* libvirt first: under the ledger's lock it is not asked, for
   * libvirtd holds a domain's lock while its hook runs, and the hook of
   * a start may be waiting for ours. */
  if (virDomainIsActive (dom) != 0) {
    fprintf (stderr, "%s: domain %s is running (or its state cannot be told): reset works "
             "on a shut-off domain\n", prog, name);
    goto out;
  }
  if (virDomainHasManagedSaveImage (dom, 0) != 0) {
    fprintf (stderr, "%s: domain %s has a managed-save image (or it cannot be told), whose "
             "state runs on these overlays: remove it first (virsh managedsave-remove)\n",
             prog, name);
    goto out;
  }
  if (virDomainSnapshotNum (dom, 0) != 0) {
    fprintf (stderr, "%s: domain %s has snapshots (or it cannot be told), which may live in "
             "these overlays: delete them first (virsh snapshot-delete)\n", prog, name);
    goto out;
  }
  for (i = 0; i < d->ndisks; i++) {
    const char *who = NULL;
    int u;
    if (disk ? strcmp (d->disks[i].target, disk) != 0 : !reset_wanted (&d->disks[i], peek))
      continue;
    if ((u = known_disks_user (&kd, d->disks[i].overlay, d->uuid, &who)) != 0) {
      if (u == 1)
        fprintf (stderr, "%s: disk %s: domain %s uses '%s' too (as its disk or a backing "
                 "file); left alone\n", prog, d->disks[i].target, who, d->disks[i].overlay);
      else
        fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
      goto out;
    }
  }
  /* A start waits for this lock, and then makes fresh overlays.  One
   * that ran meanwhile changed the ledger (or holds its overlays open:
   * then they are left). */
  if (!(l = ovl_ledger_open (cfg->state_dir, d->uuid, ovl_now_ms () + cfg->timeout_ms))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, name, ovl_error_msg ());
    goto out;
  }
  if (!ovl_ledger_same (l, peek)) {
    fprintf (stderr, "%s: domain %s: its ledger changed meanwhile (a start?); try again\n",
             prog, name);
    goto out;
  }
  if (l->saved || ovl_migration_mark_fresh (l->restore_pending)) {
    fprintf (stderr, "%s: domain %s was saved to a file, whose state runs on these overlays: "
             "restore it, or start it afresh, first\n", prog, name);
    goto out;
  }
  if (ovl_migration_mark_fresh (l->migration_pending)) {
    fprintf (stderr, "%s: domain %s is coming in by migration; reset it once it is stopped\n",
             prog, name);
    goto out;
  }
  status = 0;
  for (i = 0; i < d->ndisks; i++) {
    const struct ovl_disk *k = &d->disks[i];
    if (disk ? strcmp (k->target, disk) != 0 : !reset_wanted (k, peek))
      continue;
    matched++;
    if (reset_disk (&r, l, k) == -1)
      status = 1;
  }
  if (ovl_ledger_save (l) == -1) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, name, ovl_error_msg ());
    status = 1;
  }
  if (!matched) {
    fprintf (stderr, "%s: domain %s has no persistent overlay to reset\n", prog, name);
    status = 1;
  }
  if (r.json) {
    if (r.oom) {
      fprintf (stderr, "%s: out of memory\n", prog);
      status = 1;
    }
    printf ("{\"domain\":");
    {
      struct ovl_buf head = OVL_BUF_INIT;
      if (ovl_json_append_string (&head, name) == 0)
        fwrite (head.data, 1, head.len, stdout);
      ovl_buf_reset (&head);
    }
    printf (",\"disks\":[%s%.*s%s]}\n", r.b.len ? "\n" : "", (int) r.b.len,
            r.b.data ? r.b.data : "", r.b.len ? "\n" : "");
  }

 out:
  ovl_buf_reset (&r.b);
  known_disks_free (&kd);
  free (xml);
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return status;
}

/* ---- clone ---- */

static int
cmd_clone (int argc, char **argv)
{
  static const struct option opts[] = {
    { "mode", required_argument, NULL, 'm' },
    { "json", no_argument, NULL, 'j' },
    { "connect", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  CLEANUP_DOMAIN struct ovl_domain *made = NULL;
  struct known_disks kd = { .stale = true };
  CLEANUP_FREE char *xml = NULL, *clone = NULL, *newxml = NULL;
  const char *uri = "qemu:///system", *src, *name;
  virConnectPtr conn = NULL;
  virDomainPtr dom = NULL, nd = NULL;
  struct ovl_buf b = OVL_BUF_INIT;
  bool json = false;
  int c, mode = -1, status = 1;
  size_t i;

  while ((c = getopt_long (argc, argv, "+", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      if (strcmp (optarg, "persistent") == 0)
        mode = OVL_MODE_PERSISTENT;
      else if (strcmp (optarg, "ephemeral") == 0)
        mode = OVL_MODE_EPHEMERAL;
      else {
        fprintf (stderr, "%s: --mode: '%s' is not persistent or ephemeral\n", prog, optarg);
        return 2;
      }
      break;
    case 'j': json = true; break;
    case 'c': uri = optarg; break;
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 2;
    }
  }
  if (argc - optind != 2) {
    usage (stderr);
    return 2;
  }
  src = argv[optind];
  name = argv[optind + 1];
  if (!(cfg = ovl_config_load ())) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 1;
  }
  virSetErrorFunc (NULL, silence_libvirt);
  if (!(conn = virConnectOpen (uri))) {
    fprintf (stderr, "%s: %s: %s\n", prog, uri, virt_error ());
    return 1;
  }
  if (check_system_connection (conn, "clone", uri) == -1)
    goto out;
  kd.cfg = cfg;
  kd.conn = conn;
  if (!(dom = virDomainLookupByName (conn, src))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, src, virt_error ());
    goto out;
  }
  /* The inactive definition, secrets (a VNC password) included. */
  if (!(xml = virDomainGetXMLDesc (dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE))) {
    fprintf (stderr, "%s: domain %s: %s\n", prog, src, virt_error ());
    goto out;
  }
  if (!(clone = ovl_domxml_clone (xml, strlen (xml), cfg, name, mode))) {
    fprintf (stderr, "%s: clone of %s: %s\n", prog, src, ovl_error_msg ());
    goto out;
  }
  if (!(nd = virDomainDefineXML (conn, clone))) {
    fprintf (stderr, "%s: defining %s: %s\n", prog, name, virt_error ());
    goto out;
  }
  /* What libvirt made of it, with its UUID: what the hook will see. */
  if (!(newxml = virDomainGetXMLDesc (nd, VIR_DOMAIN_XML_INACTIVE)) ||
      !(made = ovl_domxml_parse (newxml, strlen (newxml), cfg))) {
    fprintf (stderr, "%s: %s: %s\n", prog, name, newxml ? ovl_error_msg () : virt_error ());
    goto out;
  }
  /* A file at a new overlay's path, or a domain that names it (its
   * overlay not made yet), would be used or refused at the first start:
   * it is someone else's, so the clone goes again. */
  for (i = 0; i < made->ndisks; i++) {
    const char *who = NULL;
    struct stat st;
    int u;

    if (lstat (made->disks[i].overlay, &st) == 0 || errno != ENOENT)
      fprintf (stderr, "%s: disk %s: '%s' exists already (or cannot be looked at): a clone "
               "named %s cannot have its own overlay there; not defined\n", prog,
               made->disks[i].target, made->disks[i].overlay, name);
    else if ((u = known_disks_user (&kd, made->disks[i].overlay, made->uuid, &who)) == 1)
      fprintf (stderr, "%s: disk %s: domain %s names '%s' as its disk; a clone named %s "
               "cannot have its own overlay there; not defined\n", prog,
               made->disks[i].target, who, made->disks[i].overlay, name);
    else if (u == -1)
      fprintf (stderr, "%s: %s; %s not defined\n", prog, ovl_error_msg (), name);
    else
      continue;
    if (virDomainUndefineFlags (nd, VIR_DOMAIN_UNDEFINE_KEEP_NVRAM) == -1)
      fprintf (stderr, "%s: undefining %s again: %s\n", prog, name, virt_error ());
    goto out;
  }
  status = 0;
  if (json && (ovl_buf_printf (&b, "{") == -1 || json_str (&b, "domain", name, false) == -1 ||
               json_str (&b, "source", src, true) == -1 ||
               ovl_buf_printf (&b, ",\"disks\":[") == -1))
    status = 1;
  if (!json)
    printf ("domain %s defined as a linked clone of %s\n", name, src);
  for (i = 0; i < made->ndisks; i++) {
    const struct ovl_disk *k = &made->disks[i];
    const char *m = k->mode == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent";

    if (json) {
      if ((i && ovl_buf_printf (&b, ",") == -1) || ovl_buf_printf (&b, "\n{") == -1 ||
          json_str (&b, "target", k->target, false) == -1 ||
          json_str (&b, "mode", m, true) == -1 || json_str (&b, "overlay", k->overlay, true) == -1 ||
          json_str (&b, "base", k->base, true) == -1 || ovl_buf_printf (&b, "}") == -1)
        status = 1;
    }
    else
      printf ("disk %s: %s overlay '%s' on '%s', made at its first start\n", k->target, m,
              k->overlay, k->base);
  }
  if (json) {
    if (ovl_buf_printf (&b, "]}\n") == -1)
      status = 1;
    else
      fwrite (b.data, 1, b.len, stdout);
  }
  if (status)
    fprintf (stderr, "%s: out of memory (%s is defined)\n", prog, name);

 out:
  ovl_buf_reset (&b);
  known_disks_free (&kd);
  if (nd)
    virDomainFree (nd);
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return status;
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "status") == 0)
    return cmd_status (argc - 1, argv + 1);
  if (strcmp (argv[1], "gc") == 0)
    return cmd_gc (argc - 1, argv + 1);
  if (strcmp (argv[1], "reset") == 0)
    return cmd_reset (argc - 1, argv + 1);
  if (strcmp (argv[1], "clone") == 0)
    return cmd_clone (argc - 1, argv + 1);
  fprintf (stderr, "%s: unknown command '%s'\n", prog, argv[1]);
  return 2;
}
