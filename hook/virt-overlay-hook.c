/* virt-overlay-hook: the program libvirt runs as a QEMU hook.
 *
 *   virt-overlay-hook DOMAIN OPERATION SUBOP EXTRA [REASON]   < domain XML
 *
 * prepare begin  create missing overlays, recreate ephemeral ones at a
 *                cold boot; exit 1 with one line per failing disk and
 *                libvirt stops the start.
 * release end    remove the ephemeral overlays we created; always exit 0.
 * restore begin  remember that the next prepare is a restore.
 * migrate begin  refuse an incoming domain whose overlays are not on
 *                this host, or whose ephemeral ones are not the source's;
 *                remember that the next prepare is a migration's (which
 *                takes the ephemeral overlays over).
 * anything else  exit 0 at once, reading nothing (a failing "reconnect"
 *                would kill a running domain).
 * plan           (for admins, never run by libvirt) print on stdout the
 *                disks prepare would handle.
 *
 * The rules are lib/lifecycle.h's; this program keeps argv, stdin,
 * messages and the exit code.  Nothing is printed on stdout for what
 * libvirt runs: for migrate and restore, libvirt takes it as a
 * replacement domain XML.  Problems go to stderr (libvirt shows them)
 * and syslog; what was done (each overlay made or removed, how, and how
 * long it took) goes to syslog alone, facility daemon, ident
 * virt-overlay.  The hook never calls libvirt.
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
#include "lifecycle.h"
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

/* Record one thing done: syslog only (libvirt shows stderr as an error). */
static void
log_done (const char *line)
{
  char msg[2048];

  ovl_escape_controls (msg, sizeof msg, line);
  syslog (LOG_INFO, "domain %s: %s", domain_arg, msg);
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

/* Carry out OP through the lifecycle rules and say what went wrong. */
static int
run (const struct ovl_config *cfg, enum ovl_op op, const char *reason)
{
  CLEANUP_DOMAIN struct ovl_domain *dom = NULL;
  struct ovl_outcome o;
  size_t i;
  int status;

  if (!(dom = load_domain (cfg))) {
    report (op == OVL_OP_RELEASE ? LOG_WARNING : LOG_ERR, "%s%s",
            op == OVL_OP_RELEASE ? "release: " : "", ovl_error_msg ());
    return op == OVL_OP_RELEASE ? 0 : 1;
  }
  status = ovl_lifecycle_run (cfg, op, dom, reason, deadline, &o);
  for (i = 0; i < o.ndone; i++)
    log_done (o.done[i]);
  for (i = 0; i < o.nlines; i++)
    report (status ? LOG_ERR : LOG_WARNING, "%s", o.lines[i]);
  if (o.lost)
    report (LOG_ERR, "out of memory: some messages were lost");
  ovl_outcome_clear (&o);
  return status;
}

int
main (int argc, char **argv)
{
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  const char *op, *subop, *reason = NULL;
  enum { PREPARE, RELEASE, RESTORE, MIGRATE, PLAN } what;
  int64_t start = ovl_now_ms ();

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
  case PREPARE: return run (cfg, OVL_OP_PREPARE, NULL);
  case RELEASE: return run (cfg, OVL_OP_RELEASE, reason);
  case RESTORE: return run (cfg, OVL_OP_RESTORE, NULL);
  case MIGRATE: return run (cfg, OVL_OP_MIGRATE, NULL);
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
