/* The lifecycle rules (tests/data/lifecycle/rules.tsv, checked to cover
 * every combination), then their execution against the real
 * qemu-storage-daemon: the write-ahead ledger, its undo when it cannot
 * be saved, the recovery of what a crash left, and the marks. */
#include <config.h>

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "domxml.h"
#include "error.h"
#include "gc.h"
#include "ledger.h"
#include "lifecycle.h"
#include "overlay.h"
#include "util.h"
#include "testutil.h"

/* ---- the rules table ---- */

#define NCOLS 15
#define NIN 12
static const char *const ops[] = { "prepare", "release", "restore", "migrate" };
static const char *const modes[] = { "persistent", "ephemeral" };
static const char *const presences[] = { "absent", "ours", "foreign" };

struct rule {
  int line;
  char *col[NCOLS];
};
static struct rule rules[128];
static size_t nrules;

/* Field F ("*", "a", "a|b") matches VALUE. */
static bool
field_matches (const char *f, const char *value)
{
  size_t n = strlen (value);

  if (strcmp (f, "*") == 0)
    return true;
  for (;;) {
    if (strncmp (f, value, n) == 0 && (f[n] == '\0' || f[n] == '|'))
      return true;
    if (!(f = strchr (f, '|')))
      return false;
    f++;
  }
}

static void
load_rules (void)
{
  char *path = t_data_path ("lifecycle/rules.tsv");
  char *text = t_read_file (path, NULL), *line, *save = NULL;
  int lineno = 0;

  assert_non_null (text);
  for (line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
    struct rule *r = &rules[nrules];
    char *f, *fsave = NULL;
    int k = 0;

    lineno++;
    if (line[0] == '#' || line[0] == '\0')
      continue;
    for (f = strtok_r (line, "\t", &fsave); f && k < NCOLS; f = strtok_r (NULL, "\t", &fsave))
      r->col[k++] = strdup (f);
    if (k != NCOLS || strtok_r (NULL, "\t", &fsave))
      fail_msg ("rules.tsv: a line has %d fields, not %d", k, NCOLS);
    r->line = lineno;
    assert_true (++nrules < sizeof rules / sizeof rules[0]);
  }
  free (text);
  free (path);
}

static const char *
yes_no (bool b)
{
  return b ? "yes" : "no";
}

/* Every combination of the inputs is matched by some line, and what each
 * matching line expects is what the rules decide. */
static void
test_rules (void **state)
{
  unsigned op, mode, pres, bits, checked = 0;

  load_rules ();
  assert_true (nrules > 10);
  for (op = 0; op < 4; op++)
    for (mode = 0; mode < 2; mode++)
      for (pres = 0; pres < 3; pres++)
        for (bits = 0; bits < 512; bits++) {
          struct ovl_disk_facts k = {
            mode ? OVL_MODE_EPHEMERAL : OVL_MODE_PERSISTENT, (enum ovl_presence) pres,
            bits & 1, bits & 2, bits & 4, bits & 256,
          };
          /* "ran" and "failed" count before the rules, for a restore's
           * take (see run_release). */
          struct ovl_dom_facts d = { bits & 8, bits & 16, bits & 32, bits & 64, bits & 128,
                                     false, false };
          const char *in[NIN] = {
            ops[op], modes[mode], presences[pres], yes_no (k.in_ledger), yes_no (k.adopted),
            yes_no (k.made_for_domain), yes_no (k.in_use),
            yes_no (d.restore_pending), yes_no (d.migration_pending), yes_no (d.managed_save),
            yes_no (d.saved), yes_no (d.migrated),
          };
          struct ovl_decision got;
          size_t i, matched = 0;
          int c;

          /* "ours" is what the ledger says; the owner mark is asked of
           * a file that is not ours, the image lock of ours or of one
           * made for the domain. */
          if ((k.presence == OVL_OURS && !k.in_ledger) || (k.adopted && !k.in_ledger) ||
              (k.made_for_domain && k.presence != OVL_FOREIGN) ||
              (k.in_use && k.presence != OVL_OURS && !k.made_for_domain))
            continue;
          got = ovl_lifecycle_decide ((enum ovl_op) op, &d, &k);
          for (i = 0; i < nrules; i++) {
            for (c = 0; c < NIN && field_matches (rules[i].col[c], in[c]); c++)
              ;
            if (c < NIN)
              continue;
            matched++;
            if (strcmp (rules[i].col[NIN], ovl_action_name (got.action)) != 0 ||
                strcmp (rules[i].col[NIN + 1], ovl_why_name (got.why)) != 0 ||
                strcmp (rules[i].col[NIN + 2], yes_no (got.forget)) != 0)
              fail_msg ("rules.tsv line %d: %s %s %s ledger=%s adopted=%s made-for=%s in-use=%s "
                        "restore=%s migration=%s managed-save=%s saved=%s migrated=%s: "
                        "want %s %s %s, the rules say %s %s %s",
                        rules[i].line, in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7],
                        in[8], in[9], in[10], in[11], rules[i].col[NIN], rules[i].col[NIN + 1],
                        rules[i].col[NIN + 2], ovl_action_name (got.action),
                        ovl_why_name (got.why), yes_no (got.forget));
          }
          if (!matched)
            fail_msg ("rules.tsv has no line for %s %s %s ledger=%s adopted=%s made-for=%s "
                      "in-use=%s restore=%s migration=%s managed-save=%s saved=%s migrated=%s",
                      in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9],
                      in[10], in[11]);
          checked++;
        }
  /* 4 ops x 2 modes x (absent: no entry, or one adopted or not: 3;
   * ours: adopted or not x in use or not: 4; foreign: those 3 entry
   * states x (not made for it, or made for it and in use or not): 9)
   * x 32 */
  assert_int_equal (checked, 4 * 2 * 16 * 32);
}

