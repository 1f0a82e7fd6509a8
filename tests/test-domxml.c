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
      if (getenv ("OVL_REGENERATE")) {
        FILE *f = fopen (plan_path, "w");
        fputs (plan, f);
        fclose (f);
      }
      expected = t_read_file (plan_path, NULL);
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
    for (o = md ? md->children : NULL; o; o = o->next) {
      xmlDocPtr sub;
      xmlRelaxNGValidCtxtPtr vctx;
      int valid;
      if (o->type != XML_ELEMENT_NODE || !o->ns ||
          xmlStrcmp (o->ns->href, BAD_CAST OVL_XML_NS) != 0)
        continue;
      sub = xmlNewDoc (BAD_CAST "1.0");
      xmlDocSetRootElement (sub, xmlDocCopyNode (o, sub, 1));
      vctx = xmlRelaxNGNewValidCtxt (schema);
      xmlRelaxNGSetValidStructuredErrors (vctx, quiet, NULL);
      valid = xmlRelaxNGValidateDoc (vctx, sub) == 0;
      xmlRelaxNGFreeValidCtxt (vctx);
      xmlFreeDoc (sub);
      want = expected_error (e->d_name);
      /* Samples that fail on their metadata must fail the schema too;
       * which disk the metadata names, and how often, is a
       * cross-reference no schema can see. */
      if (want && strstr (want, "metadata names") == NULL &&
          (strstr (want, "metadata") || strstr (want, "mode")))
        assert_false (valid);
      else if (!want)
        assert_true (valid);
      free (want);
      checked++;
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
    cmocka_unit_test (test_oversize),
    cmocka_unit_test (test_schema),
    cmocka_unit_test (test_error_escape),
  };
  int r = cmocka_run_group_tests_name ("domxml", tests, setup, teardown);
  xmlCleanupParser ();
  return r;
}
