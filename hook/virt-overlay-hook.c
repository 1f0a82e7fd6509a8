/* virt-overlay-hook: the program libvirt runs as a QEMU hook.
 *
 *   virt-overlay-hook DOMAIN OPERATION SUBOP EXTRA [REASON]   < domain XML
 *
 * prepare begin  create missing overlays (from the warm pool when it has
 *                them, else all in one batch through qsd), recreate
 *                ephemeral ones at a cold boot; exit 1 with one line per
 *                failing disk and libvirt stops the start.
 * release end    remove the ephemeral overlays we created (same path,
 *                device, inode and birth time), unless the
 *                domain was saved or migrated; always exit 0.
 * restore begin  remember that the next prepare is a restore: ephemeral
 *                overlays must then be found as they were.
 * migrate begin  refuse an incoming domain with ephemeral overlays.
 * anything else  exit 0 at once, reading nothing (a failing "reconnect"
 *                would kill a running domain).
 *
 * Nothing is ever printed on stdout: for migrate and restore, libvirt
 * takes it as a replacement domain XML.  The hook never calls libvirt.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "domxml.h"
#include "error.h"
#include "ledger.h"
#include "overlay.h"
#include "pool.h"
#include "util.h"

static const char *domain_arg = "?";
/* When this invocation must be over: start + timeout_ms, for every step. */
static int64_t deadline = -1;

/* Past timeout_ms plus this, the hook gives up whatever it is doing:
 * libvirt waits for it with no timeout of its own. */
#define WATCHDOG_GRACE_MS 1000

static int watchdog_status;
static char watchdog_msg[160];

static void
watchdog_fire (int sig)
{
  ssize_t r = write (2, watchdog_msg, strlen (watchdog_msg));
  (void) r;
  _exit (watchdog_status);
}

/* Make sure the process ends STATUS within MS milliseconds.  Every wait
 * has its own deadline; this bounds what has none (parsing, a stuck
 * filesystem).  A refiller we start does not inherit the timer. */
static void
watchdog_arm (unsigned ms, int status)
{
  struct itimerval it = { { 0, 0 }, { ms / 1000, (long) (ms % 1000) * 1000 } };
  struct sigaction sa = { .sa_handler = watchdog_fire };

  watchdog_status = status;
  snprintf (watchdog_msg, sizeof watchdog_msg,
            "virt-overlay: gave up: still running %d ms past timeout_ms\n",
            WATCHDOG_GRACE_MS);
  sigaction (SIGALRM, &sa, NULL);
  setitimer (ITIMER_REAL, &it, NULL);
}

/* Report one problem: stderr (libvirt shows it) and syslog, on one line
 * whatever the domain XML put in a path. */
static void __attribute__((format (printf, 2, 3)))
report (int prio, const char *fmt, ...)
{
  char raw[2048], msg[2048];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (raw, sizeof raw, fmt, ap);
  va_end (ap);
  ovl_escape_controls (msg, sizeof msg, raw);
  fprintf (stderr, "virt-overlay: %s\n", msg);
  syslog (prio, "domain %s: %s", domain_arg, msg);
}

/* The whole of stdin, capped. */
static char *
read_stdin (size_t *len)
{
  struct ovl_buf b = OVL_BUF_INIT;
  char chunk[65536];
  ssize_t n;

  for (;;) {
    n = read (0, chunk, sizeof chunk);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      ovl_error ("reading the domain XML: %m");
      goto fail;
    }
    if (n == 0)
      break;
    if (b.len + (size_t) n > OVL_XML_MAX) {
      ovl_error ("domain XML is larger than %d bytes", OVL_XML_MAX);
      goto fail;
    }
    if (ovl_buf_append (&b, chunk, (size_t) n) == -1)
      goto fail;
  }
  *len = b.len;
  return ovl_buf_steal (&b);
 fail:
  ovl_buf_reset (&b);
  return NULL;
}

