/* Faults, one call at a time (tests/faults.c): each case runs once to
 * count the allocations, or the system calls, lib/ makes, then once per
 * call with that one failing: allocations return NULL, I/O calls fail
 * with EIO (writes with ENOSPC, a full disk).  Every run must succeed or
 * fail with an error that says why: "out of memory", or the system's
 * message for the errno (never a missing attribute, bad input or an
 * empty message).  The cases with side effects check that the failure
 * left nothing the next call cannot handle: after an allocation
 * failure, no temporary file and no job in qsd at once; after any
 * failure, the next start and stop work and leave nothing behind.
 * Under make check-valgrind, valgrind checks that no failure leaks.
 * FAULTS_VERBOSE=1 prints every failure's message. */
#include <config.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/xattr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

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
#include "qsd.h"
#include "qmp.h"
#include "util.h"
#include "faults.h"
#include "testutil.h"

#define UUID "4a1f0c6e-8d2b-4c3a-9e5f-0123456789ab"

static char *dir, *img, *state;
static struct t_qsd qsd;
static struct ovl_config *cfg, *pool_cfg;
static const char *qemu_img;

static bool
exists (const char *p)
{
  struct stat st;
  return lstat (p, &st) == 0;
}

static char *
in_img (const char *name)
{
  char *p;
  if (asprintf (&p, "%s/%s", img, name) == -1)
    abort ();
  return p;
}

/* A configuration over the test's directory, with its ledgers in
 * STATE_DIR (another host's, when not the test's own). */
static struct ovl_config *
config_at (const char *state_dir, unsigned pool_size)
{
  char *text;
  struct ovl_config *c;

  if (asprintf (&text, "qsd_socket = %s\nqsd_spawn = off\noverlay_dirs = %s\nbase_dirs = %s\n"
                "state_dir = %s\nmanaged_save_dir = %s\npool_size = %u\ntimeout_ms = 20000\n",
                qsd.sock, img, img, state_dir, dir, pool_size) == -1)
    abort ();
  c = ovl_config_parse ("test", text, strlen (text));
  free (text);
  if (!c)
    fail_msg ("config: %s", ovl_error_msg ());
  return c;
}

static struct ovl_config *
config (unsigned pool_size)
{
  return config_at (state, pool_size);
}

static int
setup (void **state_)
{
  qemu_img = getenv ("QEMU_IMG") && *getenv ("QEMU_IMG") ? getenv ("QEMU_IMG") : "qemu-img";
  t_require ("qemu-storage-daemon");
  dir = t_mkdtemp ();
  if (asprintf (&img, "%s/img", dir) == -1 || asprintf (&state, "%s/state", dir) == -1)
    abort ();
  mkdir (img, 0755);
  mkdir (state, 0700);
  /* A chain of two bases: base.qcow2 on base0.raw. */
  T_RUN ("'%s' create -q -f raw '%s/base0.raw' 16M && "
           "'%s' create -q -f qcow2 -F raw -b '%s/base0.raw' '%s/base.qcow2'",
           qemu_img, img, qemu_img, img, img);
  if (t_qsd_start (&qsd, dir) == -1) {
    fprintf (stderr, "cannot start qemu-storage-daemon\n");
    return -1;
  }
  /* A refiller that does nothing: the pool cases fill by themselves. */
  setenv (OVL_REFILL_ENV, "/bin/true", 1);
  cfg = config (0);
  pool_cfg = config (2);
  return 0;
}

static int
teardown (void **state_)
{
  int rc = 0;

  ovl_config_free (cfg);
  ovl_config_free (pool_cfg);
  /* A daemon that went away, even where no case noticed, fails. */
  if (!t_qsd_running (&qsd)) {
    fprintf (stderr, "qemu-storage-daemon went away: %s\n", t_qsd_state (&qsd));
    rc = -1;
  }
  t_qsd_stop (&qsd);
  t_rmtree (dir);
  free (dir); free (img); free (state);
  return rc;
}

/* ---- the sweep ---- */

struct fault_case {
  const char *name;
  enum t_fault kind;          /* what fails */
  /* One run: 0, or -1 with the error set. */
  int (*run) (void);
  /* After each run (RC its result, FAILED whether an allocation was
   * failed in it): check what it left and clean up for the next.  May
   * be NULL. */
  void (*after) (int rc, bool failed);
};

int main (void);
static enum t_fault fault_kind;  /* of the sweep under way */

/* What an error must say when a call of KIND failed. */
static bool
says_why (enum t_fault kind, const char *msg)
{
  if (kind == T_FAULT_ALLOC)
    return strstr (msg, "out of memory") != NULL;
  return strstr (msg, strerror (EIO)) || strstr (msg, strerror (ENOSPC));
}

static void
sweep (const struct fault_case *c)
{
  const char *kind = c->kind == T_FAULT_ALLOC ? "allocations" : "system calls";
  long total, n, runs = 0, errors = 0, recovered = 0;
  int rc;

  fault_kind = c->kind;
  ovl_error_clear ();
  t_fault_arm (c->kind, LONG_MAX);
  rc = c->run ();
  total = t_fault_disarm ();
  if (rc != 0)
    fail_msg ("%s: fails with nothing failed: %s; qemu-storage-daemon: %s",
              c->name, ovl_error_msg (), t_qsd_state (&qsd));
  if (c->after)
    c->after (rc, false);
  assert_true (total > 0);

  for (n = 0; n < total; n++) {
    int fds = t_open_fds ();

    const char *fn;

    ovl_error_clear ();
    t_fault_arm (c->kind, n);
    rc = c->run ();
    t_fault_disarm ();
    fn = t_fault_failed () ? t_fault_failed () : "nothing";
    runs++;
    if (t_open_fds () != fds)
      fail_msg ("%s: %s #%ld failed: %d descriptors open before, %d after (%s)",
                c->name, fn, n, fds, t_open_fds (), rc ? ovl_error_msg () : "success");
    if (rc != 0) {
      const char *msg = ovl_error_msg ();
      errors++;
      if (getenv ("FAULTS_VERBOSE"))
        printf ("# %s: %s #%ld failed: %s\n", c->name, fn, n, msg);
      /* Never taken for something else (a missing attribute, bad
       * input), never a message lost on the way. */
      if (!says_why (c->kind, msg)) {
        if (!getenv ("FAULTS_KEEP_GOING"))
          fail_msg ("%s: %s #%ld failed, and the error says: %s; qemu-storage-daemon: %s",
                    c->name, fn, n, msg, t_qsd_state (&qsd));
        printf ("# BAD %s: %s #%ld failed, and the error says: %s\n", c->name, fn, n, msg);
      }
    }
    else if (t_fault_failed ()) {
      recovered++;
      if (getenv ("FAULTS_VERBOSE"))
        printf ("# %s: %s #%ld failed, and the call went on (called from main%+td)\n",
                c->name, fn, n, (char *) t_fault_caller () - (char *) main);
    }
    if (c->after)
      c->after (rc, t_fault_failed () != NULL);
  }
  printf ("# %s: %ld %s, each failed once: %ld errors, %ld recovered\n",
          c->name, total, kind, errors, recovered);
  /* The sweep reached lib/'s calls, and failing them was noticed. */
  assert_true (errors > 0);
}

