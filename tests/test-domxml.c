/* Domain XML -> plan, table-driven: tests/data/domxml/NAME.xml with
 * NAME.plan beside it (OVL_REGENERATE=1 rewrites them), or a line in
 * expected-errors.tsv giving the error it must produce.  Every sample's
 * metadata is also checked against xml/virt-overlay-domain.rng: the
 * schema and the parser must agree. */
#include <config.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>

#include "config.h"
#include "domxml.h"
#include "error.h"
#include "util.h"
#include "testutil.h"

static struct ovl_config *cfg;
static char *errors_tsv;

static int
setup (void **state)
{
  char *p = t_data_path ("domxml/expected-errors.tsv");
  cfg = ovl_config_load_file ("/nonexistent/virt-overlay.conf", false);
  errors_tsv = t_read_file (p, NULL);
  free (p);
  return cfg && errors_tsv ? 0 : -1;
}

static int
teardown (void **state)
{
  ovl_config_free (cfg);
  free (errors_tsv);
  return 0;
}

/* The expected error of NAME, or NULL if it must parse. */
static char *
expected_error (const char *name)
{
  const char *line = errors_tsv;
  size_t n = strlen (name);

  while (line && *line) {
    const char *nl = strchr (line, '\n');
    if (strncmp (line, name, n) == 0 && line[n] == '\t')
      return strndup (line + n + 1, nl ? (size_t) (nl - line - n - 1) : strlen (line + n + 1));
    line = nl ? nl + 1 : NULL;
  }
  return NULL;
}

/* No byte below 0x20, nor 0x7f: the message is one line of a log. */
static bool
one_line (const char *msg)
{
  for (; *msg; msg++)
    if ((unsigned char) *msg < 0x20 || *msg == 0x7f)
      return false;
  return true;
}

static void
test_samples (void **state)
{
  char *dir = t_data_path ("domxml");
  DIR *d = opendir (dir);
  struct dirent *e;
  int good = 0, bad = 0;

  assert_non_null (d);
  while ((e = readdir (d))) {
    size_t len, elen = strlen (e->d_name);
    char *path, *xml, *want;
    struct ovl_domain *dom;

    if (elen < 5 || strcmp (e->d_name + elen - 4, ".xml") != 0)
      continue;
    assert_true (asprintf (&path, "%s/%s", dir, e->d_name) > 0);
    xml = t_read_file (path, &len);
    assert_non_null (xml);
    want = expected_error (e->d_name);
    ovl_error_clear ();
    dom = ovl_domxml_parse (xml, len, cfg);
    if (want) {
      if (dom)
        fail_msg ("%s parsed, want error '%s'", e->d_name, want);
      if (!strstr (ovl_error_msg (), want))
        fail_msg ("%s: got '%s', want '%s'", e->d_name, ovl_error_msg (), want);
      if (!one_line (ovl_error_msg ()))
        fail_msg ("%s: a control character in '%s'", e->d_name, ovl_error_msg ());
      bad++;
    }
    else {
      char *plan, *plan_path, *expected;
      if (!dom)
        fail_msg ("%s: %s", e->d_name, ovl_error_msg ());
      plan = ovl_domain_plan (dom);
      assert_true (asprintf (&plan_path, "%s/%.*s.plan", dir, (int) (elen - 4), e->d_name) > 0);
      expected = t_golden (plan_path, plan);
      if (!expected)
        fail_msg ("%s missing (OVL_REGENERATE=1 makes it)", plan_path);
      assert_string_equal (plan, expected);
      free (plan); free (plan_path); free (expected);
      ovl_domain_free (dom);
      good++;
    }
    free (want); free (xml); free (path);
  }
  closedir (d);
  free (dir);
  assert_true (good >= 6);
  assert_true (bad >= 28);
}

/* Linked clones, table-driven: tests/data/clone/NAME.xml, cloned as
 * "clone1" (with --mode ephemeral or persistent when NAME ends so),
 * gives NAME.out (OVL_REGENERATE=1 rewrites them), or the error that
 * clone/expected-errors.tsv gives. */
