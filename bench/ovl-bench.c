/* ovl-bench: where the time goes, measured in one run on one machine.
 *
 * Contenders run interleaved (one round = each contender once) so that
 * drift of the machine cancels; we print the median of each and its ratio
 * to qemu-img create.  Every contender is a whole process, as libvirt
 * would run it.
 *
 *   ovl-bench [--runs N] [--section create|hook|storm|rss|all] BUILDDIR
 *
 * Sections: create (1, 4, 16 overlays: qemu-img, cold/warm qsd, pool
 * hit), hook (1- and 8-disk prepare, warm and pool hit, and a do-nothing
 * program with the same libraries), storm (16 prepares at once), rss
 * (hook peak RSS; qsd RSS after 10 and 1000 creations).
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
#include <glob.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *builddir, *qemu_img, *dir;
static int runs = 31;
static char conf_nopool[512], conf_pool[512], conf_two[512];
#define POOL_SIZE 16

static void
use_pool (bool on)
{
  setenv ("VIRT_OVERLAY_CONFIG", on ? conf_pool : conf_nopool, 1);
}

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
static void run (char *const argv[], const char *in);

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

/* Wait until no refiller is at work and every pool in DIR holds
 * POOL_SIZE: then a pool contender starts from a full pool, and no
 * refiller runs behind the next contender's back. */
static int
pool_ready (void)
{
  glob_t g;
  int n = 0;
  if (glob (path ("%s/.virt-overlay-pool/*/ready-*.qcow2", dir), 0, NULL, &g) == 0)
    n = (int) g.gl_pathc;
  globfree (&g);
  return n;
}

static void
pool_settle (void)
{
  for (int tries = 0; tries < 2000; tries++) {
    glob_t g;
    if (glob (path ("%s/.virt-overlay-pool/*/lock", dir), 0, NULL, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; i++) {
        int fd = open (g.gl_pathv[i], O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
          flock (fd, LOCK_EX);
          close (fd);
        }
      }
    }
    globfree (&g);
    if (pool_ready () >= POOL_SIZE)
      return;
    if (tries % 50 == 0) {
      char *argv[] = { path ("%s/cli/virt-overlay", builddir), "pool", "fill", (char *) base, NULL };
      use_pool (true);
      run (argv, NULL);
    }
    else {
      struct timespec ts = { 0, 2 * 1000 * 1000 };
      nanosleep (&ts, NULL);
    }
  }
  fprintf (stderr, "ovl-bench: the pool never filled\n");
  exit (1);
}

/* Leave K ready overlays in the pool (to time a take that triggers a refill). */
static void
pool_drain_to (int k)
{
  glob_t g;
  if (glob (path ("%s/.virt-overlay-pool/*/ready-*.qcow2", dir), 0, NULL, &g) == 0)
    for (size_t i = (size_t) k; i < g.gl_pathc; i++)
      unlink (g.gl_pathv[i]);
  globfree (&g);
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
    double *hit = calloc ((size_t) runs, sizeof (double));
    double *two = calloc ((size_t) runs, sizeof (double));
    setenv ("VIRT_OVERLAY_CONFIG", conf_two, 1);
    vo_create (2);              /* both daemons up */
    clean_outputs ();
    use_pool (false);
    vo_create (1);              /* make sure qsd is up */
    clean_outputs ();
    for (int r = 0; r < runs; r++) {
      use_pool (false);
      TIME (qi[r], qemu_img_seq (n));
      TIME (warm[r], vo_create (n));
      setenv ("VIRT_OVERLAY_CONFIG", conf_two, 1);
      TIME (two[r], vo_create (n));
      use_pool (false);
      qsd_quit ();
      TIME (cold[r], vo_create (n));
      use_pool (true);
      pool_settle ();
      TIME (hit[r], vo_create (n));
      pool_settle ();
    }
    double mq = median (qi, runs), mw = median (warm, runs), mc = median (cold, runs);
    double mh = median (hit, runs), mt = median (two, runs);
    printf ("%2d overlay(s): qemu-img create x%-2d %7.2f ms | virt-overlay cold qsd %7.2f ms (%.2fx)"
            " | warm %7.2f ms (%.2fx) | warm, qsd_daemons = 2 %7.2f ms (%.2fx) | pool hit %6.2f ms (%.2fx)\n",
            n, n, mq, mc, mc / mq, mw, mw / mq, mt, mt / mq, mh, mh / mq);
    free (qi); free (warm); free (cold); free (hit); free (two);
  }
}

/* ---- the hook ---- */

