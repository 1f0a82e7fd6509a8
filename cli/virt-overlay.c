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
           "       %s --help | --version\n"
           "\n"
           "create makes qcow2 overlays on BASE through qemu-storage-daemon, all or\n"
           "none (taking ready ones from the warm pool when pool_size > 0).\n"
           "pool fill tops up the pool of BASE in each DIR (default: the first of\n"
           "overlay_dirs); status lists the pools; flush removes every pooled overlay.\n"
           "Configuration: $VIRT_OVERLAY_CONFIG or %s\n",
           prog, prog, prog, prog, OVL_CONFIG_DEFAULT_PATH);
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
  int c, r = 0;

  ovl_request_defaults (tmpl, cfg);
  while ((c = getopt_long (argc, argv, "+F:c:l:e:s:h", opts, NULL)) != -1) {
    switch (c) {
    case 'F': r = ovl_format_parse (optarg, &tmpl->base_format); break;
    case 'c':
      r = ovl_parse_u64 (optarg, &tmpl->cluster_size);
      if (r == 0)
        r = ovl_check_cluster_size (tmpl->cluster_size);
      break;
    case 'l': r = ovl_parse_bool (optarg, &tmpl->lazy_refcounts); break;
    case 'e': r = ovl_parse_bool (optarg, &tmpl->extended_l2); break;
    case 's': r = ovl_parse_u64 (optarg, &tmpl->size); break;
    case 'h': usage (stdout); exit (0);
    default: return die_usage ("bad option");
    }
    if (r == -1) {
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
  struct ovl_request tmpl = { 0 }, *reqs;
  int i, n, status = 0;

  if (!(cfg = load_config ()))
    return 1;
  if ((status = parse_request_options (argc, argv, cfg, &tmpl)) != 0)
    return status;
  if (argc - optind < 2)
    return die_usage ("create needs BASE and at least one OVERLAY");

  tmpl.base = argv[optind];
  n = argc - optind - 1;
  if (!(reqs = calloc ((size_t) n, sizeof *reqs))) {
    fprintf (stderr, "%s: out of memory\n", prog);
    return 1;
  }
  for (i = 0; i < n; i++) {
    reqs[i] = tmpl;
    reqs[i].overlay = argv[optind + 1 + i];
  }
  if (ovl_overlay_create (cfg, reqs, (size_t) n,
                          ovl_now_ms () + cfg->timeout_ms) == -1) {
    for (i = 0; i < n; i++)
      if (reqs[i].error)
        fprintf (stderr, "%s: %s\n", prog, reqs[i].error);
    status = 1;
  }
  else
    ovl_pool_fill_detached (cfg, reqs, (size_t) n);
  for (i = 0; i < n; i++)
    ovl_request_clear (&reqs[i]);
  free (reqs);
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
    printf ("pool_size = %u\n%s", cfg->pool_size, s ? s : "");
    return 0;
  }
  if (strcmp (what, "flush") == 0 && argc == 2) {
    printf ("removed %ld pooled overlays\n", ovl_pool_flush (cfg));
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
      CLEANUP_FREE char *where = NULL;
      const char *dir = ndirs ? argv[optind + 1 + i] : cfg->overlay_dirs.dir[0];
      struct ovl_request r = tmpl;
      if (asprintf (&where, "%s/-", dir) == -1)
        return 1;
      r.overlay = where;
      if (ovl_pool_fill (cfg, &r, 1, deadline) == -1) {
        fprintf (stderr, "%s: %s: %s\n", prog, dir, ovl_error_msg ());
        status = 1;
      }
    }
    return status;
  }
  return die_usage ("pool needs fill, status or flush");
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (argc >= 2 && strcmp (argv[1], OVL_POOL_FILL_ARG) == 0)
    return ovl_pool_fill_main (argc, argv);   /* a detached refiller */
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
  fprintf (stderr, "%s: unknown command '%s'\n", prog, argv[1]);
  return 2;
}