static struct ovl_domain *
load_domain (const struct ovl_config *cfg)
{
  CLEANUP_FREE char *xml = NULL;
  size_t len = 0;

  struct ovl_domain *dom;

  if (!(xml = read_stdin (&len)))
    return NULL;
  /* The parser's pre-scan bounds its time; should it still end past the
   * deadline, stop here rather than go on to qsd late. */
  dom = ovl_domxml_parse (xml, len, cfg);
  if (dom && deadline >= 0 && ovl_now_ms () > deadline) {
    ovl_domain_free (dom);
    ovl_error ("reading the domain XML took longer than timeout_ms (%u ms)", cfg->timeout_ms);
    return NULL;
  }
  return dom;
}

/* libvirt keeps a managed-save image at DIR/NAME.save. */
static bool
managed_save_exists (const struct ovl_config *cfg, const char *name)
{
  CLEANUP_FREE char *p = NULL;
  struct stat st;

  if (strchr (name, '/') || asprintf (&p, "%s/%s.save", cfg->managed_save_dir, name) == -1)
    return false;
  return lstat (p, &st) == 0;
}

/* 1 PATH exists (whatever it is), 0 it does not, -1 it cannot be told
 * (a component that is not a directory, a name too long, ...): error set. */
static int
path_exists (const char *path)
{
  struct stat st;

  if (lstat (path, &st) == 0)
    return 1;
  if (errno == ENOENT)
    return 0;
  ovl_error ("overlay '%s': %m", path);
  return -1;
}

/* Undo the ephemeral overlays of a batch whose ledger could not be saved. */
static void
remove_created (const struct ovl_config *cfg, struct ovl_request *reqs, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    ovl_overlay_remove_owned (cfg, reqs[i].overlay, &reqs[i].made);
}

static int
do_prepare (const struct ovl_config *cfg)
{
  CLEANUP_DOMAIN struct ovl_domain *dom = NULL;
  CLEANUP_LEDGER struct ovl_ledger *ledger = NULL;
  CLEANUP_FREE struct ovl_request *reqs = NULL;
  CLEANUP_FREE const struct ovl_disk **which = NULL;
  size_t i, n = 0;
  int bad = 0, status = 0;
  bool ephemeral, restoring, recorded = true;

  if (!(dom = load_domain (cfg))) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  if (dom->ndisks == 0)
    return 0;
  /* Only ephemeral disks need the ledger (and care about a restore). */
  ephemeral = ovl_domain_has_ephemeral (dom);
  if (ephemeral && !(ledger = ovl_ledger_load (cfg->state_dir, dom->uuid))) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  restoring = ephemeral &&
    (ledger->restore_pending || managed_save_exists (cfg, dom->name));
  reqs = calloc (dom->ndisks, sizeof *reqs);
  which = calloc (dom->ndisks, sizeof *which);
  if (!reqs || !which) {
    report (LOG_ERR, "out of memory");
    return 1;
  }

  for (i = 0; i < dom->ndisks; i++) {
    const struct ovl_disk *k = &dom->disks[i];
    int exists = path_exists (k->overlay);

    if (exists == -1) {
      report (LOG_ERR, "disk %s: %s", k->target, ovl_error_msg ());
      bad = 1;
      continue;
    }
    if (k->mode == OVL_MODE_PERSISTENT && exists)
      continue;                 /* whatever it holds, it is the disk */
    if (k->mode == OVL_MODE_EPHEMERAL && exists) {
      struct ovl_ledger_entry *e;
      int r;
      if (restoring)
        continue;               /* the saved state runs on it */
      e = ovl_ledger_find (ledger, k->overlay);
      r = e ? ovl_overlay_remove_owned (cfg, k->overlay, &e->id) : 0;
      if (r == 1)
        ovl_ledger_remove (ledger, e);
      else {
        if (r == 0)
          report (LOG_ERR, "disk %s: ephemeral overlay '%s' exists and was not created "
                  "by virt-overlay for this domain; refusing to replace it", k->target, k->overlay);
        else
          report (LOG_ERR, "disk %s: %s", k->target, ovl_error_msg ());
        bad = 1;
        continue;
      }
    }
    else if (k->mode == OVL_MODE_EPHEMERAL && restoring) {
      report (LOG_ERR, "disk %s: ephemeral overlay '%s' is missing; the saved state "
              "cannot run on a fresh disk", k->target, k->overlay);
      bad = 1;
      continue;
    }
    reqs[n].base = k->base;
    reqs[n].base_format = k->base_format;
    reqs[n].overlay = k->overlay;
    reqs[n].size = k->size;
    reqs[n].cluster_size = k->cluster_size;
    reqs[n].lazy_refcounts = k->lazy_refcounts;
    reqs[n].extended_l2 = k->extended_l2;
    reqs[n].need_identity = k->mode == OVL_MODE_EPHEMERAL;
    which[n++] = k;
  }
  if (bad) {
    if (ledger)
      ovl_ledger_save (ledger);
    return 1;
  }

  if (n && ovl_overlay_create (cfg, reqs, n, deadline) == -1) {
    for (i = 0; i < n; i++)
      if (reqs[i].error)
        report (LOG_ERR, "disk %s: %s", which[i]->target, reqs[i].error);
    status = 1;
  }
  else {
    for (i = 0; i < n; i++)
      if (which[i]->mode == OVL_MODE_EPHEMERAL &&
          ovl_ledger_add (ledger, reqs[i].overlay, &reqs[i].made) == -1)
        recorded = false;
  }
  if (ledger) {
    free (ledger->domain);
    ledger->domain = strdup (dom->name);
    ledger->restore_pending = false;
  }
  if (!recorded || (ledger && ovl_ledger_save (ledger) == -1)) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    /* Unrecorded ephemeral overlays could never be replaced: undo. */
    if (status == 0)
      remove_created (cfg, reqs, n);
    status = 1;
  }
  /* Top the pool up again, off the critical path: a detached process
   * with nothing of ours open, so libvirt does not wait for it. */
  if (status == 0 && n)
    ovl_pool_fill_detached (cfg, reqs, n);
  for (i = 0; i < n; i++)
    ovl_request_clear (&reqs[i]);
  return status;
}