static void
test_clone (void **state)
{
  char *dir = t_data_path ("clone");
  char *tsv_path = t_data_path ("clone/expected-errors.tsv");
  char *tsv = t_read_file (tsv_path, NULL);
  DIR *d = opendir (dir);
  struct dirent *e;
  int good = 0, bad = 0;

  assert_non_null (d);
  assert_non_null (tsv);
  while ((e = readdir (d))) {
    size_t len, elen = strlen (e->d_name);
    char *path, *xml, *out, *out_path, *want = NULL, *expected;
    const char *line;
    int mode = -1;

    if (elen < 5 || strcmp (e->d_name + elen - 4, ".xml") != 0)
      continue;
    if (elen > 14 && strcmp (e->d_name + elen - 14, "-ephemeral.xml") == 0)
      mode = OVL_MODE_EPHEMERAL;
    if (elen > 15 && strcmp (e->d_name + elen - 15, "-persistent.xml") == 0)
      mode = OVL_MODE_PERSISTENT;
    for (line = tsv; line && *line; line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
      if (strncmp (line, e->d_name, elen) == 0 && line[elen] == '\t')
        want = strndup (line + elen + 1, strcspn (line + elen + 1, "\n"));
    assert_true (asprintf (&path, "%s/%s", dir, e->d_name) > 0);
    xml = t_read_file (path, &len);
    assert_non_null (xml);
    ovl_error_clear ();
    out = ovl_domxml_clone (xml, len, cfg, "clone1", mode);
    if (want) {
      if (out)
        fail_msg ("%s cloned, want error '%s'", e->d_name, want);
      if (!strstr (ovl_error_msg (), want) || !one_line (ovl_error_msg ()))
        fail_msg ("%s: got '%s', want '%s'", e->d_name, ovl_error_msg (), want);
      bad++;
    }
    else {
      if (!out)
        fail_msg ("%s: %s", e->d_name, ovl_error_msg ());
      assert_true (asprintf (&out_path, "%s/%.*s.out", dir, (int) (elen - 4), e->d_name) > 0);
      expected = t_golden (out_path, out);
      if (!expected)
        fail_msg ("%s missing (OVL_REGENERATE=1 makes it)", out_path);
      assert_string_equal (out, expected);
      free (expected); free (out_path);
      good++;
    }
    free (out); free (want); free (xml); free (path);
  }
  closedir (d);
  free (dir); free (tsv); free (tsv_path);
  assert_true (good >= 3);
  assert_true (bad >= 1);
  /* A name that is the source's, or no name at all. */
  {
    char *p = t_data_path ("clone/basic.xml"), *xml;
    size_t len;
    xml = t_read_file (p, &len);
    assert_null (ovl_domxml_clone (xml, len, cfg, "src", -1));
    assert_null (ovl_domxml_clone (xml, len, cfg, "", -1));
    assert_null (ovl_domxml_clone (xml, len, cfg, "a/b", -1));
    free (xml); free (p);
  }
}

static void
test_oversize (void **state)
{
  size_t n = OVL_XML_MAX + 1;
  char *xml = malloc (n);

  memset (xml, ' ', n);
  memcpy (xml, "<domain>", 8);
  assert_null (ovl_domxml_parse (xml, n, cfg));
  assert_non_null (strstr (ovl_error_msg (), "larger than"));
  free (xml);
}

static void
quiet (void *ctx, xmlErrorPtr err)
{
  (void) ctx; (void) err;
}

/* The schema accepts exactly the metadata the parser accepts. */
static void
test_schema (void **state)
{
  const char *srcdir = getenv ("srcdir");
  char *rng, *dir = t_data_path ("domxml");
  xmlRelaxNGParserCtxtPtr pctx;
  xmlRelaxNGPtr schema;
  DIR *d;
  struct dirent *e;
  int checked = 0;

  assert_true (asprintf (&rng, "%s/xml/virt-overlay-domain.rng", srcdir ? srcdir : ".") > 0);
  pctx = xmlRelaxNGNewParserCtxt (rng);
  schema = xmlRelaxNGParse (pctx);
  assert_non_null (schema);
  d = opendir (dir);
  while ((e = readdir (d))) {
    size_t elen = strlen (e->d_name);
    char *path, *want;
    xmlDocPtr doc;
    xmlNodePtr root, md, o;

    if (elen < 5 || strcmp (e->d_name + elen - 4, ".xml") != 0)
      continue;
    assert_true (asprintf (&path, "%s/%s", dir, e->d_name) > 0);
    doc = xmlReadFile (path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    free (path);
    if (!doc)
      continue;
    root = xmlDocGetRootElement (doc);
    for (md = root ? root->children : NULL; md; md = md->next)
      if (md->type == XML_ELEMENT_NODE && xmlStrcmp (md->name, BAD_CAST "metadata") == 0)
        break;
    {
      bool all_valid = true, any = false;
      for (o = md ? md->children : NULL; o; o = o->next) {
        xmlDocPtr sub;
        xmlRelaxNGValidCtxtPtr vctx;
        if (o->type != XML_ELEMENT_NODE || !o->ns ||
            xmlStrcmp (o->ns->href, BAD_CAST OVL_XML_NS) != 0)
          continue;
        sub = xmlNewDoc (BAD_CAST "1.0");
        xmlDocSetRootElement (sub, xmlDocCopyNode (o, sub, 1));
        vctx = xmlRelaxNGNewValidCtxt (schema);
        xmlRelaxNGSetValidStructuredErrors (vctx, quiet, NULL);
        all_valid &= xmlRelaxNGValidateDoc (vctx, sub) == 0;
        xmlRelaxNGFreeValidCtxt (vctx);
        xmlFreeDoc (sub);
        any = true;
      }
      want = expected_error (e->d_name);
      /* Samples that fail on their metadata must fail the schema too
       * (one of its elements at least); which disk the metadata names,
       * and how often, is a cross-reference no schema can see. */
      if (any && want && strstr (want, "metadata names") == NULL &&
          (strstr (want, "metadata") || strstr (want, "mode")))
        assert_false (all_valid);
      else if (any && !want)
        assert_true (all_valid);
      free (want);
      checked += any;
    }
    xmlFreeDoc (doc);
  }
  closedir (d);
  xmlRelaxNGFree (schema);
  xmlRelaxNGFreeParserCtxt (pctx);
  free (rng);
  free (dir);
  assert_true (checked >= 7);
}

/* ---- Bounded parse time: generated inputs, not files in the tree ---- */

typedef void unit_fn (struct ovl_buf *b, unsigned i);

/* A valid domain whose <metadata> holds a foreign element (kept by libvirt
 * as it is) with HEAD, then UNIT (i = 0, 1, ...) while the document stays
 * under the size cap and i < N, then TAIL. */
static char *
gen (const char *head, unit_fn *unit, unsigned n, const char *tail, size_t *len)
{
  struct ovl_buf b = OVL_BUF_INIT;
  unsigned i;

  ovl_buf_printf (&b, "<domain type='qemu'><name>big</name><metadata>"
                  "<f:x xmlns:f='urn:example:f'>%s", head);
  for (i = 0; i < n && b.len < OVL_XML_MAX - 65536; i++)
    unit (&b, i);
  ovl_buf_printf (&b, "%s</f:x></metadata><devices/></domain>", tail);
  *len = b.len;
  return ovl_buf_steal (&b);
}

static void
u_attrs (struct ovl_buf *b, unsigned i)       /* the most attributes, distinct names */
{
  unsigned j;
  ovl_buf_printf (b, "<a");
  for (j = 0; j < OVL_XML_MAX_ATTRS; j++)
    ovl_buf_printf (b, " a%u=''", i * OVL_XML_MAX_ATTRS + j);
  ovl_buf_printf (b, "/>");
}

static void
u_prefixed (struct ovl_buf *b, unsigned i)    /* looked up through 256 namespaces */
{
  unsigned j;
  ovl_buf_printf (b, "<p0:a");
  for (j = 0; j + 1 < OVL_XML_MAX_ATTRS; j++)
    ovl_buf_printf (b, " p0:a%u=''", j);
  ovl_buf_printf (b, "/>");
}

static void
u_names (struct ovl_buf *b, unsigned i)       /* distinct names and short texts */
{
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  ovl_buf_printf (b, "<n%u>%c%c%c</n%u>", i, al[i % 62], al[i / 62 % 62], al[i / 3844 % 62], i);
}

static void
u_pis (struct ovl_buf *b, unsigned i)
{
  ovl_buf_printf (b, "<?p%u?>", i);
}

static void
u_blanks (struct ovl_buf *b, unsigned i)      /* distinct blank texts, interned */
{
  ovl_buf_printf (b, "<a/>");
  for (; i; i >>= 1)
    ovl_buf_printf (b, "%c", i & 1 ? '\t' : ' ');
}

static void
u_refs (struct ovl_buf *b, unsigned i)        /* undefined: an error, then on to the end */
{
  ovl_buf_printf (b, "&e%u;", i);
}

static void
u_attr (struct ovl_buf *b, unsigned i)
{
  ovl_buf_printf (b, " a%u=''", i);
}

static void
u_xmlns (struct ovl_buf *b, unsigned i)
{
  ovl_buf_printf (b, " xmlns:p%u='urn:p%u'", i, i);
}

static void
u_comment (struct ovl_buf *b, unsigned i)
{
  ovl_buf_printf (b, "<!-- a%u='' --><![CDATA[ b%u='' ]]><?pi c%u='' ?>", i, i, i);
}

/* 255 namespaces in scope: 200 on nested elements, 55 on the last. */
static char *
ns_head (void)
{
  struct ovl_buf b = OVL_BUF_INIT;
  unsigned i;
  for (i = 0; i < 200; i++)
    ovl_buf_printf (&b, "<e xmlns:p%u='urn:p%u'>", i, i);
  ovl_buf_printf (&b, "<e");
  for (; i < 255; i++)
    ovl_buf_printf (&b, " xmlns:p%u='urn:p%u'", i, i);
  ovl_buf_printf (&b, ">");
  return ovl_buf_steal (&b);
}

static char *
ns_tail (void)
{
  struct ovl_buf b = OVL_BUF_INIT;
  unsigned i;
  for (i = 0; i < 201; i++)
    ovl_buf_printf (&b, "</e>");
  return ovl_buf_steal (&b);
}

static double
seconds (int64_t t0)
{
  return (double) (ovl_now_ms () - t0) / 1000;
}

/* Input just past a limit is refused before libxml2 sees it, at once. */
static void
test_prescan_limits (void **state)
{
  static const struct {
    const char *head; unit_fn *unit; unsigned n; const char *tail; const char *want;
  } t[] = {
    /* 100000 attributes on one element took libxml2 24 s. */
    { "<g", u_attr, 100000, "/>", "has more than 256 attributes" },
    { "<g", u_attr, OVL_XML_MAX_ATTRS + 1, "/>", "line 1 has more than 256 attributes" },
    { "<g", u_attr, OVL_XML_MAX_ATTRS, "/>", NULL },
    { "<g", u_xmlns, OVL_XML_MAX_ATTRS, "/>", "more than 256 namespace declarations" },
    { "<g", u_xmlns, OVL_XML_MAX_NS_DECLS - 1, "/>", NULL },   /* + xmlns:f */
    { "", u_pis, OVL_XML_MAX_NAMES, "", "more than 100000 tags" },
    { "", u_refs, OVL_XML_MAX_NAMES, "", "more than 100000 tags" },
    { "", u_pis, OVL_XML_MAX_NAMES - 10, "", NULL },
    /* Quoted text in comments, CDATA and PIs is no attribute. */
    { "<g/>", u_comment, 1000, "", NULL },
  };
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t len;
    char *xml = gen (t[i].head, t[i].unit, t[i].n, t[i].tail, &len);
    int64_t t0 = ovl_now_ms ();
    struct ovl_domain *d;

    ovl_error_clear ();
    d = ovl_domxml_parse (xml, len, cfg);
    if (t[i].want) {
      if (d || !strstr (ovl_error_msg (), t[i].want))
        fail_msg ("case %zu: got '%s', want '%s'", i, d ? "parsed" : ovl_error_msg (), t[i].want);
      assert_true (seconds (t0) < 1);   /* the pre-scan alone, even under valgrind */
    }
    else if (!d)
      fail_msg ("case %zu: %s", i, ovl_error_msg ());
    ovl_domain_free (d);
    free (xml);
  }
}

/* The worst input the pre-scan lets through still parses fast. */
static void
test_worst_case_time (void **state)
{
  char *nh = ns_head (), *nt = ns_tail ();
  const struct {
    const char *what, *head; unit_fn *unit; unsigned n; const char *tail; bool valid;
  } t[] = {
    { "256 attributes per element", "", u_attrs, OVL_XML_MAX_NAMES / 257 - 1, "", true },
    { "255 namespaces in scope", nh, u_prefixed, OVL_XML_MAX_NAMES / 256 - 2, nt, true },
    { "distinct names and texts", "", u_names, OVL_XML_MAX_NAMES - 10, "", true },
    { "distinct PIs", "", u_pis, OVL_XML_MAX_NAMES - 10, "", true },
    { "distinct blank texts", "", u_blanks, OVL_XML_MAX_NAMES - 10, "", true },
    { "undefined references", "<g>", u_refs, OVL_XML_MAX_NAMES - 10, "</g>", false },
  };
  double worst = 0;
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t len;
    char *xml = gen (t[i].head, t[i].unit, t[i].n, t[i].tail, &len);
    int64_t t0 = ovl_now_ms ();
    struct ovl_domain *d = ovl_domxml_parse (xml, len, cfg);
    double s = seconds (t0);

    printf ("# %-28s %8zu bytes  %.3f s\n", t[i].what, len, s);
    if (t[i].valid && !d)
      fail_msg ("%s: %s", t[i].what, ovl_error_msg ());
    if (!t[i].valid && (d || !strstr (ovl_error_msg (), "malformed")))
      fail_msg ("%s: want libxml2's error, got '%s'", t[i].what, d ? "parsed" : ovl_error_msg ());
    if (s > worst)
      worst = s;
    ovl_domain_free (d);
    free (xml);
  }
  free (nh);
  free (nt);
  printf ("# worst case that passes the pre-scan: %.3f s\n", worst);
  /* Under valgrind the figure means nothing; the cases still run. */
  if (!getenv ("OVL_VALGRIND") || strcmp (getenv ("OVL_VALGRIND"), "1") != 0)
    assert_true (worst < 5);
}