/* A domain with N persistent disks on BASE, overlays DIR/hNAME-i.qcow2. */
static char *
write_domain (const char *name, int n, bool ephemeral)
{
  char *file = strdup (path ("%s/%s.xml", dir, name));
  FILE *f = fopen (file, "w");
  fprintf (f, "<domain type='qemu'><name>%s</name>"
           "<uuid>11111111-2222-3333-4444-%012d</uuid><metadata>"
           "<ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>", name, (int) strlen (name) * 7 + n);
  for (int i = 0; i < n; i++)
    fprintf (f, "<ovl:disk target='vd%c' mode='%s'/>", 'a' + i, ephemeral ? "ephemeral" : "persistent");
  fprintf (f, "</ovl:overlays></metadata><devices>");
  for (int i = 0; i < n; i++)
    fprintf (f, "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
             "<source file='%s/h%s-%d.qcow2'/><backingStore type='file'><format type='qcow2'/>"
             "<source file='%s'/><backingStore/></backingStore><target dev='vd%c' bus='virtio'/></disk>",
             dir, name, i, base, 'a' + i);
  fprintf (f, "</devices></domain>\n");
  fclose (f);
  return file;
}

static void
rm_hook_outputs (const char *name, int n)
{
  for (int i = 0; i < n; i++)
    unlink (path ("%s/h%s-%d.qcow2", dir, name, i));
  unlink (path ("%s/state/domains/11111111-2222-3333-4444-%012d", dir, (int) strlen (name) * 7 + n));
}

static pid_t
spawn_hook (const char *name, const char *xml)
{
  char *argv[] = { path ("%s/hook/virt-overlay-hook", builddir), (char *) name,
                   "prepare", "begin", "-", NULL };
  return spawn (argv, xml);
}

static void
hook_once (const char *name, const char *xml)
{
  reap (spawn_hook (name, xml));
}

static void
noop_once (void)
{
  char *argv[] = { path ("%s/bench/noop", builddir), NULL };
  run (argv, NULL);
}

static void
section_hook (void)
{
  static const int disks[] = { 1, 8 };
  printf ("\n== the hook, prepare begin, whole process (%d rounds, medians) ==\n", runs);
  for (size_t s = 0; s < 2; s++) {
    int n = disks[s];
    char name[32];
    double *qi = calloc ((size_t) runs, sizeof (double));
    double *warm = calloc ((size_t) runs, sizeof (double));
    double *hit = calloc ((size_t) runs, sizeof (double));
    double *hite = calloc ((size_t) runs, sizeof (double));
    double *hitr = calloc ((size_t) runs, sizeof (double));
    double *noop = calloc ((size_t) runs, sizeof (double));
    snprintf (name, sizeof name, "p%d", n);
    char *xml = write_domain (name, n, false);
    char ename[32];
    snprintf (ename, sizeof ename, "e%d", n);
    char *exml = write_domain (ename, n, true);
    for (int r = 0; r < runs; r++) {
      use_pool (false);
      TIME (qi[r], qemu_img_seq (n));
      TIME (noop[r], noop_once ());
      TIME (warm[r], hook_once (name, xml));
      rm_hook_outputs (name, n);
      use_pool (true);
      pool_settle ();
      TIME (hit[r], hook_once (name, xml));
      rm_hook_outputs (name, n);
      pool_settle ();
      TIME (hite[r], hook_once (ename, exml));
      rm_hook_outputs (ename, n);
      pool_settle ();
      if (n == 1) {
        pool_drain_to (POOL_SIZE / 2 + 1);
        TIME (hitr[r], hook_once (name, xml));
        rm_hook_outputs (name, n);
        pool_settle ();
      }
    }
    double mq = median (qi, runs), mw = median (warm, runs), mh = median (hit, runs);
    double mhe = median (hite, runs), mn = median (noop, runs);
    printf ("%d-disk domain: qemu-img create x%d %7.2f ms | hook warm qsd %7.2f ms (%.2fx)"
            " | hook pool hit %5.2f ms (%.2fx; ephemeral %5.2f ms, %.2fx)\n",
            n, n, mq, mw, mw / mq, mh, mh / mq, mhe, mhe / mq);
    if (n == 1) {
      double mr = median (hitr, runs);
      printf ("               do-nothing program linked with libxml2+yajl %5.2f ms (%.2fx of qemu-img);"
              " pool hit = %.2fx of it\n", mn, mn / mq, mh / mn);
      printf ("               pool hit that reaches the low-water mark and starts a refiller"
              " %5.2f ms (%.2fx of qemu-img, %.2fx of do-nothing)\n", mr, mr / mq, mr / mn);
    }
    free (qi); free (warm); free (hit); free (hite); free (hitr); free (noop); free (xml); free (exml);
  }
}

