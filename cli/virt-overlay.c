/* virt-overlay: the command line of the overlay engine.
 *
 *   virt-overlay create [OPTIONS] BASE OVERLAY...
 *
 * Makes one qcow2 overlay per OVERLAY on BASE, in one batch through
 * qemu-storage-daemon, all or nothing.  This program prints; the library
 * only reports.  It never links libvirt or libxml2.
 */
#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "error.h"
#include "overlay.h"
#include "pool.h"
#include "util.h"

static const char *prog = "virt-overlay";

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage: %s create [--backing-format qcow2|raw] [--cluster-size BYTES]\n"
           "                    [--lazy-refcounts on|off] [--extended-l2 on|off]\n"
           "                    [--size BYTES] BASE OVERLAY...\n"
           "       %s pool fill [create's options] BASE [DIR...]\n"
           "       %s pool status | pool flush\n"
           "       %s status [--json] [--connect URI] [DOMAIN...]\n"
           "       %s gc [--dry-run] [--json] [--connect URI]\n"
           "       %s reset [--disk TARGET] [--json] [--connect URI] DOMAIN\n"
           "       %s clone [--mode persistent|ephemeral] [--json] [--connect URI] SOURCE NEW\n"
           "       %s --help | --version\n"
           "\n"
           "create makes qcow2 overlays on BASE through qemu-storage-daemon, all or\n"
           "none (taking ready ones from the warm pool when pool_size > 0).\n"
           "pool fill tops up the pool of BASE in each DIR (default: the first of\n"
           "overlay_dirs); status lists the pools; flush removes every pooled overlay.\n"
           "status shows what virt-overlay made for which domain, the pools and the\n"
           "daemons (through libvirt, read-only).\n"
           "gc removes what virt-overlay made for domains libvirt no longer knows,\n"
           "temporary files of dead callers and pools whose base changed.\n"
           "reset removes a shut-off domain's persistent overlays that virt-overlay\n"
           "made, so that its next start makes fresh ones from the base.\n"
           "clone defines NEW as a linked clone of SOURCE: new overlays on the same\n"
           "bases, made when NEW first starts.\n"
           "Configuration: $VIRT_OVERLAY_CONFIG or %s\n",
           prog, prog, prog, prog, prog, prog, prog, prog, OVL_CONFIG_DEFAULT_PATH);
}

static int
die_usage (const char *what)
{
  fprintf (stderr, "%s: %s\nTry '%s --help'.\n", prog, what, prog);
  return 2;
}