/* Every message is one line: control characters are stored escaped. */
static void
test_error_escape (void **state)
{
  static const struct { const char *in; size_t dstlen; const char *out; } t[] = {
    { "plain /path/x.qcow2", 64, "plain /path/x.qcow2" },
    { "a\nb", 64, "a\\nb" },
    { "\t\r", 64, "\\t\\r" },
    { "\x01\x1f\x7f", 64, "\\x01\\x1f\\x7f" },
    { "caf\xc3\xa9", 64, "caf\xc3\xa9" },        /* UTF-8 is kept */
    { "ab\n", 4, "ab" },                    /* an escape is never cut */
    { "ab\x02", 6, "ab" },
    { "abc", 1, "" },
  };
  char buf[64];
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    memset (buf, 'X', sizeof buf);
    ovl_escape_controls (buf, t[i].dstlen, t[i].in);
    assert_string_equal (buf, t[i].out);
  }
  ovl_error ("disk %s: '%s'", "vda", "a\nb");
  assert_string_equal (ovl_error_msg (), "disk vda: 'a\\nb'");
  ovl_error_prefix ("disk %s: ", "v\td");
  assert_string_equal (ovl_error_msg (), "disk v\\td: disk vda: 'a\\nb'");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_samples),
    cmocka_unit_test (test_clone),
    cmocka_unit_test (test_oversize),
    cmocka_unit_test (test_schema),
    cmocka_unit_test (test_error_escape),
    cmocka_unit_test (test_prescan_limits),
    cmocka_unit_test (test_worst_case_time),
  };
  int r = cmocka_run_group_tests_name ("domxml", tests, setup, teardown);
  xmlCleanupParser ();
  return r;
}