/* 16 one-disk prepares at once, as when many domains start together. */
/* POOL: 0 no pool, 1 pool, 2 no pool and two daemons */
static void
storm_once (int pool, double *lat, double *all)
{
  pid_t pids[16];
  double t0 = now_ms ();
  char *xmls[16];
  char names[16][16];

  for (int i = 0; i < 16; i++) {
    snprintf (names[i], sizeof names[i], "s%d", i);
    xmls[i] = write_domain (names[i], 1, false);
  }
  if (pool != 2)
    use_pool (pool);
  else
    setenv ("VIRT_OVERLAY_CONFIG", conf_two, 1);
  t0 = now_ms ();
  for (int i = 0; i < 16; i++)
    pids[i] = spawn_hook (names[i], xmls[i]);
  /* Each hook's own latency: reap in the order they finish. */
  for (int done = 0; done < 16; done++) {
    int status;
    struct rusage ru;
    pid_t p = wait4 (-1, &status, 0, &ru);
    if (p == -1)
      die ("wait4");
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
      fprintf (stderr, "ovl-bench: a hook in the storm failed\n");
      exit (1);
    }
    for (int i = 0; i < 16; i++)
      if (pids[i] == p)
        lat[i] = now_ms () - t0;
  }
  *all = now_ms () - t0;
  for (int i = 0; i < 16; i++) {
    rm_hook_outputs (names[i], 1);
    free (xmls[i]);
  }
}

static void
section_storm (void)
{
  int rounds = runs < 21 ? runs : 21;
  double *qi = calloc ((size_t) rounds, sizeof (double));
  double *np = calloc ((size_t) rounds, sizeof (double));
  double *wp = calloc ((size_t) rounds, sizeof (double));
  double *lat_np = calloc ((size_t) rounds * 16, sizeof (double));
  double *lat_wp = calloc ((size_t) rounds * 16, sizeof (double));
  double *tw = calloc ((size_t) rounds, sizeof (double));
  double *lat_tw = calloc ((size_t) rounds * 16, sizeof (double));

  printf ("\n== start storm: 16 one-disk prepares at once (%d rounds, medians) ==\n", rounds);
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ms ();
    qemu_img_concurrent (16);
    qi[r] = now_ms () - t0;
    clean_outputs ();
    storm_once (0, lat_np + r * 16, &np[r]);
    storm_once (2, lat_tw + r * 16, &tw[r]);
    use_pool (true);
    pool_settle ();
    storm_once (1, lat_wp + r * 16, &wp[r]);
    pool_settle ();
  }
  double mq = median (qi, rounds), mn = median (np, rounds), mw = median (wp, rounds);
  double mt = median (tw, rounds);
  printf ("16 concurrent qemu-img create %7.2f ms | 16 hooks, no pool %7.2f ms (%.2fx)"
          " | no pool, qsd_daemons = 2 %7.2f ms (%.2fx) | 16 hooks, pool %7.2f ms (%.2fx)\n",
          mq, mn, mn / mq, mt, mt / mq, mw, mw / mq);
  printf ("  per-hook latency, no pool: p50 %.2f ms p99 %.2f ms | pool: p50 %.2f ms p99 %.2f ms\n",
          percentile (lat_np, rounds * 16, 0.5), percentile (lat_np, rounds * 16, 0.99),
          percentile (lat_wp, rounds * 16, 0.5), percentile (lat_wp, rounds * 16, 0.99));
  free (qi); free (np); free (wp); free (lat_np); free (lat_wp); free (tw); free (lat_tw);
}