static int
do_release (const struct ovl_config *cfg, const char *reason)
{
  CLEANUP_DOMAIN struct ovl_domain *dom = NULL;
  CLEANUP_LEDGER struct ovl_ledger *ledger = NULL;
  bool keep;
  size_t i;

  if (!(dom = load_domain (cfg))) {
    report (LOG_WARNING, "release: %s", ovl_error_msg ());
    return 0;
  }
  if (!dom->uuid)
    return 0;
  if (!(ledger = ovl_ledger_load (cfg->state_dir, dom->uuid))) {
    report (LOG_WARNING, "release: %s", ovl_error_msg ());
    return 0;
  }
  if (ledger->n == 0 && !ledger->restore_pending)
    return 0;
  /* Saved (the state runs on these disks later) or migrated away. */
  keep = (reason && (strcmp (reason, "saved") == 0 || strcmp (reason, "migrated") == 0)) ||
    managed_save_exists (cfg, dom->name);
  ledger->restore_pending = false;
  if (!keep) {
    for (i = ledger->n; i-- > 0; ) {
      struct ovl_ledger_entry *e = &ledger->entries[i];
      int r = ovl_overlay_remove_owned (cfg, e->path, &e->id);
      if (r == -1) {
        report (LOG_WARNING, "release: %s", ovl_error_msg ());
        continue;               /* keep the entry: try again next time */
      }
      if (r == 0 && path_exists (e->path) == 1)
        report (LOG_WARNING, "release: '%s' is no longer the overlay virt-overlay made; "
                "left alone", e->path);
      ovl_ledger_remove (ledger, e);
    }
  }
  if (ovl_ledger_save (ledger) == -1)
    report (LOG_WARNING, "release: %s", ovl_error_msg ());
  return 0;
}