/* ---- execution ---- */

#define UUID "0d1b3f5e-8a7c-4b2e-9d0f-123456789abc"

static char *dir, *img, *state, *overlay;
static struct t_qsd qsd;
static struct ovl_config *cfg;

static int
setup (void **state_)
{
  char *text;
  const char *qemu_img = getenv ("QEMU_IMG") && *getenv ("QEMU_IMG") ? getenv ("QEMU_IMG") : "qemu-img";

  dir = t_mkdtemp ();
  if (asprintf (&img, "%s/img", dir) == -1 || asprintf (&state, "%s/state", dir) == -1 ||
      asprintf (&overlay, "%s/vm.qcow2", img) == -1)
    abort ();
  mkdir (img, 0755);
  mkdir (state, 0700);
  T_RUN ("'%s' create -q -f qcow2 '%s/base.qcow2' 16M", qemu_img, img);
  if (t_qsd_start (&qsd, dir) == -1) {
    fprintf (stderr, "cannot start qemu-storage-daemon\n");
    return -1;
  }
  if (asprintf (&text, "qsd_socket = %s\nqsd_spawn = off\noverlay_dirs = %s\nbase_dirs = %s\n"
                "state_dir = %s\nmanaged_save_dir = %s\npool_size = 0\n",
                qsd.sock, img, img, state, dir) == -1)
    abort ();
  cfg = ovl_config_parse ("test", text, strlen (text));
  free (text);
  if (!cfg) {
    fprintf (stderr, "config: %s\n", ovl_error_msg ());
    return -1;
  }
  return 0;
}

static int
teardown (void **state_)
{
  size_t i;

  ovl_config_free (cfg);
  t_qsd_stop (&qsd);
  t_rmtree (dir);
  free (dir); free (img); free (state); free (overlay);
  for (i = 0; i < nrules; i++)
    for (int c = 0; c < NCOLS; c++)
      free (rules[i].col[c]);
  return 0;
}

/* A domain with one disk of MODE on OVERLAY. */
static struct ovl_domain *
domain (const char *mode)
{
  char *xml;
  struct ovl_domain *d;

  if (asprintf (&xml,
                "<domain type='qemu'><name>life</name><uuid>" UUID "</uuid>"
                "<metadata><ovl:overlays xmlns:ovl='urn:virt-overlay:domain:1'>"
                "<ovl:disk target='vda' mode='%s'/></ovl:overlays></metadata><devices>"
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                "<source file='%s'/><backingStore type='file'><format type='qcow2'/>"
                "<source file='%s/base.qcow2'/><backingStore/></backingStore>"
                "<target dev='vda' bus='virtio'/></disk></devices></domain>",
                mode, overlay, img) == -1)
    abort ();
  d = ovl_domxml_parse (xml, strlen (xml), cfg);
  free (xml);
  if (!d)
    fail_msg ("domain: %s", ovl_error_msg ());
  return d;
}

static int
run (enum ovl_op op, const struct ovl_domain *d, const char *reason, struct ovl_outcome *o)
{
  return ovl_lifecycle_run (cfg, op, d, reason, ovl_now_ms () + 20000, o);
}

static void
assert_said (const struct ovl_outcome *o, const char *part)
{
  size_t i;
  for (i = 0; i < o->nlines; i++)
    if (strstr (o->lines[i], part))
      return;
  fail_msg ("no line says '%s' (%zu lines%s%s)", part, o->nlines,
            o->nlines ? ", first: " : "", o->nlines ? o->lines[0] : "");
}

/* Nothing of ours in IMG but what is listed: no temporary file. */
static void
assert_no_temps (void)
{
  DIR *d = opendir (img);
  struct dirent *e;

  assert_non_null (d);
  while ((e = readdir (d)))
    if (strncmp (e->d_name, OVL_TMP_PREFIX, strlen (OVL_TMP_PREFIX)) == 0)
      fail_msg ("temporary file left: %s", e->d_name);
  closedir (d);
}

static struct ovl_ledger *
ledger (void)
{
  struct ovl_ledger *l = ovl_ledger_load (state, UUID);
  assert_non_null (l);
  return l;
}

static bool
exists (const char *p)
{
  struct stat st;
  return lstat (p, &st) == 0;
}

/* The ledger cannot be saved: the write-ahead save fails before
 * anything is published, and nothing at all is left (the undo no test
 * reached when the ledger was saved after publishing). */