/* The options of create (and pool fill) into a request template. */
static int
parse_request_options (int argc, char **argv, const struct ovl_config *cfg,
                       struct ovl_request *tmpl)
{
  static const struct option opts[] = {
    { "backing-format", required_argument, NULL, 'F' },
    { "cluster-size", required_argument, NULL, 'c' },
    { "lazy-refcounts", required_argument, NULL, 'l' },
    { "extended-l2", required_argument, NULL, 'e' },
    { "size", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c, i, r;

  ovl_request_defaults (tmpl, cfg);
  while ((c = getopt_long (argc, argv, "+F:c:l:e:s:h", opts, &i)) != -1) {
    if (c == 'h') {
      usage (stdout);
      exit (0);
    }
    if (c == '?' || c == ':')
      return die_usage ("bad option");
    /* Short or long, by the long name. */
    for (i = 0; opts[i].name && opts[i].val != c; i++)
      ;
    if (!opts[i].name)
      return die_usage ("bad option");
    if ((r = ovl_request_set_option (tmpl, opts[i].name, optarg)) == -1) {
      fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
      return 2;
    }
  }
  return 0;
}

static struct ovl_config *
load_config (void)
{
  struct ovl_config *cfg = ovl_config_load ();
  if (!cfg)
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
  return cfg;
}

static int
cmd_create (int argc, char **argv)
{
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  struct ovl_request tmpl = { 0 };
  CLEANUP_FREE struct ovl_request *reqs = NULL;
  CLEANUP_FREE struct ovl_result *res = NULL;
  int i, n, status = 0;

  if (!(cfg = load_config ()))
    return 1;
  if ((status = parse_request_options (argc, argv, cfg, &tmpl)) != 0)
    return status;
  if (argc - optind < 2)
    return die_usage ("create needs BASE and at least one OVERLAY");

  tmpl.base = argv[optind];
  n = argc - optind - 1;
  if (!(reqs = calloc ((size_t) n, sizeof *reqs)) || !(res = calloc ((size_t) n, sizeof *res))) {
    fprintf (stderr, "%s: out of memory\n", prog);
    return 1;
  }
  for (i = 0; i < n; i++) {
    reqs[i] = tmpl;
    reqs[i].overlay = argv[optind + 1 + i];
  }
  const struct ovl_create_opts opts = { .supplier = ovl_pool_supplier (cfg) };
  if (ovl_overlay_create (cfg, reqs, res, (size_t) n,
                          ovl_now_ms () + cfg->timeout_ms, &opts) == -1) {
    bool said = false;
    for (i = 0; i < n; i++)
      if (res[i].error) {
        fprintf (stderr, "%s: %s\n", prog, res[i].error);
        said = true;
      }
    /* An error of the whole batch (the daemon, say) is no overlay's. */
    if (!said)
      fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    status = 1;
  }
  else if (ovl_pool_refill_detached (cfg, reqs, res, (size_t) n) == -1)
    fprintf (stderr, "%s: warning: %s\n", prog, ovl_error_msg ());
  for (i = 0; i < n; i++)
    ovl_result_clear (&res[i]);
  return status;
}

static int
cmd_pool (int argc, char **argv)
{
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  const char *what = argc > 1 ? argv[1] : "";

  if (!(cfg = load_config ()))
    return 1;
  if (strcmp (what, "status") == 0 && argc == 2) {
    CLEANUP_FREE char *s = ovl_pool_status (cfg);
    if (!s) {
      fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
      return 1;
    }
    printf ("pool_size = %u\n%s", cfg->pool_size, s);
    return 0;
  }
  if (strcmp (what, "flush") == 0 && argc == 2) {
    long busy = 0, n = ovl_pool_flush (cfg, &busy);
    if (n == -1) {
      fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
      return 1;
    }
    printf ("removed %ld pooled overlays\n", n);
    if (busy > 0)
      printf ("left %ld pools that a refill is filling: flush again when it is done\n", busy);
    return 0;
  }
  if (strcmp (what, "fill") == 0) {
    struct ovl_request tmpl = { 0 };
    int status, i, ndirs;

    if ((status = parse_request_options (argc - 1, argv + 1, cfg, &tmpl)) != 0)
      return status;
    optind++;                   /* past "fill" */
    if (argc - optind < 1)
      return die_usage ("pool fill needs BASE");
    if (cfg->pool_size == 0) {
      fprintf (stderr, "%s: pool_size is 0 in the configuration\n", prog);
      return 1;
    }
    tmpl.base = argv[optind];
    ndirs = argc - optind - 1;
    /* One deadline for the whole command, however many directories. */
    int64_t deadline = ovl_now_ms () + cfg->timeout_ms;
    for (i = 0; i < (ndirs ? ndirs : 1); i++) {
      const char *dir = ndirs ? argv[optind + 1 + i] : cfg->overlay_dirs.dir[0];
      if (ovl_pool_fill (cfg, &tmpl, dir, -1, deadline) == -1) {
        fprintf (stderr, "%s: %s: %s\n", prog, dir, ovl_error_msg ());
        status = 1;
      }
    }
    return status;
  }
  return die_usage ("pool needs fill, status or flush");
}

/* The subcommands that need libvirt: virt-overlay-admin's, run in our
 * place (VIRT_OVERLAY_ADMIN names another build's). */
static int
run_admin (char **argv)
{
  const char *p = getenv ("VIRT_OVERLAY_ADMIN");
  const char *admin = p && *p ? p : LIBEXECDIR "/virt-overlay-admin";

  execv (admin, argv);
  fprintf (stderr, "%s: %s needs %s (built with libvirt): %m\n", prog, argv[1], admin);
  return 1;
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("%s %s\n", prog, PACKAGE_VERSION);
    return 0;
  }
  if (strcmp (argv[1], "create") == 0)
    return cmd_create (argc - 1, argv + 1);
  if (strcmp (argv[1], "pool") == 0)
    return cmd_pool (argc - 1, argv + 1);
  if (strcmp (argv[1], "status") == 0)
    return run_admin (argv);
  if (strcmp (argv[1], "gc") == 0)
    return run_admin (argv);
  if (strcmp (argv[1], "reset") == 0)
    return run_admin (argv);
  if (strcmp (argv[1], "clone") == 0)
    return run_admin (argv);
  fprintf (stderr, "%s: unknown command '%s'\n", prog, argv[1]);
  return 2;
}