static int
do_restore (const struct ovl_config *cfg)
{
  CLEANUP_DOMAIN struct ovl_domain *dom = NULL;
  CLEANUP_LEDGER struct ovl_ledger *ledger = NULL;

  if (!(dom = load_domain (cfg))) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  if (!ovl_domain_has_ephemeral (dom))
    return 0;
  if (!(ledger = ovl_ledger_load (cfg->state_dir, dom->uuid))) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  ledger->restore_pending = true;
  if (ovl_ledger_save (ledger) == -1) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  return 0;
}

static int
do_migrate (const struct ovl_config *cfg)
{
  CLEANUP_DOMAIN struct ovl_domain *dom = NULL;
  size_t i;
  int status = 0;

  if (!(dom = load_domain (cfg))) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return 1;
  }
  for (i = 0; i < dom->ndisks; i++)
    if (dom->disks[i].mode == OVL_MODE_EPHEMERAL) {
      report (LOG_ERR, "disk %s: an ephemeral overlay ('%s') cannot be migrated in; "
              "its contents stay on the source host", dom->disks[i].target,
              dom->disks[i].overlay);
      status = 1;
    }
  return status;
}

int
main (int argc, char **argv)
{
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  const char *op, *subop, *reason = NULL;
  enum { PREPARE, RELEASE, RESTORE, MIGRATE, PLAN } what;
  int64_t start = ovl_now_ms ();

  if (argc >= 2 && strcmp (argv[1], OVL_POOL_FILL_ARG) == 0)
    return ovl_pool_fill_main (argc, argv);   /* a detached refiller */
  if (argc == 2 && strcmp (argv[1], "--version") == 0) {
    printf ("virt-overlay-hook %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (argc < 4) {
    fprintf (stderr, "usage: virt-overlay-hook DOMAIN OPERATION SUBOP [EXTRA [REASON]] < domain.xml\n");
    return 2;
  }
  domain_arg = argv[1];
  op = argv[2];
  subop = argv[3];
  if (strcmp (op, "prepare") == 0 && strcmp (subop, "begin") == 0)
    what = PREPARE;
  else if (strcmp (op, "release") == 0 && strcmp (subop, "end") == 0)
    what = RELEASE;
  else if (strcmp (op, "restore") == 0 && strcmp (subop, "begin") == 0)
    what = RESTORE;
  else if (strcmp (op, "migrate") == 0 && strcmp (subop, "begin") == 0)
    what = MIGRATE;
  else if (strcmp (op, "plan") == 0)
    what = PLAN;                /* for admins: what prepare would handle */
  else
    return 0;                   /* reconnect, started, stopped, ...: nothing to do */

  /* The shutoff reason (libvirt >= 10.5) comes in EXTRA's place or after it. */
  if (argc > 5)
    reason = argv[5];
  else if (argc > 4 && strcmp (argv[4], "-") != 0)
    reason = argv[4];

  openlog ("virt-overlay", LOG_PID, LOG_DAEMON);
  if (!(cfg = ovl_config_load ())) {
    report (LOG_ERR, "%s", ovl_error_msg ());
    return what == RELEASE ? 0 : 1;
  }
  deadline = start + cfg->timeout_ms;
  watchdog_arm ((unsigned) ovl_ms_left (deadline) + WATCHDOG_GRACE_MS, what == RELEASE ? 0 : 1);
  switch (what) {
  case PREPARE: return do_prepare (cfg);
  case RELEASE: return do_release (cfg, reason);
  case RESTORE: return do_restore (cfg);
  case MIGRATE: return do_migrate (cfg);
  case PLAN: {
    CLEANUP_DOMAIN struct ovl_domain *dom = load_domain (cfg);
    CLEANUP_FREE char *plan = dom ? ovl_domain_plan (dom) : NULL;
    if (!plan) {
      fprintf (stderr, "virt-overlay: %s\n", ovl_error_msg ());
      return 1;
    }
    fputs (plan, stdout);
    return 0;
  }
  }
  return 0;
}