static void
test_unsaved_ledger_publishes_nothing (void **state_)
{
  struct ovl_domain *d = domain ("ephemeral");
  struct ovl_outcome o;
  char *blocker, *inside;

  /* The ledger's temporary name is taken by a directory with a file in. */
  if (asprintf (&blocker, "%s/domains/" UUID ".tmp", state) == -1 ||
      asprintf (&inside, "%s/x", blocker) == -1)
    abort ();
  mkdir (state, 0700);
  T_RUN ("mkdir -p '%s/domains' && mkdir '%s' && touch '%s'", state, blocker, inside);
  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 1);
  assert_said (&o, "ledger");
  assert_false (exists (overlay));
  assert_no_temps ();
  assert_int_equal (o.created, 0);
  ovl_outcome_clear (&o);
  T_RUN ("rm -rf '%s'", blocker);

  /* Saved again, the same start works and is recorded. */
  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 0);
  assert_int_equal (o.created, 1);
  ovl_outcome_clear (&o);
  {
    struct ovl_ledger *l = ledger ();
    assert_int_equal (l->n, 1);
    assert_int_equal (ovl_overlay_presence (cfg, overlay, &l->entries[0].id), OVL_PRESENCE_OURS);
    ovl_ledger_free (l);
  }
  assert_int_equal (run (OVL_OP_RELEASE, d, NULL, &o), 0);
  assert_int_equal (o.removed, 1);
  ovl_outcome_clear (&o);
  assert_false (exists (overlay));
  /* A ledger that holds nothing is removed. */
  free (inside);
  if (asprintf (&inside, "%s/domains/" UUID, state) == -1)
    abort ();
  assert_false (exists (inside));
  free (blocker);
  free (inside);
  ovl_domain_free (d);
}

/* What a crash between the write-ahead save and the rename leaves: an
 * entry whose file never appeared.  The next start makes the overlay and
 * replaces the entry; the one after recreates it. */
static void
test_entry_without_file (void **state_)
{
  struct ovl_domain *d = domain ("ephemeral");
  struct ovl_ledger *l = ovl_ledger_open (state, UUID, -1);
  struct ovl_file_id ghost = { 1, 2, 3, 4, "0123456789abcdef0123456789abcdef" };
  struct ovl_outcome o;

  assert_non_null (l);
  assert_non_null (ovl_ledger_add (l, overlay, &ghost));
  assert_int_equal (ovl_ledger_save (l), 0);
  ovl_ledger_free (l);

  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 0);
  assert_int_equal (o.created, 1);
  assert_int_equal (o.removed, 0);
  ovl_outcome_clear (&o);
  l = ledger ();
  assert_int_equal (l->n, 1);
  assert_false (ovl_file_id_equal (&l->entries[0].id, &ghost));
  assert_int_equal (ovl_overlay_presence (cfg, overlay, &l->entries[0].id), OVL_PRESENCE_OURS);
  ovl_ledger_free (l);

  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 0);
  assert_int_equal (o.removed, 1);
  assert_int_equal (o.created, 1);
  ovl_outcome_clear (&o);
  assert_int_equal (run (OVL_OP_RELEASE, d, NULL, &o), 0);
  ovl_outcome_clear (&o);
  assert_false (exists (overlay));
  ovl_domain_free (d);
}

/* A file we did not make is refused and left as it is, at start and at
 * stop, and its path's stale entry does not make it ours. */
static void
test_foreign_file (void **state_)
{
  struct ovl_domain *d = domain ("ephemeral");
  struct ovl_outcome o;
  char *text;
  size_t len;

  T_RUN ("echo mine > '%s'", overlay);
  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 1);
  assert_said (&o, "disk vda: ephemeral overlay");
  assert_said (&o, "was not created by virt-overlay");
  ovl_outcome_clear (&o);
  assert_int_equal (run (OVL_OP_RELEASE, d, NULL, &o), 0);
  ovl_outcome_clear (&o);
  text = t_read_file (overlay, &len);
  assert_non_null (text);
  assert_string_equal (text, "mine\n");
  free (text);
  unlink (overlay);
  ovl_domain_free (d);
}

/* Host NAME: its own ledger (state directory), the same storage. */
static struct ovl_config *
config_host (const char *name)
{
  char *text, *st;
  struct ovl_config *c;

  if (asprintf (&st, "%s/state-%s", dir, name) == -1)
    abort ();
  mkdir (st, 0700);
  if (asprintf (&text, "qsd_socket = %s\nqsd_spawn = off\noverlay_dirs = %s\nbase_dirs = %s\n"
                "state_dir = %s\nmanaged_save_dir = %s\npool_size = 0\n",
                qsd.sock, img, img, st, dir) == -1)
    abort ();
  c = ovl_config_parse (name, text, strlen (text));
  free (text);
  free (st);
  assert_non_null (c);
  return c;
}

static struct ovl_config *
config_b (void)
{
  return config_host ("b");
}

/* Clean storage and ledgers, on every host. */
static void
fresh (void)
{
  unlink (overlay);
  T_RUN ("rm -rf '%s/domains' '%s/state-b' '%s/state-c'", state, dir, dir);
}

