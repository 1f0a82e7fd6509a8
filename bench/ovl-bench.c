/* ovl-bench: where the time goes, measured in one run on one machine.
 *
 * Contenders run interleaved (one round = each contender once) so that
 * drift of the machine cancels; we print the median of each and its ratio
 * to qemu-img create.  Every contender is a whole process, as libvirt
 * would run it.
 *
 *   ovl-bench [--runs N] [--section create|hook|storm|rss|all] BUILDDIR
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *builddir, *qemu_img, *dir;
static int runs = 31;

static double
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
die (const char *what)
{
  perror (what);
  exit (1);
}

/* Spawn ARGV with stdin from IN (or /dev/null) and stdout/stderr on
 * /dev/null; return its pid. */
static pid_t
spawn (char *const argv[], const char *in)
{
  posix_spawn_file_actions_t fa;
  pid_t pid;

  posix_spawn_file_actions_init (&fa);
  posix_spawn_file_actions_addopen (&fa, 0, in ? in : "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen (&fa, 1, "/dev/null", O_WRONLY, 0);
  if (!getenv ("OVL_BENCH_VERBOSE"))
    posix_spawn_file_actions_addopen (&fa, 2, "/dev/null", O_WRONLY, 0);
  if (posix_spawn (&pid, argv[0], &fa, NULL, argv, environ) != 0)
    die (argv[0]);
  posix_spawn_file_actions_destroy (&fa);
  return pid;
}

static long peak_rss_kb;

static void
reap (pid_t pid)
{
  int status;
  struct rusage ru;

  if (wait4 (pid, &status, 0, &ru) == -1)
    die ("wait4");
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    fprintf (stderr, "ovl-bench: a contender failed (status %d); rerun with OVL_BENCH_VERBOSE=1\n", status);
    exit (1);
  }
  if (ru.ru_maxrss > peak_rss_kb)
    peak_rss_kb = ru.ru_maxrss;
}

static void
run (char *const argv[], const char *in)
{
  reap (spawn (argv, in));
}

static char *
path (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
static char *
path (const char *fmt, ...)
{
  static char bufs[64][512];
  static int next;
  char *b = bufs[next++ % 64];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (b, 512, fmt, ap);
  va_end (ap);
  return b;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, (size_t) n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double
percentile (double *v, int n, double p)
{
  int i;
  qsort (v, (size_t) n, sizeof *v, cmp_double);
  i = (int) (p * (n - 1) + 0.5);
  return v[i];
}

static void
rm_glob (const char *prefix, int n)
{
  for (int i = 0; i < n; i++)
    unlink (path ("%s%d.qcow2", prefix, i));
}

/* ---- contenders ---- */

static const char *base;

static void
qemu_img_seq (int n)
{
  for (int i = 0; i < n; i++) {
    char *argv[] = { (char *) qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2",
                     "-b", (char *) base, path ("%s/q%d.qcow2", dir, i), NULL };
    run (argv, NULL);
  }
}

static void
qemu_img_concurrent (int n)
{
  pid_t pids[64];
  for (int i = 0; i < n; i++) {
    char *argv[] = { (char *) qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2",
                     "-b", (char *) base, path ("%s/q%d.qcow2", dir, i), NULL };
    pids[i] = spawn (argv, NULL);
  }
  for (int i = 0; i < n; i++)
    reap (pids[i]);
}

static void
vo_create (int n)
{
  char *argv[80];
  int k = 0;
  argv[k++] = path ("%s/cli/virt-overlay", builddir);
  argv[k++] = "create";
  argv[k++] = (char *) base;
  for (int i = 0; i < n; i++)
    argv[k++] = path ("%s/v%d.qcow2", dir, i);
  argv[k] = NULL;
  run (argv, NULL);
}

static void
qsd_quit (void)
{
  char *argv[] = { path ("%s/tests/qmp-cmd", builddir), path ("%s/run/qsd.sock", dir), "quit", NULL };
  pid_t pid = spawn (argv, NULL);
  waitpid (pid, NULL, 0);
  /* The daemon is gone once its socket refuses; the next caller replaces it. */
  unlink (path ("%s/run/qsd.sock", dir));
}

static void
clean_outputs (void)
{
  rm_glob (path ("%s/q", dir), 64);
  rm_glob (path ("%s/v", dir), 64);
}

/* Time one contender once. */
#define TIME(dst, stmt) do { double t0_ = now_ms (); stmt; (dst) = now_ms () - t0_; clean_outputs (); } while (0)

static void
section_create (void)
{
  static const int sizes[] = { 1, 4, 16 };
  printf ("== virt-overlay create (whole process, %d interleaved rounds, medians) ==\n", runs);
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int n = sizes[s];
    double *qi = calloc ((size_t) runs, sizeof (double));
    double *warm = calloc ((size_t) runs, sizeof (double));
    double *cold = calloc ((size_t) runs, sizeof (double));
    vo_create (1);              /* make sure qsd is up */
    clean_outputs ();
    for (int r = 0; r < runs; r++) {
      TIME (qi[r], qemu_img_seq (n));
      TIME (warm[r], vo_create (n));
      qsd_quit ();
      TIME (cold[r], vo_create (n));
    }
    double mq = median (qi, runs), mw = median (warm, runs), mc = median (cold, runs);
    printf ("%2d overlay(s): qemu-img create x%-2d %7.2f ms | virt-overlay warm %7.2f ms (%.2fx) | cold qsd %7.2f ms (%.2fx)\n",
            n, n, mq, mw, mw / mq, mc, mc / mq);
    free (qi); free (warm); free (cold);
  }
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "runs", required_argument, NULL, 'r' },
    { "section", required_argument, NULL, 's' },
    { NULL, 0, NULL, 0 },
  };
  const char *section = "all";
  char tmpl[] = "/tmp/ovl-bench.XXXXXX";
  int c;
  FILE *f;

  while ((c = getopt_long (argc, argv, "r:s:", opts, NULL)) != -1) {
    if (c == 'r') runs = atoi (optarg);
    else if (c == 's') section = optarg;
    else return 2;
  }
  if (optind != argc - 1 || runs < 1) {
    fprintf (stderr, "usage: ovl-bench [--runs N] [--section create|all] BUILDDIR\n");
    return 2;
  }
  builddir = argv[optind];
  qemu_img = getenv ("QEMU_IMG") ? getenv ("QEMU_IMG") : "/usr/bin/qemu-img";
  if (!(dir = mkdtemp (tmpl)))
    die ("mkdtemp");
  chmod (dir, 0711);
  base = strdup (path ("%s/base.qcow2", dir));
  {
    char *argv2[] = { (char *) qemu_img, "create", "-q", "-f", "qcow2", (char *) base, "1G", NULL };
    run (argv2, NULL);
  }
  f = fopen (path ("%s/conf", dir), "w");
  fprintf (f, "qsd_socket = %s/run/qsd.sock\noverlay_dirs = %s\nbase_dirs = %s\n"
           "state_dir = %s/state\n", dir, dir, dir, dir);
  if (getenv ("QSD"))
    fprintf (f, "qsd_binary = %s\n", getenv ("QSD"));
  fclose (f);
  setenv ("VIRT_OVERLAY_CONFIG", path ("%s/conf", dir), 1);

  if (!strcmp (section, "create") || !strcmp (section, "all"))
    section_create ();

  qsd_quit ();
  {
    char *argv3[] = { "/bin/rm", "-rf", (char *) dir, NULL };
    run (argv3, NULL);
  }
  (void) percentile; (void) qemu_img_concurrent;
  return 0;
}