/* ---- pure parsers ---- */

static int
run_config (void)
{
  static const char text[] =
    "# every key\n"
    "qsd_socket = /run/virt-overlay/qsd.sock\nqsd_spawn = on\nqsd_daemons = 2\n"
    "overlay_dirs = /var/lib/a,/var/lib/b\nbase_dirs = /srv/base, /srv/golden\n"
    "state_dir = /var/lib/virt-overlay\ntimeout_ms = 5000\npool_size = 4\n"
    "cluster_size = 65536\nlazy_refcounts = on\nextended_l2 = off\n"
    "qsd_binary = /usr/bin/qemu-storage-daemon\nmanaged_save_dir = /var/lib/libvirt/qemu/save\n";
  struct ovl_config *c = ovl_config_parse ("oom.conf", text, sizeof text - 1);

  ovl_config_free (c);
  return c ? 0 : -1;
}

static void
test_config (void **state_)
{
  const struct fault_case c = { "config", T_FAULT_ALLOC, run_config, NULL };
  sweep (&c);
}

static char *plan_xml;
static size_t plan_xml_len;

static int
run_domxml (void)
{
  struct ovl_domain *d = ovl_domxml_parse (plan_xml, plan_xml_len, cfg);
  char *plan;

  if (!d)
    return -1;
  plan = ovl_domain_plan (d);
  ovl_domain_free (d);
  free (plan);
  return plan ? 0 : -1;
}

static void
test_domxml (void **state_)
{
  const struct fault_case c = { "domxml", T_FAULT_ALLOC, run_domxml, NULL };
  char *path = t_data_path ("domxml/several-with-policy.xml");

  plan_xml = t_read_file (path, &plan_xml_len);
  assert_non_null (plan_xml);
  sweep (&c);
  free (plan_xml);
  free (path);
}

static int
run_json (void)
{
  static const char text[] =
    "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", \"id\": \"j1\"}, "
    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"
    "{\"return\": [{\"id\": \"j1\", \"type\": \"create\", \"status\": \"concluded\", "
    "\"current-progress\": 1, \"total-progress\": 1, \"error\": \"caf\\u00e9 \\\"q\\\"\"}], "
    "\"id\": 7}\r\n";
  struct ovl_json_parser *p = ovl_json_parser_new (1 << 20, 32);
  struct ovl_json *v, *built;
  char *s;
  int rc = -1, got = 0;

  if (!p)
    return -1;
  if (ovl_json_parser_set_label (p, "oom") == -1 || ovl_json_parser_feed (p, text, sizeof text - 1) == -1)
    goto out;
  while ((v = ovl_json_parser_next (p))) {
    s = ovl_json_to_string (v);
    ovl_json_free (v);
    if (!s)
      goto out;
    free (s);
    got++;
  }
  if (got != 2) {
    if (!*ovl_error_msg ())
      ovl_error ("oom: %d messages parsed", got);
    goto out;
  }
  built = ovl_json_object_build ("s:driver", "qcow2", "u:size", (uint64_t) 1 << 30,
                                 "b:extended-l2", false,
                                 "o:file", ovl_json_object_build ("s:driver", "file",
                                                                  "s:filename", "/img/a", NULL),
                                 NULL);
  if (!built)
    goto out;
  s = ovl_json_to_string (built);
  ovl_json_free (built);
  if (!s)
    goto out;
  free (s);
  rc = 0;
 out:
  ovl_json_parser_free (p);
  return rc;
}

static void
test_json (void **state_)
{
  const struct fault_case c = { "json", T_FAULT_ALLOC, run_json, NULL };
  sweep (&c);
}

/* ---- files and qsd ---- */

static int
run_ledger (void)
{
  struct ovl_ledger *l = ovl_ledger_open (state, UUID, ovl_now_ms () + 20000);
  struct ovl_file_id id = { .dev = 1, .ino = 2, .btime_sec = 3, .token = "0123456789abcdef0123456789abcdef" };
  int rc = -1;

  if (!l)
    return -1;
  l->domain = l->domain ? l->domain : ovl_strdup ("oom-domain");
  if (!l->domain || !ovl_ledger_add (l, "/img/a.qcow2", &id) ||
      !ovl_ledger_add (l, "/img/b.qcow2", &id) || ovl_ledger_save (l) == -1)
    goto out;
  ovl_ledger_free (l);
  if (!(l = ovl_ledger_load (state, UUID)))
    return -1;
  if (l->n != 2) {
    ovl_error ("oom: %zu entries read back", l->n);
    goto out;
  }
  rc = 0;
 out:
  ovl_ledger_free (l);
  return rc;
}

static void
after_ledger (int rc, bool failed)
{
  char *file;
  struct ovl_ledger *l;

  /* Whatever failed, what is on disk is a ledger that loads. */
  l = ovl_ledger_load (state, UUID);
  if (!l)
    fail_msg ("ledger: after a failed allocation it does not load: %s", ovl_error_msg ());
  ovl_ledger_free (l);
  if (asprintf (&file, "%s/domains/" UUID, state) == -1)
    abort ();
  unlink (file);
  free (file);
}

static void
test_ledger (enum t_fault kind)
{
  const struct fault_case c = { "ledger", kind, run_ledger, after_ledger };
  sweep (&c);
}

static char *image_base;

static int
run_image (void)
{
  struct ovl_image out;
  return ovl_image_probe_chain (&cfg->base_dirs, image_base, OVL_FMT_QCOW2, &out);
}

static void
test_image (enum t_fault kind)
{
  const struct fault_case c = { "image", kind, run_image, NULL };

  image_base = in_img ("base.qcow2");
  sweep (&c);
  free (image_base);
}