static void
gc_say (void *opaque, enum ovl_gc_action a, const char *kind, const char *path, const char *why)
{
}

/* gc on host C, libvirt there knowing no domain. */
static void
gc_on (const struct ovl_config *c)
{
  const struct ovl_gc_ops gc_ops = { t_gc_unknown, t_gc_unused, gc_say, NULL };

  assert_int_equal (ovl_gc (c, &gc_ops, false, ovl_now_ms () + 20000), 0);
}

static int
run_on (const struct ovl_config *c, enum ovl_op op, const struct ovl_domain *d,
        const char *reason, struct ovl_outcome *o)
{
  return ovl_lifecycle_run (c, op, d, reason, ovl_now_ms () + 20000, o);
}

/* Run OP for D on host C: it must exit WANT and remove REMOVED overlays
 * (-1: any number); SAID, if not NULL, must be in one of its lines,
 * problem or done. */
static void
step (const struct ovl_config *c, enum ovl_op op, const struct ovl_domain *d,
      const char *reason, int want, int removed, const char *said)
{
  struct ovl_outcome o;
  size_t i;
  bool found = !said;

  if (run_on (c, op, d, reason, &o) != want)
    fail_msg ("%s: exit %d, want %d (%s)", ovl_op_name (op), o.status, want,
              o.nlines ? o.lines[0] : "no line");
  if (removed >= 0 && o.removed != (size_t) removed)
    fail_msg ("%s: removed %zu, want %d", ovl_op_name (op), o.removed, removed);
  for (i = 0; said && i < o.nlines; i++)
    found = found || strstr (o.lines[i], said);
  for (i = 0; said && i < o.ndone; i++)
    found = found || strstr (o.done[i], said);
  if (!found)
    fail_msg ("%s: no line says '%s'", ovl_op_name (op), said);
  ovl_outcome_clear (&o);
}

/* An image lock on PATH as a QEMU holds one (an OFD read lock on byte
 * 100): the descriptor, to close to let it go. */
static int
qemu_lock (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };

  assert_true (fd >= 0);
  assert_int_equal (fcntl (fd, F_OFD_SETLK, &fl), 0);
  return fd;
}

static void
token_of (const char *path, char token[33])
{
  ssize_t n = getxattr (path, OVL_TOKEN_XATTR, token, 32);
  assert_int_equal (n, 32);
  token[32] = '\0';
}

/* An ephemeral overlay migrates on shared storage: host B takes it at
 * its prepare (a new token) while A's QEMU holds it, A's release then
 * finds another token, drops its entry and lets go; B keeps it should
 * something hold it at its stop, and removes it at the next. */
