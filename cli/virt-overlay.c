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
#include "util.h"

static const char *prog = "virt-overlay";

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage: %s create [--backing-format qcow2|raw] [--cluster-size BYTES]\n"
           "                    [--lazy-refcounts on|off] [--extended-l2 on|off]\n"
           "                    [--size BYTES] BASE OVERLAY...\n"
           "       %s --help | --version\n"
           "\n"
           "Creates qcow2 overlays on BASE through qemu-storage-daemon, all or none.\n"
           "Configuration: $VIRT_OVERLAY_CONFIG or %s\n",
           prog, prog, OVL_CONFIG_DEFAULT_PATH);
}

static int
die_usage (const char *what)
{
  fprintf (stderr, "%s: %s\nTry '%s --help'.\n", prog, what, prog);
  return 2;
}

static int
cmd_create (int argc, char **argv)
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
  CLEANUP_CONFIG struct ovl_config *cfg = NULL;
  struct ovl_request tmpl = { 0 }, *reqs;
  const char *format = NULL, *cluster = NULL, *lazy = NULL, *ext = NULL, *size = NULL;
  int c, i, n, status = 0;

  while ((c = getopt_long (argc, argv, "+F:c:l:e:s:h", opts, NULL)) != -1) {
    switch (c) {
    case 'F': format = optarg; break;
    case 'c': cluster = optarg; break;
    case 'l': lazy = optarg; break;
    case 'e': ext = optarg; break;
    case 's': size = optarg; break;
    case 'h': usage (stdout); return 0;
    default: return die_usage ("bad option");
    }
  }
  if (argc - optind < 2)
    return die_usage ("create needs BASE and at least one OVERLAY");

  if (!(cfg = ovl_config_load ())) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 1;
  }
  ovl_request_defaults (&tmpl, cfg);
  if ((format && ovl_format_parse (format, &tmpl.base_format) == -1) ||
      (cluster && (ovl_parse_u64 (cluster, &tmpl.cluster_size) == -1 ||
                   ovl_check_cluster_size (tmpl.cluster_size) == -1)) ||
      (lazy && ovl_parse_bool (lazy, &tmpl.lazy_refcounts) == -1) ||
      (ext && ovl_parse_bool (ext, &tmpl.extended_l2) == -1) ||
      (size && ovl_parse_u64 (size, &tmpl.size) == -1)) {
    fprintf (stderr, "%s: %s\n", prog, ovl_error_msg ());
    return 2;
  }

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
  for (i = 0; i < n; i++)
    ovl_request_clear (&reqs[i]);
  free (reqs);
  return status;
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
  fprintf (stderr, "%s: unknown command '%s'\n", prog, argv[1]);
  return 2;
}