/* No job is left in qsd. */
static void
assert_no_jobs (void)
{
  struct ovl_qmp *q = ovl_qmp_connect (qsd.sock, ovl_now_ms () + 10000);
  struct ovl_json *r;

  if (!q)
    fail_msg ("qsd: %s; qemu-storage-daemon: %s", ovl_error_msg (), t_qsd_state (&qsd));
  r = ovl_qmp_command (q, "query-jobs", NULL, ovl_now_ms () + 10000);
  if (!r)
    fail_msg ("qsd: %s; qemu-storage-daemon: %s", ovl_error_msg (), t_qsd_state (&qsd));
  if (ovl_json_array_len (ovl_json_get (r, "return")) != 0) {
    char *s = ovl_json_to_string (r);
    fail_msg ("jobs left in qsd: %s", s);
  }
  ovl_json_free (r);
  ovl_qmp_close (q);
}

/* Nothing in IMG but the bases, OVERLAYS (the names that may be there)
 * and the pool's directory. */
static void
assert_only (const char *const *overlays)
{
  DIR *d = opendir (img);
  struct dirent *e;

  assert_non_null (d);
  while ((e = readdir (d))) {
    const char *const *o;
    bool known = strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0 ||
      strcmp (e->d_name, "base0.raw") == 0 || strcmp (e->d_name, "base.qcow2") == 0 ||
      strncmp (e->d_name, ".virt-overlay-pool", 18) == 0;
    for (o = overlays; *o && !known; o++)
      known = strcmp (e->d_name, *o) == 0;
    if (!known)
      fail_msg ("left in the image directory: %s", e->d_name);
  }
  closedir (d);
}

/* A domain with an ephemeral vda and a persistent vdb. */
static struct ovl_domain *
domain (const struct ovl_config *c)
{
  char *xml;
  struct ovl_domain *d;

  if (asprintf (&xml,
                "<domain type='qemu'><name>oom</name><uuid>" UUID "</uuid>"
                "<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>"
                "<ovl:disk target='vda' mode='ephemeral'/><ovl:disk target='vdb' mode='persistent'/>"
                "</ovl:overlays></metadata><devices>"
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                "<source file='%s/vda.qcow2'/><backingStore type='file'><format type='qcow2'/>"
                "<source file='%s/base.qcow2'/><backingStore/></backingStore>"
                "<target dev='vda' bus='virtio'/></disk>"
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                "<source file='%s/vdb.qcow2'/><backingStore type='file'><format type='qcow2'/>"
                "<source file='%s/base.qcow2'/><backingStore/></backingStore>"
                "<target dev='vdb' bus='virtio'/></disk></devices></domain>",
                img, img, img, img) == -1)
    abort ();
  d = ovl_domxml_parse (xml, strlen (xml), c);
  free (xml);
  if (!d)
    fail_msg ("domain: %s", ovl_error_msg ());
  return d;
}

static struct ovl_domain *dom;
static const struct ovl_config *life_cfg;
static enum ovl_op life_op;

static int
run_lifecycle (void)
{
  struct ovl_outcome o;
  int rc = ovl_lifecycle_run (life_cfg, life_op, dom, NULL, ovl_now_ms () + 20000, &o);

  /* A release never stops libvirt: what it could not do is a warning. */
  if (life_op == OVL_OP_RELEASE && (o.nlines || o.lost))
    rc = -1;
  if (rc != 0) {
    if (o.nlines)
      ovl_error ("%s", o.lines[0]);
    else if (!o.lost)
      ovl_error ("the lifecycle failed without a line");
    else if (!*ovl_error_msg ())
      ovl_error ("the lifecycle failed, its line lost");
  }
  ovl_outcome_clear (&o);
  return rc;
}

static const char *const both[] = { "vda.qcow2", "vdb.qcow2", NULL };

/* Stop and start again, with no allocation failed: both work, whatever
 * the failed call left. */