static void
test_ephemeral_migration (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  struct stat st0, st;
  char t1[33], t2[33], now[33];
  int lock;

  /* Not on B's storage: refused before anything starts there. */
  step (b, OVL_OP_MIGRATE, e, NULL, 1, 0, "is not on this host");
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  assert_int_equal (stat (overlay, &st0), 0);
  token_of (overlay, t1);
  /* No QEMU holds it: not a live migration's (a stale mark, a saved
   * domain's overlay): refused. */
  step (b, OVL_OP_MIGRATE, e, NULL, 1, 0, "is not in use by a QEMU on the migration's source");

  lock = qemu_lock (overlay);   /* A's QEMU */
  step (b, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, "taken over from the migration's source");
  token_of (overlay, t2);
  assert_string_not_equal (t1, t2);
  close (lock);

  /* A's QEMU is gone, B's holds the overlay: A lets it go, for good. */
  lock = qemu_lock (overlay);
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 0, "taken over by the host the domain runs on now");
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  close (lock);
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 0, NULL);
  assert_true (exists (overlay));

  /* B stops while something holds it: kept (A let go: no hand-back). */
  lock = qemu_lock (overlay);
  step (b, OVL_OP_RELEASE, e, NULL, 0, 0, "its ledger entry is kept");
  token_of (overlay, now);
  assert_string_equal (now, t2);
  close (lock);
  step (b, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A -> B -> A with a libvirt that says "migrated": B's release leaves
 * it to A, which removes it at its stop. */
static void
test_migration_back (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  int lock;

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  lock = qemu_lock (overlay);
  step (b, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  step (cfg, OVL_OP_RELEASE, e, "migrated", 0, 0, NULL);
  /* back, B's QEMU holding it */
  step (cfg, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "taken over from the migration's source");
  step (b, OVL_OP_RELEASE, e, "migrated", 0, 0, NULL);
  close (lock);
  assert_true (exists (overlay));
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A migration that fails after B's prepare: the source runs on, and B
 * gives it its token back at B's release, whether or not the source's
 * QEMU holds the overlay then; A removes it at its own stop. */
static void
test_failed_migration (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  char t1[33], now[33];
  int lock;

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  token_of (overlay, t1);
  lock = qemu_lock (overlay);   /* A's QEMU */
  step (b, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_RELEASE, e, NULL, 0, 0, "handed back to the migration's source");
  token_of (overlay, now);
  assert_string_equal (now, t1);
  close (lock);
  /* B has nothing of it left: its next release touches nothing. */
  step (b, OVL_OP_RELEASE, e, NULL, 0, 0, NULL);
  assert_true (exists (overlay));
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  assert_false (exists (overlay));

  /* Failed in its last phase: the source's QEMU let go of its image
   * locks when the migration completed and takes them again only when
   * it resumes, after B's release.  B gives it back all the same. */
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  token_of (overlay, t1);
  lock = qemu_lock (overlay);
  step (b, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  close (lock);
  step (b, OVL_OP_RELEASE, e, NULL, 0, 0, "handed back to the migration's source");
  token_of (overlay, now);
  assert_string_equal (now, t1);
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* What an incoming migration finds that virt-overlay did not make for
 * this domain is refused, at migrate begin and at prepare. */
static void
test_ephemeral_migration_foreign (void **state_)
{
  static const char *const marks[][2] = {
    { NULL, NULL },                                           /* a plain file */
    { "0123456789abcdef0123456789abcdef", NULL },             /* ours, for no domain */
    { "0123456789abcdef0123456789abcdef", "another-uuid" },   /* another domain's */
    { NULL, UUID },                                           /* no token */
  };
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  struct ovl_outcome o;
  size_t i;

  for (i = 0; i < sizeof marks / sizeof marks[0]; i++) {
    int fd = open (overlay, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true (fd >= 0);
    if (marks[i][0])
      assert_int_equal (fsetxattr (fd, OVL_TOKEN_XATTR, marks[i][0], 32, 0), 0);
    if (marks[i][1])
      assert_int_equal (fsetxattr (fd, OVL_OWNER_XATTR, marks[i][1], strlen (marks[i][1]), 0), 0);
    close (fd);
    fd = qemu_lock (overlay);   /* a QEMU holds it: only the marks decide */
    assert_int_equal (run_on (b, OVL_OP_MIGRATE, e, NULL, &o), 1);
    assert_said (&o, "is not one virt-overlay made for this domain");
    ovl_outcome_clear (&o);
    /* A mark left by an earlier migrate begin does not help either. */
    assert_int_equal (run_on (b, OVL_OP_PREPARE, e, NULL, &o), 1);
    ovl_outcome_clear (&o);
    close (fd);
    assert_true (exists (overlay));
    unlink (overlay);
  }
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* Made by virt-overlay for this domain, but not as an ephemeral overlay
 * of one link: a persistent disk (the XML switched to ephemeral), or a
 * file with a second name.  Neither is taken. */
static void
test_not_adoptable (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *p = domain ("persistent"), *e = domain ("ephemeral");
  char *link2;
  int lock;

  step (cfg, OVL_OP_PREPARE, p, NULL, 0, 0, NULL);
  lock = qemu_lock (overlay);
  step (b, OVL_OP_MIGRATE, e, NULL, 1, 0, "is not one virt-overlay made for this domain");
  close (lock);
  unlink (overlay);

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, NULL);
  if (asprintf (&link2, "%s/second-name.qcow2", img) == -1)
    abort ();
  assert_int_equal (link (overlay, link2), 0);
  lock = qemu_lock (overlay);
  step (b, OVL_OP_MIGRATE, e, NULL, 1, 0, "is not one virt-overlay made for this domain");
  close (lock);
  unlink (link2);
  free (link2);
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  ovl_domain_free (p);
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A persistent overlay must be on this host before a migration comes. */
static void
test_incoming_migration (void **state_)
{
  struct ovl_domain *p = domain ("persistent");
  struct ovl_outcome o;
  int fd;

  assert_int_equal (run (OVL_OP_MIGRATE, p, NULL, &o), 1);
  assert_said (&o, "is not on this host");
  assert_said (&o, "virt-overlay create --backing-format qcow2");
  ovl_outcome_clear (&o);
  /* There at migrate begin, gone by prepare: refused, nothing made. */
  fd = open (overlay, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  close (fd);
  assert_int_equal (run (OVL_OP_MIGRATE, p, NULL, &o), 0);
  ovl_outcome_clear (&o);
  unlink (overlay);
  assert_int_equal (run (OVL_OP_PREPARE, p, NULL, &o), 1);
  assert_said (&o, "is not on this host");
  ovl_outcome_clear (&o);
  assert_false (exists (overlay));
  assert_int_equal (run (OVL_OP_PREPARE, p, NULL, &o), 0);
  assert_int_equal (o.created, 1);
  ovl_outcome_clear (&o);
  assert_true (exists (overlay));
  /* Persistent: release leaves it. */
  assert_int_equal (run (OVL_OP_RELEASE, p, NULL, &o), 0);
  ovl_outcome_clear (&o);
  assert_true (exists (overlay));
  unlink (overlay);
  ovl_domain_free (p);
}

/* Kept when the domain was saved; removed at the next plain stop. */
static void
test_saved_then_stopped (void **state_)
{
  struct ovl_domain *d = domain ("ephemeral");
  struct ovl_outcome o;

  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 0);
  ovl_outcome_clear (&o);
  assert_int_equal (run (OVL_OP_RELEASE, d, "saved", &o), 0);
  ovl_outcome_clear (&o);
  assert_true (exists (overlay));
  assert_int_equal (run (OVL_OP_RESTORE, d, NULL, &o), 0);
  ovl_outcome_clear (&o);
  assert_int_equal (run (OVL_OP_PREPARE, d, NULL, &o), 0);
  assert_int_equal (o.created, 0);
  ovl_outcome_clear (&o);
  assert_int_equal (run (OVL_OP_RELEASE, d, NULL, &o), 0);
  assert_int_equal (o.removed, 1);
  ovl_outcome_clear (&o);
  assert_false (exists (overlay));
  ovl_domain_free (d);
}

/* A restore of D on host C: its "restore begin", then its prepare,
 * which must exit WANT and say SAID (see step). */
static void
restore_on (const struct ovl_config *c, const struct ovl_domain *d, int want, const char *said)
{
  step (c, OVL_OP_RESTORE, d, NULL, 0, 0, NULL);
  step (c, OVL_OP_PREPARE, d, NULL, want, 0, said);
}

/* D started afresh on host C and saved there (libvirt 10.5 and later
 * say "saved"). */
static void
saved_on (const struct ovl_config *c, const struct ovl_domain *d)
{
  step (c, OVL_OP_PREPARE, d, NULL, 0, 0, "made");
  step (c, OVL_OP_RELEASE, d, "saved", 0, 0, NULL);
}

/* A restore that fails (libvirt >= 10.5 says "failed") leaves the saved
 * state's overlay, and the ledger still says saved: the restore can be
 * tried again.  The stop after a restore that went through removes it. */
static void
test_failed_restore (void **state_)
{
  struct ovl_domain *e = domain ("ephemeral");
  struct ovl_ledger *l;
  struct stat st0, st;

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  assert_int_equal (stat (overlay, &st0), 0);
  step (cfg, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  restore_on (cfg, e, 0, NULL);
  step (cfg, OVL_OP_RELEASE, e, "failed", 0, 0, NULL);
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  l = ledger ();
  assert_true (l->saved);
  assert_int_equal (l->n, 1);
  ovl_ledger_free (l);
  /* Tried again, it goes through: the same file. */
  restore_on (cfg, e, 0, NULL);
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  /* A cold boot that fails is no restore: its overlay goes. */
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  assert_false (exists (overlay));
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  step (cfg, OVL_OP_RELEASE, e, "failed", 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
}

/* Saved on A, restored on B (shared storage): B takes the overlay over
 * (a new token), so that a cold start on A can no longer remove what
 * B's domain runs on, or what a state B saved again needs.  At B's
 * stop: removed once the restored domain ran (A's state is stale then);
 * given back where that cannot be told (A never let go of it: its state
 * may be restored there again), and A's next cold start then makes a
 * fresh one. */
static void
test_restore_elsewhere (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  struct stat st0, st;
  char t1[33], t2[33], now[33];

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  assert_int_equal (stat (overlay, &st0), 0);
  token_of (overlay, t1);
  step (cfg, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  restore_on (b, e, 0, "taken over from the host its state was saved on");
  token_of (overlay, t2);
  assert_string_not_equal (t1, t2);
  /* Saved again on B. */
  step (b, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  /* A cold start on A: refused, nothing removed. */
  step (cfg, OVL_OP_PREPARE, e, NULL, 1, 0, "another host took it over");
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  token_of (overlay, now);
  assert_string_equal (now, t2);
  /* Restored on B again, and stopped: back to A. */
  restore_on (b, e, 0, NULL);
  token_of (overlay, now);
  assert_string_equal (now, t2);
  /* No reason (libvirt before 10.5): whether the restored domain ran
   * cannot be told, and A's state may be restored there again. */
  step (b, OVL_OP_RELEASE, e, NULL, 0, 0, "handed back");
  token_of (overlay, now);
  assert_string_equal (now, t1);
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 1, "made");
  step (cfg, OVL_OP_RELEASE, e, NULL, 0, 1, NULL);
  assert_false (exists (overlay));

  /* The restored domain ran on B and stopped: A's state is stale, B
   * removes the overlay; A's cold start makes a fresh one. */
  saved_on (cfg, e);
  restore_on (b, e, 0, "taken over");
  step (b, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  assert_false (exists (overlay));
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  step (cfg, OVL_OP_RELEASE, e, "shutdown", 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A restore onto an overlay a QEMU runs on (the domain restored, or
 * started, elsewhere meanwhile) is refused; a restore on B that fails
 * gives it back to A, whose state is then restored on it. */
static void
test_restore_in_use (void **state_)
{
  struct ovl_config *b = config_b ();
  struct ovl_domain *e = domain ("ephemeral");
  char t1[33], now[33];
  struct stat st0, st;
  int lock;

  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  assert_int_equal (stat (overlay, &st0), 0);
  token_of (overlay, t1);
  step (cfg, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  lock = qemu_lock (overlay);
  restore_on (b, e, 1, "is in use by a QEMU");
  close (lock);
  token_of (overlay, now);
  assert_string_equal (now, t1);
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, NULL);
  restore_on (b, e, 0, "taken over");
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, "handed back");
  token_of (overlay, now);
  assert_string_equal (now, t1);
  restore_on (cfg, e, 0, NULL);
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  assert_false (exists (overlay));
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A "restore begin" on B that never reached its prepare, on a host
 * that once saved the domain: a live migration A -> B that then fails
 * after B's prepare is no restore, and B gives the file back to A,
 * whose domain runs on. */
static void
test_restore_mark_then_migration (void **state_)
{
  struct ovl_config *b;
  struct ovl_domain *e = domain ("ephemeral");
  char ta[33], now[33];
  int lock;

  fresh ();
  b = config_b ();
  saved_on (b, e);
  restore_on (cfg, e, 0, "taken over");
  token_of (overlay, ta);
  lock = qemu_lock (overlay);   /* A's QEMU */
  step (b, OVL_OP_RESTORE, e, NULL, 0, 0, NULL);        /* and no prepare */
  step (b, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, "taken over from the migration's source");
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, "handed back");
  token_of (overlay, now);
  assert_string_equal (now, ta);
  close (lock);
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A state saved and restored on a host that then crashes while the
 * restored domain runs (no release): gc there removes the overlay of
 * the domain libvirt no longer knows, as after any crash. */
static void
test_restore_then_crash (void **state_)
{
  struct ovl_domain *e = domain ("ephemeral");

  fresh ();
  saved_on (cfg, e);
  restore_on (cfg, e, 0, NULL);
  gc_on (cfg);
  assert_false (exists (overlay));
  ovl_domain_free (e);
}

/* B saves; C's restore takes the file over and C crashes (its restore
 * never ran); B's own state, restored on B, takes it back and fails.
 * B keeps it for its saved state: gc on C does not remove it, and B's
 * state is restored on it. */
static void
test_failed_restore_after_crashed_taker (void **state_)
{
  struct ovl_config *b, *c;
  struct ovl_domain *e = domain ("ephemeral");
  struct stat st0, st;

  fresh ();
  b = config_b ();
  c = config_host ("c");
  step (b, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  assert_int_equal (stat (overlay, &st0), 0);
  step (b, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  restore_on (c, e, 0, "taken over");
  restore_on (b, e, 0, "taken over");
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, NULL);
  gc_on (c);
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  restore_on (b, e, 0, NULL);
  assert_int_equal (stat (overlay, &st), 0);
  assert_true (st.st_ino == st0.st_ino);
  step (b, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  ovl_domain_free (e);
  ovl_config_free (b);
  ovl_config_free (c);
}

/* A saves; B restores it and saves again; A restores B's state and
 * stops: the overlay goes (B's state is consumed), gc on B drops what
 * B recorded, and a cold start on A works. */
static void
test_restore_back (void **state_)
{
  struct ovl_config *b;
  struct ovl_domain *e = domain ("ephemeral");

  fresh ();
  b = config_b ();
  saved_on (cfg, e);
  restore_on (b, e, 0, "taken over");
  step (b, OVL_OP_RELEASE, e, "saved", 0, 0, NULL);
  restore_on (cfg, e, 0, "taken over");
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  gc_on (b);
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* Host C's ledger of the domain, changed as a crash, a reboot or time
 * would leave it: its restore mark AGE seconds old (if not 0), its
 * "restoring" mark of another boot (if OTHER_BOOT). */
static void
age_ledger (const struct ovl_config *c, long long age, bool other_boot)
{
  struct ovl_ledger *l = ovl_ledger_open (c->state_dir, UUID, ovl_now_ms () + 20000);

  assert_non_null (l);
  if (age)
    l->restore_pending = (long long) time (NULL) - age;
  if (other_boot)
    strcpy (l->restoring, "00000000-0000-4000-8000-000000000000");
  assert_int_equal (ovl_ledger_save (l), 0);
  ovl_ledger_free (l);
}

static bool
ledger_of (const struct ovl_config *c)
{
  char *p;
  bool r;

  if (asprintf (&p, "%s/domains/" UUID, c->state_dir) == -1)
    abort ();
  r = exists (p);
  free (p);
  return r;
}

/* A "restore begin" that never reached its prepare (libvirt failed in
 * between, or the host crashed) marks no later start as a restore: a
 * cold start on B refuses A's saved overlay, and gc drops the mark. */
static void
test_restore_mark_stale (void **state_)
{
  struct ovl_config *b;
  struct ovl_domain *e = domain ("ephemeral");

  fresh ();
  b = config_b ();
  saved_on (cfg, e);
  step (b, OVL_OP_RESTORE, e, NULL, 0, 0, NULL);
  age_ledger (b, 3600, false);
  gc_on (b);
  assert_false (ledger_of (b));
  step (b, OVL_OP_RESTORE, e, NULL, 0, 0, NULL);
  age_ledger (b, 3600, false);
  step (b, OVL_OP_PREPARE, e, NULL, 1, 0, "another host took it over");
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, NULL);
  restore_on (cfg, e, 0, NULL);
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  ovl_domain_free (e);
  ovl_config_free (b);
}

/* A restore of a state saved here, and a crash: after the reboot, a
 * release "failed" with no prepare before it (libvirt failed early) is
 * no failed restore, and the overlay goes; a restore retried after a
 * crash in the first one, which fails, keeps it, for the state was
 * never loaded. */
static void
test_restore_across_reboot (void **state_)
{
  struct ovl_domain *e = domain ("ephemeral");

  fresh ();
  saved_on (cfg, e);
  restore_on (cfg, e, 0, NULL);
  age_ledger (cfg, 0, true);
  step (cfg, OVL_OP_RELEASE, e, "failed", 0, 1, NULL);

  saved_on (cfg, e);
  restore_on (cfg, e, 0, NULL);
  age_ledger (cfg, 0, true);
  restore_on (cfg, e, 0, NULL);
  step (cfg, OVL_OP_RELEASE, e, "failed", 0, 0, NULL);
  assert_true (exists (overlay));
  restore_on (cfg, e, 0, NULL);
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  ovl_domain_free (e);
}

/* Restored on B, then migrated B -> C: the restore's take is settled
 * once the domain ran (B lets go whatever A did), so C removes the
 * overlay at its stop, cold starts work again, and gc on A drops the
 * ledger that said "saved". */
static void
test_restored_then_migrated (void **state_)
{
  struct ovl_config *b, *c;
  struct ovl_domain *e = domain ("ephemeral");
  int lock;

  fresh ();
  b = config_b ();
  c = config_host ("c");
  saved_on (cfg, e);
  restore_on (b, e, 0, "taken over");
  lock = qemu_lock (overlay);   /* B's QEMU */
  step (c, OVL_OP_MIGRATE, e, NULL, 0, 0, NULL);
  step (c, OVL_OP_PREPARE, e, NULL, 0, 0, "taken over from the migration's source");
  step (b, OVL_OP_RELEASE, e, "migrated", 0, 0, "taken over by the host the domain runs on now");
  close (lock);
  step (c, OVL_OP_RELEASE, e, "shutdown", 0, 1, NULL);
  gc_on (cfg);
  assert_false (ledger_of (cfg));
  step (c, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  step (c, OVL_OP_RELEASE, e, "shutdown", 0, 1, NULL);
  step (cfg, OVL_OP_PREPARE, e, NULL, 0, 0, "made");
  step (cfg, OVL_OP_RELEASE, e, "shutdown", 0, 1, NULL);
  ovl_domain_free (e);
  ovl_config_free (b);
  ovl_config_free (c);
}

/* gc on the saving host A while B's restore loads (A lets go of what B
 * took, and drops its ledger); the restore fails: B keeps the overlay
 * for the state, and A's restore of it then works. */
static void
test_restore_fails_after_gc (void **state_)
{
  struct ovl_config *b;
  struct ovl_domain *e = domain ("ephemeral");

  fresh ();
  b = config_b ();
  saved_on (cfg, e);
  restore_on (b, e, 0, "taken over");
  gc_on (cfg);
  assert_false (ledger_of (cfg));
  step (b, OVL_OP_RELEASE, e, "failed", 0, 0, "kept for the saved state");
  gc_on (b);
  assert_true (exists (overlay));
  restore_on (cfg, e, 0, "taken over");
  step (cfg, OVL_OP_RELEASE, e, "destroyed", 0, 1, NULL);
  gc_on (b);
  assert_false (ledger_of (b));
  ovl_domain_free (e);
  ovl_config_free (b);
}

int
main (void)
{
  const struct CMUnitTest rules_tests[] = {
    cmocka_unit_test (test_rules),
  };
  const struct CMUnitTest run_tests[] = {
    cmocka_unit_test (test_unsaved_ledger_publishes_nothing),
    cmocka_unit_test (test_entry_without_file),
    cmocka_unit_test (test_foreign_file),
    cmocka_unit_test (test_incoming_migration),
    cmocka_unit_test (test_ephemeral_migration),
    cmocka_unit_test (test_failed_migration),
    cmocka_unit_test (test_migration_back),
    cmocka_unit_test (test_not_adoptable),
    cmocka_unit_test (test_ephemeral_migration_foreign),
    cmocka_unit_test (test_saved_then_stopped),
    cmocka_unit_test (test_failed_restore),
    cmocka_unit_test (test_restore_elsewhere),
    cmocka_unit_test (test_restore_in_use),
    cmocka_unit_test (test_restore_mark_then_migration),
    cmocka_unit_test (test_restore_then_crash),
    cmocka_unit_test (test_failed_restore_after_crashed_taker),
    cmocka_unit_test (test_restore_back),
    cmocka_unit_test (test_restore_mark_stale),
    cmocka_unit_test (test_restore_across_reboot),
    cmocka_unit_test (test_restored_then_migrated),
    cmocka_unit_test (test_restore_fails_after_gc),
  };
  int r;

  r = cmocka_run_group_tests_name ("lifecycle rules", rules_tests, NULL, NULL);
  t_require (getenv ("QSD") && *getenv ("QSD") ? getenv ("QSD") : "qemu-storage-daemon");
  t_require (getenv ("QEMU_IMG") && *getenv ("QEMU_IMG") ? getenv ("QEMU_IMG") : "qemu-img");
  return r | cmocka_run_group_tests_name ("lifecycle run", run_tests, setup, teardown);
}
