/* virt-overlay-refill: tops up one warm pool (lib/pool.h), in the
 * background.  The hook and virt-overlay create start it, detached, when
 * a domain start took from a pool or found it empty:
 *
 *   virt-overlay-refill [--lock-fd N] [--backing-format qcow2|raw]
 *                       [--cluster-size BYTES] [--lazy-refcounts on|off]
 *                       [--extended-l2 on|off] [--size BYTES] BASE DIR
 *
 * BASE and the options say what the pool holds (the options default to
 * the configuration's, as in virt-overlay create), DIR is the overlay
 * directory it lives in.  --lock-fd N: descriptor N is that pool's lock,
 * taken by whoever started us, so that of many starts at once only one
 * starts a refiller per pool; without it the lock is taken here, and a
 * pool another refiller holds is left to it.
 *
 * It runs at idle priority, after a short delay (domains tend to start
 * together, at boot or autostart: let the burst pass, then make the
 * batch), and within timeout_ms.  Its stdio is /dev/null when detached,
 * so every outcome goes to syslog (facility daemon, ident virt-overlay),
 * and to stderr as well.  Exit status 0 (topped up, or nothing to do), 1
 * (failed), 2 (bad usage).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "error.h"
#include "overlay.h"
#include "pool.h"
#include "util.h"

#define REFILL_DELAY_MS 100

static void
usage (FILE *f)
{
  fprintf (f, "Usage: " OVL_REFILL_PROGRAM " [--lock-fd N] [--backing-format qcow2|raw]\n"
           "         [--cluster-size BYTES] [--lazy-refcounts on|off] [--extended-l2 on|off]\n"
           "         [--size BYTES] BASE DIR\n");
}

/* Let a burst of starts pass, and use only what the machine has spare. */
static void
go_idle (void)
{
  struct sched_param sp = { 0 };
  struct timespec ts = { 0, REFILL_DELAY_MS * 1000000L };

  sched_setscheduler (0, SCHED_IDLE, &sp);
  nanosleep (&ts, NULL);
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "backing-format", required_argument, NULL, 0 },
    { "cluster-size", required_argument, NULL, 0 },
    { "lazy-refcounts", required_argument, NULL, 0 },
    { "extended-l2", required_argument, NULL, 0 },
    { "size", required_argument, NULL, 0 },
    { "lock-fd", required_argument, NULL, 'L' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  struct ovl_request tmpl = { 0 };
  const char *dir;
  int c, i, lockfd = -1;
  uint64_t v;
  long made;
  int64_t t0;

  openlog ("virt-overlay", LOG_PID | LOG_PERROR, LOG_DAEMON);
  if (!(cfg = ovl_config_load ())) {
    syslog (LOG_ERR, "pool refill: %s", ovl_error_msg ());
    return 1;
  }
  ovl_request_defaults (&tmpl, cfg);
  while ((c = getopt_long (argc, argv, "", opts, &i)) != -1) {
    switch (c) {
    case 0:
      if (ovl_request_set_option (&tmpl, opts[i].name, optarg) == -1) {
        syslog (LOG_ERR, "pool refill: --%s: %s", opts[i].name, ovl_error_msg ());
        return 2;
      }
      break;
    case 'L':
      if (ovl_parse_u64 (optarg, &v) == -1 || v < 3 || v > INT_MAX ||
          fcntl ((int) v, F_GETFD) == -1) {
        syslog (LOG_ERR, "pool refill: --lock-fd %s: not an open descriptor", optarg);
        return 2;
      }
      lockfd = (int) v;
      break;
    case 'h':
      usage (stdout);
      return 0;
    default:
      usage (stderr);
      return 2;
    }
  }
  if (argc - optind != 2) {
    usage (stderr);
    return 2;
  }
  tmpl.base = argv[optind];
  dir = argv[optind + 1];

  go_idle ();
  t0 = ovl_now_ms ();
  made = ovl_pool_fill (cfg, &tmpl, dir, lockfd, t0 + cfg->timeout_ms);
  if (made == -1) {
    syslog (LOG_ERR, "pool refill of '%s' in %s failed: %s", tmpl.base, dir, ovl_error_msg ());
    return 1;
  }
  if (made > 0)
    syslog (LOG_INFO, "pool refill of '%s' in %s: made %ld in %lld ms", tmpl.base, dir, made,
            (long long) (ovl_now_ms () - t0));
  return 0;
}