static void
assert_next_start_works (void)
{
  struct ovl_outcome o;
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");

  if (ovl_lifecycle_run (life_cfg, OVL_OP_RELEASE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("release after a failure: %s", o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
  assert_false (exists (vda));
  if (ovl_lifecycle_run (life_cfg, OVL_OP_PREPARE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("prepare after a failure: %s", o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
  assert_true (exists (vda));
}

static struct ovl_request pool_tmpl;

/* Flush every pool.  The refiller the last prepare started (/bin/true)
 * may still hold a pool's lock: flush leaves such a pool, so again. */
static void
flush_pools (const struct ovl_config *c)
{
  long busy = 1;
  int i;

  for (i = 0; busy > 0 && i < 500; i++) {
    if (i)
      usleep (10000);
    assert_true (ovl_pool_flush (c, &busy) >= 0);
  }
  assert_int_equal (busy, 0);
}

/* With the pool on: make it hold exactly pool_size overlays again, so
 * that the next prepare takes from it. */
static void
fill_pool (void)
{
  if (!life_cfg->pool_size)
    return;
  flush_pools (life_cfg);
  assert_int_equal (ovl_pool_fill (life_cfg, &pool_tmpl, img, -1, ovl_now_ms () + 20000),
                    (long) life_cfg->pool_size);
}

/* Nothing left over: no temporary file, no job in qsd.  A failed
 * allocation leaves nothing at once; a failed system call may fail the
 * cleanup too, which the next caller finishes. */
static void
assert_clean (void)
{
  assert_only (both);
  assert_no_jobs ();
}

static void
after_prepare (int rc, bool failed)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");

  if (fault_kind == T_FAULT_ALLOC)
    assert_clean ();
  if (rc == 0) {
    assert_true (exists (vda));
    assert_true (exists (vdb));
  }
  assert_next_start_works ();
  /* Back to nothing: stopped, the persistent overlay discarded. */
  {
    struct ovl_outcome o;
    assert_int_equal (ovl_lifecycle_run (life_cfg, OVL_OP_RELEASE, dom, NULL,
                                         ovl_now_ms () + 20000, &o), 0);
    ovl_outcome_clear (&o);
  }
  assert_false (exists (vda));
  assert_clean ();
  unlink (vdb);
  fill_pool ();
}

static void
after_release (int rc, bool failed)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");
  struct ovl_outcome o;

  if (fault_kind == T_FAULT_ALLOC)
    assert_only (both);
  if (rc == 0)
    assert_false (exists (vda));
  /* A release that failed is repeated, as libvirt would on the next
   * stop: it removes what is left. */
  assert_int_equal (ovl_lifecycle_run (life_cfg, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  assert_false (exists (vda));
  assert_true (exists (vdb));
  assert_clean ();
  /* Started again for the next run. */
  assert_int_equal (ovl_lifecycle_run (life_cfg, OVL_OP_PREPARE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  assert_true (exists (vda));
}

static void
lifecycle_sweeps (const struct ovl_config *c, enum t_fault kind,
                  const char *prepare_name, const char *release_name)
{
  const struct fault_case prepare = { prepare_name, kind, run_lifecycle, after_prepare };
  const struct fault_case release = { release_name, kind, run_lifecycle, after_release };
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");
  struct ovl_outcome o;

  life_cfg = c;
  dom = domain (c);
  life_op = OVL_OP_PREPARE;
  fill_pool ();
  sweep (&prepare);

  assert_int_equal (ovl_lifecycle_run (c, OVL_OP_PREPARE, dom, NULL, ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  life_op = OVL_OP_RELEASE;
  sweep (&release);
  assert_int_equal (ovl_lifecycle_run (c, OVL_OP_RELEASE, dom, NULL, ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  unlink (vdb);
  ovl_domain_free (dom);
  dom = NULL;
}

static void
test_lifecycle (enum t_fault kind)
{
  lifecycle_sweeps (cfg, kind, "prepare", "release");
}

/* ---- an incoming migration's adoption ----
 * Host B (a ledger of its own over the same directory) takes vda over
 * from host A, whose QEMU holds it, while calls fail.  Whatever B's
 * prepare did, B's release (A's QEMU still holding it: the migration
 * failed) leaves the file with A's token, and A's stop removes it. */

static struct ovl_config *host_b;
static int a_qemu = -1;
static char a_token[OVL_TOKEN_LEN + 1];

static void
token_of (const char *path, char token[OVL_TOKEN_LEN + 1])
{
  ssize_t n = getxattr (path, OVL_TOKEN_XATTR, token, OVL_TOKEN_LEN);
  assert_int_equal (n, OVL_TOKEN_LEN);
  token[OVL_TOKEN_LEN] = '\0';
}

/* A started, its QEMU holding vda, B's migrate begin done. */
static void
migration_under_way (void)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
  struct ovl_outcome o;

  if (ovl_lifecycle_run (cfg, OVL_OP_PREPARE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("prepare on A: %s", o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
  token_of (vda, a_token);
  a_qemu = open (vda, O_RDONLY | O_CLOEXEC);
  assert_true (a_qemu >= 0);
  assert_int_equal (fcntl (a_qemu, F_OFD_SETLK, &fl), 0);
  if (ovl_lifecycle_run (host_b, OVL_OP_MIGRATE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("migrate begin on B: %s", o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
}

static int
run_adopt (void)
{
  life_cfg = host_b;
  life_op = OVL_OP_PREPARE;
  return run_lifecycle ();
}

static void
after_adopt (int rc, bool failed)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  char now[OVL_TOKEN_LEN + 1];
  struct ovl_outcome o;

  assert_int_equal (ovl_lifecycle_run (host_b, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  token_of (vda, now);
  if (strcmp (now, a_token) != 0)
    fail_msg ("after B's %s prepare and release, vda has token %s, not A's %s",
              rc ? "failed" : "successful", now, a_token);
  close (a_qemu);
  a_qemu = -1;
  assert_int_equal (ovl_lifecycle_run (cfg, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  assert_false (exists (vda));
  assert_no_jobs ();
  migration_under_way ();
}

/* Host B's configuration and the domain. */
static void
hosts_ab (void)
{
  char *state_b;

  if (asprintf (&state_b, "%s/state-b", dir) == -1)
    abort ();
  mkdir (state_b, 0700);
  host_b = config_at (state_b, 0);
  free (state_b);
  dom = domain (cfg);
}

/* ... and A's side of a migration under way. */
static void
two_hosts (void)
{
  hosts_ab ();
  migration_under_way ();
}

/* ... and back to nothing: the persistent overlay and both hosts'
 * ledgers of the domain go (the other cases start from none). */
static void
two_hosts_done (void)
{
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");
  char *p;

  unlink (vdb);
  if (asprintf (&p, "%s/state-b", dir) == -1)
    abort ();
  t_rmtree (p);
  free (p);
  if (asprintf (&p, "%s/domains/" UUID, state) == -1)
    abort ();
  unlink (p);
  free (p);
  ovl_domain_free (dom);
  dom = NULL;
  ovl_config_free (host_b);
  host_b = NULL;
}

static void
test_adopt (enum t_fault kind)
{
  const struct fault_case adopt = { "adopting prepare", kind, run_adopt, after_adopt };
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_outcome o;

  two_hosts ();
  sweep (&adopt);
  close (a_qemu);
  a_qemu = -1;
  assert_int_equal (ovl_lifecycle_run (host_b, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  assert_int_equal (ovl_lifecycle_run (cfg, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  assert_false (exists (vda));
  two_hosts_done ();
}

/* The same with the pool: prepare takes from it. */

static int
run_pool_fill (void)
{
  long n = ovl_pool_fill (pool_cfg, &pool_tmpl, img, -1, ovl_now_ms () + 20000);
  return n < 0 ? -1 : 0;
}

static void
after_pool_fill (int rc, bool failed)
{
  char *status;

  if (fault_kind == T_FAULT_ALLOC)
    assert_clean ();
  /* The pool is whole after one more fill, whatever was left. */
  if (ovl_pool_fill (pool_cfg, &pool_tmpl, img, -1, ovl_now_ms () + 20000) < 0)
    fail_msg ("pool fill after a failure: %s", ovl_error_msg ());
  assert_clean ();
  status = ovl_pool_status (pool_cfg);
  assert_non_null (status);
  if (!strstr (status, " ready=2 "))
    fail_msg ("pool after a refill: %s", status);
  free (status);
  assert_int_equal (ovl_pool_flush (pool_cfg, NULL), 2);
}

static int
run_pool_status (void)
{
  char *s = ovl_pool_status (pool_cfg);
  free (s);
  return s ? 0 : -1;
}

static void
test_pool (enum t_fault kind)
{
  const struct fault_case fill = { "pool fill", kind, run_pool_fill, after_pool_fill };
  const struct fault_case status = { "pool status", kind, run_pool_status, NULL };
  CLEANUP_FREE char *base = in_img ("base.qcow2");

  ovl_request_defaults (&pool_tmpl, pool_cfg);
  pool_tmpl.base = base;
  pool_tmpl.base_format = OVL_FMT_QCOW2;
  sweep (&fill);

  assert_true (ovl_pool_fill (pool_cfg, &pool_tmpl, img, -1, ovl_now_ms () + 20000) == 2);
  sweep (&status);
  assert_int_equal (ovl_pool_flush (pool_cfg, NULL), 2);

  lifecycle_sweeps (pool_cfg, kind, "prepare from the pool", "release with the pool");
}

/* ---- gc, as if every domain were gone ---- */

static const struct ovl_config *gc_cfg;

/* The first thing left becomes the error: with nothing failed, gc
 * leaves nothing here but the persistent overlay. */
static void
gc_note (void *opaque, enum ovl_gc_action a, const char *kind, const char *path,
         const char *why)
{
  bool *left = opaque;

  /* vdb, the persistent disk: named and left, as it should be */
  if (strncmp (why, "a persistent overlay", 20) == 0)
    return;
  if (a == OVL_GC_LEFT && !*left) {
    *left = true;
    ovl_error ("gc left %s %s: %s", kind, path, why);
  }
}

static int
gc_once (void)
{
  bool left = false;
  const struct ovl_gc_ops ops = { t_gc_unknown, t_gc_unused, gc_note, &left };

  if (ovl_gc (gc_cfg, &ops, false, ovl_now_ms () + 20000) == -1)
    return -1;
  return left ? -1 : 0;
}

/* Something for each kind of garbage: a domain's ephemeral overlay, a
 * dead caller's temporary file and, with the pool, a pool whose base
 * changed.  The domain starts without the pool, so that no refiller
 * holds it. */
static void
gc_garbage (void)
{
  CLEANUP_FREE char *tmp = in_img (".virt-overlay-dead-1.tmp");
  struct ovl_outcome o;
  static long round;
  int fd;

  assert_int_equal (ovl_lifecycle_run (cfg, OVL_OP_PREPARE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  ovl_outcome_clear (&o);
  fd = open (tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  close (fd);
  if (gc_cfg->pool_size) {
    CLEANUP_FREE char *base = in_img ("base.qcow2");
    const struct timespec t[2] = { { 1000000000 + ++round, 0 }, { 1000000000 + round, 0 } };
    assert_int_equal (ovl_pool_fill (gc_cfg, &pool_tmpl, img, -1, ovl_now_ms () + 20000),
                      (long) gc_cfg->pool_size);
    assert_int_equal (utimensat (AT_FDCWD, base, t, 0), 0);
  }
}

static void
after_gc (int rc, bool failed)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");
  CLEANUP_FREE char *tmp = in_img (".virt-overlay-dead-1.tmp");
  CLEANUP_FREE char *status = NULL;

  /* What a failure left, the next gc removes, all of it. */
  if (gc_once () == -1)
    fail_msg ("gc after a failure: %s", ovl_error_msg ());
  assert_false (exists (vda));
  assert_false (exists (tmp));
  assert_true (exists (vdb));
  status = ovl_pool_status (gc_cfg);
  assert_non_null (status);
  if (*status)
    fail_msg ("pools left after gc: %s", status);
  assert_clean ();
  gc_garbage ();
}

static void
gc_sweep (const struct ovl_config *c, enum t_fault kind, const char *name)
{
  const struct fault_case gc = { name, kind, gc_once, after_gc };
  CLEANUP_FREE char *vdb = in_img ("vdb.qcow2");
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");

  CLEANUP_FREE char *base = in_img ("base.qcow2");

  gc_cfg = c;
  ovl_request_defaults (&pool_tmpl, c);
  pool_tmpl.base = base;
  pool_tmpl.base_format = OVL_FMT_QCOW2;
  dom = domain (cfg);
  /* The pools earlier cases left serve their key: gc keeps them. */
  flush_pools (c);
  gc_garbage ();
  sweep (&gc);
  assert_int_equal (gc_once (), 0);
  assert_false (exists (vda));
  unlink (vdb);
  ovl_domain_free (dom);
  dom = NULL;
}

static void
test_gc (enum t_fault kind)
{
  gc_sweep (cfg, kind, "gc");
  gc_sweep (pool_cfg, kind, "gc with the pool");
}

/* gc on a host that took an overlay from a migration's source that
 * never let go of it (the migration failed and the hook never got to
 * B's release): the source may still need it, so gc gives it back
 * rather than remove it; a dry run only says so. */
static void
gc_note_handed (void *opaque, enum ovl_gc_action a, const char *kind, const char *path,
                const char *why)
{
  int *handed = opaque;

  if (a == OVL_GC_LEFT && strstr (why, "never let go of it"))
    (*handed)++;
}

static void
test_gc_adopted (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  char now[OVL_TOKEN_LEN + 1];
  int handed = 0;
  const struct ovl_gc_ops ops = { t_gc_unknown, t_gc_unused, gc_note_handed, &handed };
  struct ovl_outcome o;

  two_hosts ();
  if (ovl_lifecycle_run (host_b, OVL_OP_PREPARE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("prepare on B: %s", o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
  close (a_qemu);
  a_qemu = -1;

  assert_int_equal (ovl_gc (host_b, &ops, true, ovl_now_ms () + 20000), 0);
  assert_int_equal (handed, 1);
  token_of (vda, now);
  assert_string_not_equal (now, a_token);
  assert_int_equal (ovl_gc (host_b, &ops, false, ovl_now_ms () + 20000), 0);
  assert_int_equal (handed, 2);
  token_of (vda, now);
  assert_string_equal (now, a_token);
  /* A owns it again: its stop removes it. */
  assert_int_equal (ovl_lifecycle_run (cfg, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  assert_int_equal (o.removed, 1);
  ovl_outcome_clear (&o);
  two_hosts_done ();
}

/* gc and an overlay another host took (a migration), whose entry here
 * was never let go of: the release here never came (a crash), or this
 * host's own take was never settled.  gc lets go as that release would
 * have, under the rule of the let-go marks (each names the holder that
 * let go, and only the holder the last mark let go to may mark next), so
 * that a late mark never stands for a claim that was not settled nor
 * overwrites a later holder's; where the rule forbids a mark, the entry
 * stays, to tell whose the file is should it come back.  These cases
 * run chains of migrations over three hosts with crashes in them; each
 * ends with the file gone and a cold start that works. */
struct gc_notes {
  int kept, let_go;
};

static void
gc_note_taken (void *opaque, enum ovl_gc_action a, const char *kind, const char *path,
               const char *why)
{
  struct gc_notes *n = opaque;

  if (a == OVL_GC_LEFT && strstr (why, "in case it comes back"))
    n->kept++;
  if (a == OVL_GC_LEFT && strstr (why, "let go of, that host owns it"))
    n->let_go++;
}

static struct gc_notes
gc_on (const struct ovl_config *c, bool dry_run)
{
  struct gc_notes n = { 0, 0 };
  const struct ovl_gc_ops ops = { t_gc_unknown, t_gc_unused, gc_note_taken, &n };

  assert_int_equal (ovl_gc (c, &ops, dry_run, ovl_now_ms () + 20000), 0);
  return n;
}

static void
run_ok (const struct ovl_config *c, enum ovl_op op, const char *reason, const char *what)
{
  struct ovl_outcome o;

  if (ovl_lifecycle_run (c, op, dom, reason, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("%s: %s", what, o.nlines ? o.lines[0] : "?");
  ovl_outcome_clear (&o);
}

static bool
refused (const struct ovl_config *c)
{
  struct ovl_outcome o;
  int rc = ovl_lifecycle_run (c, OVL_OP_PREPARE, dom, NULL, ovl_now_ms () + 20000, &o);

  ovl_outcome_clear (&o);
  return rc != 0;
}

static struct ovl_config *
third_host (void)
{
  CLEANUP_FREE char *state_c = NULL;

  if (asprintf (&state_c, "%s/state-c", dir) == -1)
    abort ();
  mkdir (state_c, 0700);
  return config_at (state_c, 0);
}

static void
third_host_done (struct ovl_config *c)
{
  CLEANUP_FREE char *state_c = NULL;

  if (asprintf (&state_c, "%s/state-c", dir) == -1)
    abort ();
  t_rmtree (state_c);
  ovl_config_free (c);
}

/* Host B's configuration and the domain, A's migration to B under way,
 * and B's prepare: B has taken the overlay (A's QEMU holds it still). */
/* The stop of the domain on host C: how many overlays it removed. */
static size_t
removed_at_stop (const struct ovl_config *c)
{
  struct ovl_outcome o;
  size_t n;

  if (ovl_lifecycle_run (c, OVL_OP_RELEASE, dom, NULL, ovl_now_ms () + 20000, &o) != 0)
    fail_msg ("stop: %s", o.nlines ? o.lines[0] : "?");
  n = o.removed;
  ovl_outcome_clear (&o);
  return n;
}

static void
b_takes_over (void)
{
  two_hosts ();
  run_ok (host_b, OVL_OP_PREPARE, NULL, "prepare on B");
}

/* A third host, C, takes the overlay in its turn: its migrate begin and
 * prepare (whoever's QEMU holds it meanwhile). */
static struct ovl_config *
c_takes_over (void)
{
  struct ovl_config *c = third_host ();

  run_ok (c, OVL_OP_MIGRATE, NULL, "migrate begin on C");
  run_ok (c, OVL_OP_PREPARE, NULL, "prepare on C");
  return c;
}

static bool
released_is (const char *path, const char *token)
{
  char v[OVL_TOKEN_LEN + 1];
  ssize_t n = getxattr (path, OVL_RELEASED_XATTR, v, sizeof v - 1);

  if (n < 0)
    return !token;
  v[n] = '\0';
  return token && strcmp (v, token) == 0;
}

static int
hold (const char *path)
{
  struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  assert_true (fd >= 0);
  assert_int_equal (fcntl (fd, F_OFD_SETLK, &fl), 0);
  return fd;
}

/* The end of each case: gc on every host, as an admin would after
 * crashes, leaves no file, and a cold start works on the first host. */
static void
settled (struct ovl_config *const *hosts, size_t n, const char *what)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  char now[OVL_TOKEN_LEN + 1] = "";
  size_t i, round;

  for (round = 0; round < 2; round++)
    for (i = 0; i < n; i++)
      gc_on (hosts[i], false);
  if (exists (vda)) {
    token_of (vda, now);
    fail_msg ("%s: after gc on every host vda is left, token %s", what, now);
  }
  run_ok (hosts[0], OVL_OP_PREPARE, NULL, "a cold start at the end");
  run_ok (hosts[0], OVL_OP_RELEASE, NULL, "its stop");
  assert_false (exists (vda));
}

/* A -> B went through, A's release never came: A's gc lets go (a dry
 * run says it would), and B's stop removes the file. */
static void
test_gc_taken (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  CLEANUP_FREE char *ledger_a = NULL;
  struct ovl_config *hosts[2];
  struct gc_notes n;

  b_takes_over ();
  close (a_qemu);               /* A's QEMU is gone; its release never comes */
  a_qemu = -1;

  n = gc_on (cfg, true);
  assert_int_equal (n.let_go, 0);
  assert_true (released_is (vda, NULL));
  n = gc_on (cfg, false);
  assert_int_equal (n.let_go, 1);
  assert_true (released_is (vda, a_token));
  assert_true (asprintf (&ledger_a, "%s/domains/" UUID, state) > 0);
  assert_false (exists (ledger_a));
  assert_int_equal (removed_at_stop (host_b), 1);
  hosts[0] = cfg, hosts[1] = host_b;
  settled (hosts, 2, "gc taken");
  two_hosts_done ();
}

/* A -> B went through, A's release never came; B -> C went through: B
 * may not let go (A never let go to it) and keeps its entry; A's gc
 * then lets go; C's stop gives the file back to B, whose gc removes it. */
static void
test_gc_taken_chain (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *host_c, *hosts[3];
  struct ovl_outcome o;
  int b_qemu;

  b_takes_over ();
  close (a_qemu);
  a_qemu = -1;
  b_qemu = hold (vda);
  host_c = c_takes_over ();
  close (b_qemu);
  assert_int_equal (ovl_lifecycle_run (host_b, OVL_OP_RELEASE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 0);
  assert_true (o.nlines == 1 && strstr (o.lines[0], "ledger entry is kept"));
  ovl_outcome_clear (&o);
  assert_true (released_is (vda, NULL));
  assert_int_equal (gc_on (cfg, false).let_go, 1);
  assert_true (released_is (vda, a_token));
  assert_int_equal (removed_at_stop (host_c), 0);
  assert_true (exists (vda));
  hosts[0] = host_c, hosts[1] = host_b, hosts[2] = cfg;
  settled (hosts, 3, "chain");
  third_host_done (host_c);
  two_hosts_done ();
}

/* A runs the domain; A -> B failed and B's release never came (B keeps
 * an unsettled take); A -> C begins, C takes the file from B's token;
 * B's gc may not let go, and keeps its entry; A -> C fails in its last
 * phase (A's QEMU holds no lock): C gives the file back, never removes
 * A's disk; with A's domain then saved, C's gc leaves it too. */
static void
gc_taken_failed (bool saved)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct flock un = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
  struct ovl_config *host_c, *hosts[3];
  char now[OVL_TOKEN_LEN + 1];

  b_takes_over ();
  host_c = c_takes_over ();
  assert_int_equal (gc_on (host_b, false).kept, 1);
  assert_true (released_is (vda, NULL));
  if (!saved)
    assert_int_equal (fcntl (a_qemu, F_OFD_SETLK, &un), 0);
  run_ok (host_c, OVL_OP_RELEASE, NULL, "C's release");
  assert_true (exists (vda));
  close (a_qemu);
  a_qemu = -1;
  if (saved) {
    run_ok (cfg, OVL_OP_RELEASE, "saved", "A's release, saved");
    gc_on (host_c, false);
    assert_true (exists (vda));
  }
  /* B's gc gives it back to A's token... */
  gc_on (host_b, false);
  token_of (vda, now);
  assert_string_equal (now, a_token);
  /* ...and A's stop removes it (a saved state's overlay stays). */
  if (!saved) {
    run_ok (cfg, OVL_OP_RELEASE, NULL, "A's stop");
    assert_false (exists (vda));
  }
  unlink (vda);
  hosts[0] = cfg, hosts[1] = host_b, hosts[2] = host_c;
  settled (hosts, 3, saved ? "failed, saved" : "failed");
  third_host_done (host_c);
  two_hosts_done ();
}

static void
test_gc_taken_failed (void **state_)
{
  gc_taken_failed (false);
}

static void
test_gc_taken_saved (void **state_)
{
  gc_taken_failed (true);
}

/* Saved on A (libvirt 10.5 or later says "saved"), restored on B, which
 * takes the overlay over.  With B_CRASHED, B's restore never ended (no
 * release): A's gc lets go of what B took (nothing of A's holds it
 * now), and A's state, restored on A again, takes it back.  Otherwise
 * the restored domain ran on B and stopped: B removed the overlay, and
 * A's gc drops the ledger that said "saved", which held nothing any
 * more. */
static void
restore_taken (bool b_crashed)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  CLEANUP_FREE char *ledger_a = NULL;
  struct ovl_config *hosts[2];
  char t1[OVL_TOKEN_LEN + 1], now[OVL_TOKEN_LEN + 1];
  struct gc_notes n;

  hosts_ab ();
  if (asprintf (&ledger_a, "%s/domains/" UUID, state) == -1)
    abort ();
  run_ok (cfg, OVL_OP_PREPARE, NULL, "cold start on A");
  token_of (vda, t1);
  run_ok (cfg, OVL_OP_RELEASE, "saved", "save on A");
  run_ok (host_b, OVL_OP_RESTORE, NULL, "restore begin on B");
  run_ok (host_b, OVL_OP_PREPARE, NULL, "restore on B");
  token_of (vda, now);
  assert_string_not_equal (now, t1);
  if (!b_crashed) {
    run_ok (host_b, OVL_OP_RELEASE, "destroyed", "stop on B");
    assert_false (exists (vda));
  }
  n = gc_on (cfg, false);
  assert_int_equal (n.let_go, b_crashed ? 1 : 0);
  assert_false (exists (ledger_a));
  if (b_crashed) {
    assert_true (released_is (vda, t1));
    run_ok (cfg, OVL_OP_RESTORE, NULL, "restore begin on A");
    run_ok (cfg, OVL_OP_PREPARE, NULL, "restore on A");
    assert_true (exists (vda));
    run_ok (cfg, OVL_OP_RELEASE, "destroyed", "stop on A");
    assert_false (exists (vda));
  }
  hosts[0] = cfg, hosts[1] = host_b;
  settled (hosts, 2, b_crashed ? "restore on B crashed" : "restored on B");
  two_hosts_done ();
}

static void
test_restore_taken (void **state_)
{
  restore_taken (false);
}

static void
test_restore_taken_crashed (void **state_)
{
  restore_taken (true);
}

/* A -> B went through, A's release never came; B -> C went through; a
 * start on A is refused (C runs it), and libvirt's release after it
 * finds A's entry.  With gc on A first (A let go, B let go after it),
 * that release must not overwrite B's mark, or C's stop would give the
 * file back to a token no ledger knows; without (the domain still
 * defined on A), B could not let go and kept its entry, A's release
 * lets go, and C's stop gives the file back to B, whose gc removes it. */
static void
chain_refused_start (bool gc_first)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *host_c, *hosts[3];
  int b_qemu, c_qemu;
  char b_token[OVL_TOKEN_LEN + 1], now[OVL_TOKEN_LEN + 1];

  b_takes_over ();
  token_of (vda, b_token);
  close (a_qemu);
  a_qemu = -1;
  if (gc_first)
    assert_int_equal (gc_on (cfg, false).let_go, 1);
  b_qemu = hold (vda);
  host_c = c_takes_over ();
  close (b_qemu);
  c_qemu = hold (vda);
  run_ok (host_b, OVL_OP_RELEASE, NULL, "B's release after B -> C");
  assert_true (released_is (vda, gc_first ? b_token : NULL));
  assert_true (refused (cfg));
  run_ok (cfg, OVL_OP_RELEASE, "failed", "A's release after the failed start");
  assert_true (released_is (vda, gc_first ? b_token : a_token));
  close (c_qemu);
  run_ok (host_c, OVL_OP_RELEASE, NULL, "C's stop");
  if (gc_first)
    assert_false (exists (vda));
  else {
    token_of (vda, now);
    assert_string_equal (now, b_token);
  }
  hosts[0] = host_c, hosts[1] = host_b, hosts[2] = cfg;
  settled (hosts, 3, "refused start");
  third_host_done (host_c);
  two_hosts_done ();
}

static void
test_chain_refused_start (void **state_)
{
  chain_refused_start (true);
  chain_refused_start (false);
}

/* A -> B went through, A's release never came and A keeps its entry
 * (the domain is still defined there); B -> A is tried: A's prepare
 * replaces its old entry, letting go of it first; the migration fails,
 * A gives the file back to B; B's stop removes it. */
static void
test_chain_adopt_back_failed (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *hosts[2];
  char now[OVL_TOKEN_LEN + 1], b_token[OVL_TOKEN_LEN + 1];
  int b_qemu;

  b_takes_over ();
  token_of (vda, b_token);
  close (a_qemu);
  a_qemu = -1;
  b_qemu = hold (vda);
  run_ok (cfg, OVL_OP_MIGRATE, NULL, "migrate begin on A (B -> A)");
  run_ok (cfg, OVL_OP_PREPARE, NULL, "prepare on A (B -> A)");
  assert_true (released_is (vda, a_token));
  run_ok (cfg, OVL_OP_RELEASE, "failed", "A's release: B -> A failed");
  token_of (vda, now);
  assert_string_equal (now, b_token);
  close (b_qemu);
  assert_int_equal (removed_at_stop (host_b), 1);
  hosts[0] = cfg, hosts[1] = host_b;
  settled (hosts, 2, "adopt back");
  two_hosts_done ();
}

/* A runs the domain; A -> B failed, B's release never came; A -> C:
 * C takes from B's token; A -> C fails, C's release never came; A's
 * domain is saved.  A start on B is refused, and the release after it
 * finds B's unsettled take: no let-go may come of it, or C's gc would
 * remove the saved domain's disk. */
static void
test_chain_refused_start_saved (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *host_c, *hosts[3];

  b_takes_over ();
  host_c = c_takes_over ();
  close (a_qemu);
  a_qemu = -1;
  run_ok (cfg, OVL_OP_RELEASE, "saved", "A's release, saved");
  assert_true (refused (host_b));
  run_ok (host_b, OVL_OP_RELEASE, "failed", "B's release after the failed start");
  assert_true (released_is (vda, NULL));
  gc_on (host_c, false);
  if (!exists (vda))
    fail_msg ("C's gc removed the disk of the domain saved on A");
  unlink (vda);
  hosts[0] = cfg, hosts[1] = host_b, hosts[2] = host_c;
  settled (hosts, 3, "refused start, saved");
  third_host_done (host_c);
  two_hosts_done ();
}

/* A -> B went through, A's release never came; B -> C went through: B
 * may not let go (A never did) and keeps its entry; C -> B: B's prepare
 * finds its own unsettled claim and refuses to take the file again (it
 * would forget the token the file may come back to); C runs on, and
 * gc everywhere settles it after C's stop. */
static void
test_chain_readopt (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *host_c, *hosts[3];
  struct ovl_outcome o;
  int b_qemu, c_qemu;

  b_takes_over ();
  close (a_qemu);               /* A's release never comes */
  a_qemu = -1;
  b_qemu = hold (vda);
  host_c = c_takes_over ();
  close (b_qemu);
  run_ok (host_b, OVL_OP_RELEASE, "migrated", "B's release after B -> C");
  c_qemu = hold (vda);
  run_ok (host_b, OVL_OP_MIGRATE, NULL, "migrate begin on B (C -> B)");
  assert_int_equal (ovl_lifecycle_run (host_b, OVL_OP_PREPARE, dom, NULL,
                                       ovl_now_ms () + 20000, &o), 1);
  assert_true (o.nlines == 1 && strstr (o.lines[0], "was never settled"));
  ovl_outcome_clear (&o);
  run_ok (host_b, OVL_OP_RELEASE, "failed", "B's release: C -> B refused");
  assert_true (exists (vda));
  close (c_qemu);
  run_ok (host_c, OVL_OP_RELEASE, NULL, "C's stop");
  hosts[0] = cfg, hosts[1] = host_b, hosts[2] = host_c;
  settled (hosts, 3, "readopt");
  third_host_done (host_c);
  two_hosts_done ();
}

/* A -> B went through; A's release was cut short after its let-go mark,
 * before its ledger save (A keeps its entry); B's stop removes the file.
 * A cold start on C makes a new one; A's gc must not mark that file
 * (not the one its entry names): C -> B then goes through without a
 * crash, and B's stop removes the file. */
static void
test_chain_stale_entry (void **state_)
{
  CLEANUP_FREE char *vda = in_img ("vda.qcow2");
  struct ovl_config *host_c, *hosts[3];
  int c_qemu;

  b_takes_over ();
  close (a_qemu);
  a_qemu = -1;
  assert_int_equal (setxattr (vda, OVL_RELEASED_XATTR, a_token, strlen (a_token), 0), 0);
  run_ok (host_b, OVL_OP_RELEASE, NULL, "B's stop");
  assert_false (exists (vda));
  host_c = third_host ();
  run_ok (host_c, OVL_OP_PREPARE, NULL, "cold start on C");
  gc_on (cfg, false);
  assert_true (released_is (vda, NULL));
  c_qemu = hold (vda);
  run_ok (host_b, OVL_OP_MIGRATE, NULL, "migrate begin on B");
  run_ok (host_b, OVL_OP_PREPARE, NULL, "prepare on B (C -> B)");
  close (c_qemu);
  run_ok (host_c, OVL_OP_RELEASE, NULL, "C's release after C -> B");
  assert_int_equal (removed_at_stop (host_b), 1);
  hosts[0] = cfg, hosts[1] = host_b, hosts[2] = host_c;
  settled (hosts, 3, "stale entry");
  third_host_done (host_c);
  two_hosts_done ();
}

/* Each of these, once with allocations failing and once with system
 * calls. */
#define BOTH_KINDS(fn) \
  static void fn##_alloc (void **state_) { fn (T_FAULT_ALLOC); } \
  static void fn##_syscall (void **state_) { fn (T_FAULT_SYSCALL); }
BOTH_KINDS (test_ledger)
BOTH_KINDS (test_image)
BOTH_KINDS (test_lifecycle)
BOTH_KINDS (test_pool)
BOTH_KINDS (test_gc)
BOTH_KINDS (test_adopt)

int
main (void)
{
  setvbuf (stdout, NULL, _IONBF, 0);
  if (getenv ("FAULTS_ONLY"))
    cmocka_set_test_filter (getenv ("FAULTS_ONLY"));
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config),
    cmocka_unit_test (test_domxml),
    cmocka_unit_test (test_json),
    cmocka_unit_test (test_ledger_alloc),
    cmocka_unit_test (test_image_alloc),
    cmocka_unit_test (test_lifecycle_alloc),
    cmocka_unit_test (test_pool_alloc),
    cmocka_unit_test (test_gc_alloc),
    cmocka_unit_test (test_adopt_alloc),
    cmocka_unit_test (test_ledger_syscall),
    cmocka_unit_test (test_image_syscall),
    cmocka_unit_test (test_lifecycle_syscall),
    cmocka_unit_test (test_pool_syscall),
    cmocka_unit_test (test_gc_syscall),
    cmocka_unit_test (test_adopt_syscall),
    cmocka_unit_test (test_gc_adopted),
    cmocka_unit_test (test_gc_taken),
    cmocka_unit_test (test_gc_taken_chain),
    cmocka_unit_test (test_gc_taken_failed),
    cmocka_unit_test (test_gc_taken_saved),
    cmocka_unit_test (test_chain_refused_start),
    cmocka_unit_test (test_chain_adopt_back_failed),
    cmocka_unit_test (test_chain_refused_start_saved),
    cmocka_unit_test (test_chain_readopt),
    cmocka_unit_test (test_chain_stale_entry),
    cmocka_unit_test (test_restore_taken),
    cmocka_unit_test (test_restore_taken_crashed),
  };
  return cmocka_run_group_tests (tests, setup, teardown);
}