static long
qsd_rss_kb (void)
{
  char buf[256];
  FILE *f = fopen (path ("%s/run/qsd.sock.pid", dir), "r");
  long pid = 0, kb = -1;
  if (!f)
    return -1;
  if (fscanf (f, "%ld", &pid) != 1)
    pid = 0;
  fclose (f);
  if (!(f = fopen (path ("/proc/%ld/status", pid), "r")))
    return -1;
  while (fgets (buf, sizeof buf, f))
    if (sscanf (buf, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose (f);
  return kb;
}

static void
section_rss (void)
{
  long after10 = -1, after1000 = -1;
  char *xml = write_domain ("r1", 1, false);

  printf ("\n== memory ==\n");
  use_pool (false);
  /* qsd up first: wait4's figure includes the children a process reaped,
   * and a hook that starts qsd reaps its launcher. */
  vo_create (1);
  clean_outputs ();
  peak_rss_kb = 0;
  hook_once ("r1", xml);
  rm_hook_outputs ("r1", 1);
  printf ("hook peak RSS, warm qsd: %ld KiB\n", peak_rss_kb);
  use_pool (true);
  pool_settle ();
  peak_rss_kb = 0;
  hook_once ("r1", xml);
  rm_hook_outputs ("r1", 1);
  printf ("hook peak RSS, pool hit: %ld KiB\n", peak_rss_kb);
  pool_settle ();
  free (xml);

  /* One overlay per call, 1000 calls, on a fresh daemon... */
  use_pool (false);
  qsd_quit ();
  for (int c = 0; c < 1000; c++) {
    vo_create (1);
    clean_outputs ();
    if (c == 9)
      after10 = qsd_rss_kb ();
  }
  after1000 = qsd_rss_kb ();
  printf ("qsd RSS, one overlay per call: after 10 creations %ld KiB, after 1000 %ld KiB (%+.1f%%)\n",
          after10, after1000, 100.0 * (after1000 - after10) / after10);

  /* ... and in batches of 10, where qsd runs 10 jobs at once. */
  qsd_quit ();
  long after100 = -1, after200 = -1, after2000;
  for (int b = 0; b < 200; b++) {
    vo_create (10);
    clean_outputs ();
    if (b == 0)
      after10 = qsd_rss_kb ();
    if (b == 9)
      after100 = qsd_rss_kb ();
    if (b == 19)
      after200 = qsd_rss_kb ();
    if (b == 99)
      after1000 = qsd_rss_kb ();
  }
  after2000 = qsd_rss_kb ();
  printf ("qsd RSS, batches of 10: after 10 creations %ld KiB, after 1000 %ld KiB (%+.1f%%)\n",
          after10, after1000, 100.0 * (after1000 - after10) / after10);
  printf ("  trajectory: 10 %ld, 100 %ld, 200 %ld, 1000 %ld, 2000 %ld KiB"
          " (1000 -> 2000: %+.1f%%)\n", after10, after100, after200, after1000, after2000,
          100.0 * (after2000 - after1000) / after1000);
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
    fprintf (stderr, "usage: ovl-bench [--runs N] [--section create|hook|storm|rss|all] BUILDDIR\n");
    return 2;
  }
  builddir = argv[optind];
  /* The refiller of this build, which the hook and the CLI start. */
  {
    char abs[PATH_MAX];
    if (!realpath (path ("%s/hook/virt-overlay-refill", builddir), abs))
      die ("realpath of the refiller");
    setenv ("VIRT_OVERLAY_REFILL", abs, 1);
  }
  qemu_img = getenv ("QEMU_IMG") ? getenv ("QEMU_IMG") : "/usr/bin/qemu-img";
  if (!(dir = mkdtemp (tmpl)))
    die ("mkdtemp");
  chmod (dir, 0711);
  base = strdup (path ("%s/base.qcow2", dir));
  {
    char *argv2[] = { (char *) qemu_img, "create", "-q", "-f", "qcow2", (char *) base, "1G", NULL };
    run (argv2, NULL);
  }
  for (int p = 0; p < 3; p++) {
    char *conf = p == 2 ? conf_two : p ? conf_pool : conf_nopool;
    snprintf (conf, sizeof conf_pool, "%s/%s.conf", dir, p == 2 ? "two" : p ? "pool" : "nopool");
    f = fopen (conf, "w");
    fprintf (f, "qsd_socket = %s/run%s/qsd.sock\noverlay_dirs = %s\nbase_dirs = %s\n"
             "state_dir = %s/state\nmanaged_save_dir = %s/save\npool_size = %d\n"
             "qsd_daemons = %d\n",
             dir, p == 2 ? "2" : "", dir, dir, dir, dir, p == 1 ? POOL_SIZE : 0, p == 2 ? 2 : 1);
    if (getenv ("QSD"))
      fprintf (f, "qsd_binary = %s\n", getenv ("QSD"));
    fclose (f);
  }
  use_pool (false);

  if (!strcmp (section, "create") || !strcmp (section, "all"))
    section_create ();
  if (!strcmp (section, "hook") || !strcmp (section, "all"))
    section_hook ();
  if (!strcmp (section, "storm") || !strcmp (section, "all"))
    section_storm ();
  if (!strcmp (section, "rss") || !strcmp (section, "all"))
    section_rss ();

  qsd_quit ();
  for (int d = 0; d < 2; d++) {
    char *argv4[] = { path ("%s/tests/qmp-cmd", builddir),
                      d ? path ("%s/run2/qsd.sock.1", dir) : path ("%s/run2/qsd.sock", dir),
                      "quit", NULL };
    pid_t pid = spawn (argv4, NULL);
    waitpid (pid, NULL, 0);
  }
  {
    char *argv3[] = { "/bin/rm", "-rf", (char *) dir, NULL };
    run (argv3, NULL);
  }
  return 0;
}
