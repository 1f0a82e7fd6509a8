/* Domain XML parsing with libxml2; see domxml.h. */
#include <config.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "cleanup.h"
#include "domxml.h"
#include "error.h"
#include "util.h"

#define MAX_ATTRS OVL_XML_MAX_ATTRS
#define MAX_NS_DECLS OVL_XML_MAX_NS_DECLS
#define MAX_NAMES OVL_XML_MAX_NAMES

void
ovl_domain_free (struct ovl_domain *d)
{
  size_t i;

  if (!d)
    return;
  for (i = 0; i < d->ndisks; i++) {
    free (d->disks[i].target);
    free (d->disks[i].overlay);
    free (d->disks[i].base);
  }
  free (d->disks);
  for (i = 0; i < d->nfiles; i++)
    free (d->files[i]);
  free (d->files);
  free (d->name);
  free (d->uuid);
  free (d);
}

void
ovl_domain_cleanup (struct ovl_domain **d)
{
  ovl_domain_free (*d);
}

static void
doc_cleanup (xmlDocPtr *doc)
{
  if (*doc)
    xmlFreeDoc (*doc);
}
#define CLEANUP_XMLFREEDOC __attribute__((cleanup (doc_cleanup)))

static void
xmlfree_cleanup (xmlChar **p)
{
  if (*p)
    xmlFree (*p);
}
#define CLEANUP_XMLFREE __attribute__((cleanup (xmlfree_cleanup)))

static bool
is_elem (xmlNodePtr n, const char *name)
{
  return n->type == XML_ELEMENT_NODE && xmlStrcmp (n->name, BAD_CAST name) == 0 &&
    (!n->ns || !n->ns->href);
}

/* First child element NAME without a namespace, or NULL. */
static xmlNodePtr
child (xmlNodePtr parent, const char *name)
{
  xmlNodePtr n;
  for (n = parent ? parent->children : NULL; n; n = n->next)
    if (is_elem (n, name))
      return n;
  return NULL;
}

/* A copy of V (from libxml2) into *OUT: NULL if V is.  0, or -1 when
 * out of memory (error set), so that running out of memory is never
 * taken for a missing attribute. */
static int
dup_xml (const xmlChar *v, char **out)
{
  *out = NULL;
  if (v && !(*out = ovl_strdup ((const char *) v)))
    return -1;
  return 0;
}

/* Attribute NAME (no namespace) of N into *OUT, NULL if absent. */
static int
attr (xmlNodePtr n, const char *name, char **out)
{
  CLEANUP_XMLFREE xmlChar *v = n ? xmlGetNoNsProp (n, BAD_CAST name) : NULL;
  return dup_xml (v, out);
}

static bool
attr_is (xmlNodePtr n, const char *name, const char *want)
{
  CLEANUP_XMLFREE xmlChar *v = n ? xmlGetNoNsProp (n, BAD_CAST name) : NULL;
  return v && strcmp ((const char *) v, want) == 0;
}

/* The text of N into *OUT, NULL if there is no N. */
static int
text_of (xmlNodePtr n, char **out)
{
  CLEANUP_XMLFREE xmlChar *v = n ? xmlNodeGetContent (n) : NULL;
  return dup_xml (v, out);
}

static bool
valid_uuid (const char *u)
{
  size_t i;
  if (strlen (u) != 36)
    return false;
  for (i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (u[i] != '-')
        return false;
    }
    else if (!isxdigit ((unsigned char) u[i]))
      return false;
  }
  return true;
}

static bool
starts (const char *p, const char *e, const char *s)
{
  size_t n = strlen (s);
  return (size_t) (e - p) >= n && memcmp (p, s, n) == 0;
}

/* Past the first END at or after P; NULL if there is none. */
static const char *
skip_past (const char *p, const char *e, const char *end)
{
  const char *q = memmem (p, (size_t) (e - p), end, strlen (end));
  return q ? q + strlen (end) : NULL;
}

static int
line_of (const char *xml, const char *p)
{
  int line = 1;
  for (; xml < p; xml++)
    line += *xml == '\n';
  return line;
}

static bool
is_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

struct scan {
  const char *xml, *end;
  unsigned names, nsdecls;
};

/* One more name-bearing token at AT; -1 (and an error) past the limit. */
static int
count_name (struct scan *s, const char *at)
{
  if (++s->names <= MAX_NAMES)
    return 0;
  ovl_error ("domain XML: more than %d tags, attributes, references and comments "
             "(line %d); refused", MAX_NAMES, line_of (s->xml, at));
  return -1;
}

/* The start tag at P (just past its '<'): count its attributes (one per
 * quoted value), namespace declarations and entity references.  Returns
 * the end of the tag, or NULL (and an error) past a limit. */
static const char *
scan_tag (struct scan *s, const char *p)
{
  const char *tag = p - 1, *e = s->end;
  unsigned nattrs = 0;
  char quote = 0;
  bool after_space = false;

  for (; p < e; p++) {
    if (quote) {
      if (*p == quote)
        quote = 0;
      else if (*p == '&' && p + 1 < e && p[1] != '#' && count_name (s, p) == -1)
        return NULL;
      continue;
    }
    if (*p == '>')
      break;
    if (*p == '"' || *p == '\'') {
      quote = *p;
      if (++nattrs > MAX_ATTRS) {
        ovl_error ("domain XML: the element at line %d has more than %d attributes; refused",
                   line_of (s->xml, tag), MAX_ATTRS);
        return NULL;
      }
      if (count_name (s, p) == -1)
        return NULL;
    }
    else if (after_space && starts (p, e, "xmlns") && p + 5 < e &&
             (p[5] == ':' || p[5] == '=' || is_space (p[5])) &&
             ++s->nsdecls > MAX_NS_DECLS) {
      ovl_error ("domain XML: more than %d namespace declarations (line %d); refused",
                 MAX_NS_DECLS, line_of (s->xml, tag));
      return NULL;
    }
    after_space = is_space (*p);
  }
  return p;
}

/* Work that grows faster than the input in libxml2 2.9 is bounded here,
 * in one linear pass over the raw bytes, before libxml2 sees them:
 * - the attributes of one element: the duplicate check and the property
 *   list are quadratic (100000 attributes in foreign metadata, which
 *   libvirt keeps as it is, cost 24 s);
 * - namespace declarations: each prefixed name is looked up through all
 *   those in scope;
 * - names, which go through a dictionary whose table stops growing at
 *   16384 buckets, and short text nodes, interned there too, one per
 *   tag, comment or PI: 400000 distinct names cost 4 s, even after a
 *   well-formedness error (libxml2 goes on to the end).
 * Comments, CDATA sections, PIs and quoted values are skipped as libxml2
 * does; nesting is bounded by libxml2 itself (256 without XML_PARSE_HUGE).
 * Malformed input that passes is left for libxml2 to report. */
static int
prescan (const char *xml, size_t len)
{
  struct scan s = { .xml = xml, .end = xml + len };
  const char *p = xml, *e = s.end;

  while (p && p < e) {
    if (*p == '&' && p + 1 < e && p[1] != '#' && count_name (&s, p) == -1)
      return -1;
    if (*p != '<') {
      p++;
      continue;
    }
    if (!starts (p, e, "</") && count_name (&s, p) == -1)
      return -1;
    if (starts (p, e, "<!--"))
      p = skip_past (p + 4, e, "-->");
    else if (starts (p, e, "<![CDATA["))
      p = skip_past (p + 9, e, "]]>");
    else if (starts (p, e, "<?"))
      p = skip_past (p + 2, e, "?>");
    else if (starts (p, e, "<!DOCTYPE")) {
      /* An internal subset could declare attributes and namespaces
       * that no tag shows; we refuse any DTD anyway. */
      ovl_error ("domain XML carries a DTD; refused");
      return -1;
    }
    else if (starts (p, e, "</") || starts (p, e, "<!"))
      p += 2;
    else if (!(p = scan_tag (&s, p + 1)))
      return -1;
  }
  return 0;
}

/* Apply one <ovl:disk> element to DISK. */
static int
apply_policy (xmlNodePtr n, struct ovl_disk *disk)
{
  CLEANUP_FREE char *mode = NULL, *cluster = NULL, *lazy = NULL, *ext = NULL, *size = NULL;
  xmlAttrPtr a;

  if (attr (n, "mode", &mode) == -1 || attr (n, "cluster-size", &cluster) == -1 ||
      attr (n, "lazy-refcounts", &lazy) == -1 || attr (n, "extended-l2", &ext) == -1 ||
      attr (n, "size", &size) == -1)
    return -1;

  for (a = n->properties; a; a = a->next) {
    static const char *known[] = { "target", "mode", "cluster-size", "lazy-refcounts",
                                   "extended-l2", "size" };
    size_t i;
    for (i = 0; i < sizeof known / sizeof known[0]; i++)
      if (xmlStrcmp (a->name, BAD_CAST known[i]) == 0)
        break;
    if (i == sizeof known / sizeof known[0]) {
      ovl_error ("disk %s: unknown metadata attribute '%s'", disk->target, (const char *) a->name);
      return -1;
    }
  }
  if (mode) {
    if (strcmp (mode, "ephemeral") == 0)
      disk->mode = OVL_MODE_EPHEMERAL;
    else if (strcmp (mode, "persistent") == 0)
      disk->mode = OVL_MODE_PERSISTENT;
    else {
      ovl_error ("disk %s: mode '%s' is not persistent or ephemeral", disk->target, mode);
      return -1;
    }
  }
  if ((cluster && (ovl_parse_u64 (cluster, &disk->cluster_size) == -1 ||
                   ovl_check_cluster_size (disk->cluster_size) == -1)) ||
      (lazy && ovl_parse_bool (lazy, &disk->lazy_refcounts) == -1) ||
      (ext && ovl_parse_bool (ext, &disk->extended_l2) == -1) ||
      (size && ovl_parse_u64 (size, &disk->size) == -1)) {
    ovl_error_prefix ("disk %s: metadata: ", disk->target);
    return -1;
  }
  return 0;
}

/* The shape of a disk virt-overlay makes overlays for: a qcow2 file whose
 * first backing image is a qcow2 or raw file (libvirt sees to the rest of
 * the chain).  Sources are checked by why_unsupported(). */
static bool
shape_is_ours (xmlNodePtr n)
{
  xmlNodePtr bs = child (n, "backingStore");

  return attr_is (n, "type", "file") && attr_is (n, "device", "disk") &&
    attr_is (child (n, "driver"), "type", "qcow2") && !child (n, "transient") &&
    bs && attr_is (bs, "type", "file") &&
    (attr_is (child (bs, "format"), "type", "qcow2") ||
     attr_is (child (bs, "format"), "type", "raw"));
}

static bool
has_attr (xmlNodePtr n, const char *name)
{
  return n && xmlHasNsProp (n, BAD_CAST name, NULL) != NULL;   /* no namespace */
}

/* Why the image at SOURCE (in element HOLDER, <disk> or <backingStore>)
 * is not a plain file we can name in a qcow2 header, or NULL.  An
 * overlay made from its path would be wrong: unencrypted, without its
 * data file, over the whole file instead of a slice, or beside the
 * descriptor libvirt actually hands to QEMU. */
static const char *
why_not_plain (xmlNodePtr holder, xmlNodePtr source, bool top)
{
  if (child (source, "encryption") || child (holder, "encryption"))
    return top ? "<encryption> on the overlay (it would be written unencrypted)"
      : "<encryption> on the base";
  if (child (source, "dataStore"))
    return top ? "<dataStore> on the overlay (an external data file)"
      : "<dataStore> on the base (an external data file)";
  if (child (source, "slices"))
    return top ? "<slices> on the overlay (the disk is part of the file)"
      : "<slices> on the base (the whole file would be used)";
  if (has_attr (source, "fdgroup"))
    return top ? "fdgroup on the overlay's <source> (libvirt passes a descriptor)"
      : "fdgroup on the base's <source> (libvirt passes a descriptor)";
  if (!has_attr (source, "file"))
    return top ? "no <source file> for the overlay" : "no <source file> for the base";
  return NULL;
}

/* For a disk of our shape: why we leave it to libvirt, or NULL. */
static const char *
why_unsupported (xmlNodePtr n)
{
  xmlNodePtr bs = child (n, "backingStore");
  const char *why = why_not_plain (n, child (n, "source"), true);

  return why ? why : why_not_plain (bs, child (bs, "source"), false);
}

/* Read <disk> N into OUT if we handle it: 1 handled, 0 ignored, -1 error. */
static int
parse_disk (xmlNodePtr n, const struct ovl_config *cfg, struct ovl_disk *out)
{
  xmlNodePtr bs = child (n, "backingStore");
  CLEANUP_FREE char *dev = NULL, *file = NULL, *bfile = NULL, *bfmt = NULL;

  if (!shape_is_ours (n) || why_unsupported (n))
    return 0;
  /* Present: the shape says so. */
  if (attr (child (n, "source"), "file", &file) == -1 ||
      attr (child (bs, "source"), "file", &bfile) == -1 ||
      attr (child (bs, "format"), "type", &bfmt) == -1 ||
      attr (child (n, "target"), "dev", &dev) == -1)
    return -1;
  if (!file || !bfile || !bfmt) {
    ovl_error ("domain XML: a disk's attributes could not be read");
    return -1;
  }
  if (!dev || !*dev) {
    ovl_error ("disk with source '%s' has no <target dev>", file);
    return -1;
  }
  if (ovl_has_control (dev) || ovl_has_control (file) || ovl_has_control (bfile)) {
    ovl_error ("disk %s: control characters in a name or path", !ovl_has_control (dev) ? dev : "?");
    return -1;
  }
  memset (out, 0, sizeof *out);
  out->target = OVL_STEAL (dev);
  out->overlay = OVL_STEAL (file);
  out->base = OVL_STEAL (bfile);
  ovl_format_parse (bfmt, &out->base_format);
  out->mode = OVL_MODE_PERSISTENT;
  out->cluster_size = cfg->cluster_size;
  out->lazy_refcounts = cfg->lazy_refcounts;
  out->extended_l2 = cfg->extended_l2;
  return 1;
}

/* The metadata names TGT, which is not a handled disk: say why. */
static void
report_unhandled (xmlNodePtr devices, const char *tgt)
{
  xmlNodePtr n;

  for (n = devices ? devices->children : NULL; n; n = n->next) {
    const char *why;
    if (!is_elem (n, "disk") || !attr_is (child (n, "target"), "dev", tgt) ||
        !shape_is_ours (n) || !(why = why_unsupported (n)))
      continue;
    ovl_error ("disk %s: metadata names a disk virt-overlay leaves to libvirt: %s",
               tgt, why);
    return;
  }
  ovl_error ("disk %s: metadata names a disk that has no qcow2 overlay on a "
             "<backingStore> of type file", tgt);
}

static int
parse_policies (xmlNodePtr root, struct ovl_domain *d)
{
  xmlNodePtr md = child (root, "metadata"), o, n;
  CLEANUP_FREE bool *named = NULL;
  size_t i;

  if (d->ndisks && !(named = ovl_calloc (d->ndisks, sizeof *named)))
    return -1;

  for (o = md ? md->children : NULL; o; o = o->next) {
    if (o->type != XML_ELEMENT_NODE || !o->ns ||
        xmlStrcmp (o->ns->href, BAD_CAST OVL_XML_NS) != 0)
      continue;
    if (xmlStrcmp (o->name, BAD_CAST "overlays") != 0) {
      ovl_error ("metadata: unknown element '%s' in " OVL_XML_NS, (const char *) o->name);
      return -1;
    }
    for (n = o->children; n; n = n->next) {
      CLEANUP_FREE char *tgt = NULL;
      if (n->type != XML_ELEMENT_NODE)
        continue;
      if (!n->ns || xmlStrcmp (n->ns->href, BAD_CAST OVL_XML_NS) != 0 ||
          xmlStrcmp (n->name, BAD_CAST "disk") != 0) {
        ovl_error ("metadata: unexpected element '%s' in <overlays>", (const char *) n->name);
        return -1;
      }
      if (attr (n, "target", &tgt) == -1)
        return -1;
      if (!tgt) {
        ovl_error ("metadata: <disk> without a target");
        return -1;
      }
      for (i = 0; i < d->ndisks; i++)
        if (strcmp (d->disks[i].target, tgt) == 0)
          break;
      if (i == d->ndisks) {
        report_unhandled (child (root, "devices"), tgt);
        return -1;
      }
      /* Two entries would mean two policies; neither silently wins. */
      if (named[i]) {
        ovl_error ("disk %s: metadata names this disk twice", tgt);
        return -1;
      }
      named[i] = true;
      if (apply_policy (n, &d->disks[i]) == -1)
        return -1;
    }
  }
  return 0;
}

/* Every <source file='...'> in DISK's subtree (its backing chain
 * included) into D->files. */
static int
collect_files (xmlNodePtr disk, struct ovl_domain *d)
{
  xmlNodePtr n = disk->children;

  while (n && n != disk) {
    if (is_elem (n, "source") && has_attr (n, "file")) {
      char *f = NULL;
      if (OVL_RESERVE (d->files, d->files_cap, d->nfiles + 1, 8) == -1 ||
          attr (n, "file", &f) == -1)
        return -1;
      d->files[d->nfiles++] = f;
    }
    /* Depth first, back up to DISK. */
    if (n->type == XML_ELEMENT_NODE && n->children)
      n = n->children;
    else {
      while (n != disk && !n->next)
        n = n->parent;
      if (n != disk)
        n = n->next;
    }
  }
  return 0;
}

/* LEN bytes of domain XML, bounded and checked, as a document whose
 * root is <domain>; NULL with the error set. */
static xmlDocPtr
read_doc (const char *xml, size_t len)
{
  CLEANUP_XMLFREEDOC xmlDocPtr doc = NULL;
  xmlNodePtr root;

  if (len > OVL_XML_MAX) {
    ovl_error ("domain XML is larger than %d bytes", OVL_XML_MAX);
    return NULL;
  }
  if (len > (size_t) 0x7fffffff)
    return NULL;
  if (prescan (xml, len) == -1)
    return NULL;
  /* No network, no entity substitution, no DTD loading, no XInclude. */
  doc = xmlReadMemory (xml, (int) len, "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                       XML_PARSE_NOCDATA | XML_PARSE_NODICT);
  if (!doc) {
    const xmlError *e = xmlGetLastError ();
    char msg[256];
    snprintf (msg, sizeof msg, "%s", e && e->message ? e->message : "parse error");
    msg[strcspn (msg, "\n")] = '\0';
    ovl_error ("domain XML is malformed: line %d: %s", e ? e->line : 0, msg);
    return NULL;
  }
  if (doc->intSubset || doc->extSubset) {
    ovl_error ("domain XML carries a DTD; refused");
    return NULL;
  }
  root = xmlDocGetRootElement (doc);
  if (!root || !is_elem (root, "domain")) {
    ovl_error ("domain XML: the root element is not <domain>");
    return NULL;
  }
  return OVL_STEAL (doc);
}

struct ovl_domain *
ovl_domxml_parse (const char *xml, size_t len, const struct ovl_config *cfg)
{
  CLEANUP_XMLFREEDOC xmlDocPtr doc = read_doc (xml, len);
  CLEANUP_DOMAIN struct ovl_domain *d = NULL;
  xmlNodePtr root, devices, n;
  CLEANUP_FREE char *uuid = NULL;

  if (!doc)
    return NULL;
  root = xmlDocGetRootElement (doc);
  if (!(d = ovl_calloc (1, sizeof *d)))
    return NULL;
  if (text_of (child (root, "name"), &d->name) == -1 ||
      text_of (child (root, "uuid"), &uuid) == -1)
    return NULL;
  if (!d->name || !*d->name || ovl_has_control (d->name)) {
    ovl_error ("domain XML: missing or bad <name>");
    return NULL;
  }
  if (uuid) {
    if (!valid_uuid (uuid)) {
      ovl_error ("domain XML: bad <uuid>");
      return NULL;
    }
    for (char *p = uuid; *p; p++)
      *p = (char) tolower ((unsigned char) *p);
    d->uuid = OVL_STEAL (uuid);
  }

  devices = child (root, "devices");
  for (n = devices ? devices->children : NULL; n; n = n->next) {
    int r;
    size_t i;
    if (!is_elem (n, "disk"))
      continue;
    if (collect_files (n, d) == -1)
      return NULL;
    if (d->ndisks == OVL_MAX_BATCH) {
      ovl_error ("domain XML: more than %d disks", OVL_MAX_BATCH);
      return NULL;
    }
    if (OVL_RESERVE (d->disks, d->disks_cap, d->ndisks + 1, 4) == -1)
      return NULL;
    r = parse_disk (n, cfg, &d->disks[d->ndisks]);
    if (r == -1)
      return NULL;
    if (r == 0)
      continue;
    for (i = 0; i < d->ndisks; i++)
      if (strcmp (d->disks[i].target, d->disks[d->ndisks].target) == 0) {
        ovl_error ("disk %s: target used twice", d->disks[i].target);
        d->ndisks++;
        return NULL;
      }
    d->ndisks++;
  }
  if (parse_policies (root, d) == -1)
    return NULL;
  if (d->ndisks && !d->uuid) {
    ovl_error ("domain XML: missing <uuid>");
    return NULL;
  }
  return OVL_STEAL (d);
}

bool
ovl_domain_has_ephemeral (const struct ovl_domain *d)
{
  size_t i;
  for (i = 0; i < d->ndisks; i++)
    if (d->disks[i].mode == OVL_MODE_EPHEMERAL)
      return true;
  return false;
}

char *
ovl_domain_plan (const struct ovl_domain *d)
{
  struct ovl_buf b = OVL_BUF_INIT;
  size_t i;

  if (ovl_buf_printf (&b, "domain %s uuid %s\n", d->name, d->uuid ? d->uuid : "-") == -1)
    goto fail;
  for (i = 0; i < d->ndisks; i++) {
    const struct ovl_disk *k = &d->disks[i];
    if (ovl_buf_printf (&b, "disk %s mode=%s overlay=%s base=%s format=%s size=%llu "
                    "cluster-size=%llu lazy-refcounts=%s extended-l2=%s\n",
                    k->target, k->mode == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent",
                    k->overlay, k->base, ovl_format_name (k->base_format),
                    (unsigned long long) k->size, (unsigned long long) k->cluster_size,
                    k->lazy_refcounts ? "on" : "off", k->extended_l2 ? "on" : "off") == -1)
      goto fail;
  }
  return ovl_buf_steal (&b);
 fail:
  ovl_buf_reset (&b);
  return NULL;
}

/* ---- linked clones ---- */

/* OVERLAY's path for a clone named NEW of domain SRC: beside it, the
 * file name's leading SRC (followed by '-', '_' or '.') replaced by NEW,
 * or "NEW-" put in front. */
static char *
clone_path (const char *overlay, const char *src, const char *new_name)
{
  const char *slash = strrchr (overlay, '/');
  const char *base = slash ? slash + 1 : overlay;
  size_t n = strlen (src);
  int dirlen = (int) (base - overlay);
  char *p;
  int r;

  if (n && strncmp (base, src, n) == 0 && base[n] && strchr ("-_.", base[n]))
    r = asprintf (&p, "%.*s%s%s", dirlen, overlay, new_name, base + n);
  else
    r = asprintf (&p, "%.*s%s-%s", dirlen, overlay, new_name, base);
  if (r == -1) {
    ovl_error ("out of memory");
    return NULL;
  }
  return p;
}

/* Replace N's content with the text T. */
static int
set_text (xmlNodePtr n, const char *t)
{
  xmlNodePtr text;

  while (n->children) {
    xmlNodePtr c = n->children;
    xmlUnlinkNode (c);
    xmlFreeNode (c);
  }
  if (t && !(text = xmlNewText (BAD_CAST t))) {
    ovl_error ("out of memory");
    return -1;
  }
  if (t)
    xmlAddChild (n, text);
  return 0;
}

static void
drop (xmlNodePtr n)
{
  if (n) {
    xmlUnlinkNode (n);
    xmlFreeNode (n);
  }
}

/* A <disk> virt-overlay does not handle, which a linked clone would
 * share: one the guest can write. */
static bool
shared_writable (xmlNodePtr n)
{
  CLEANUP_FREE char *device = NULL;

  if (attr (n, "device", &device) == -1)
    return true;                /* out of memory: not shared, surely */
  if (device && strcmp (device, "cdrom") != 0 && strcmp (device, "floppy") != 0 &&
      strcmp (device, "disk") != 0 && strcmp (device, "lun") != 0)
    return false;
  if (device && (strcmp (device, "cdrom") == 0 || strcmp (device, "floppy") == 0) &&
      !child (n, "source"))
    return false;               /* an empty drive */
  return !child (n, "readonly") && !child (n, "shareable") && !child (n, "transient");
}

/* The work of ovl_domxml_clone on D (parsed from XML); MADE collects the
 * new overlay paths (*NMADE of them, for the caller to free). */
static char *
clone_doc (const char *xml, size_t len, const struct ovl_domain *d, const char *new_name,
           int mode, char **made, size_t *nmade)
{
  CLEANUP_XMLFREEDOC xmlDocPtr doc = NULL;
  xmlNodePtr root, n, md, o;
  xmlChar *out = NULL;
  int outlen = 0;
  char *ret;
  size_t i, j;

  /* It becomes part of file names: no '/', no leading '.' (a hidden or
   * reserved name). */
  if (!*new_name || new_name[0] == '.' || strchr (new_name, '/') || ovl_has_control (new_name) ||
      strcmp (new_name, d->name) == 0) {
    ovl_error ("'%s' cannot be the new domain's name", new_name);
    return NULL;
  }
  if (!(doc = read_doc (xml, len)))
    return NULL;
  root = xmlDocGetRootElement (doc);
  /* A new name, and no UUID: libvirt makes one. */
  if (set_text (child (root, "name"), new_name) == -1)
    return NULL;
  drop (child (root, "uuid"));
  /* A fresh NVRAM from its template, not the source's variables: only
   * the template stays. */
  if ((n = child (child (root, "os"), "nvram"))) {
    xmlAttrPtr a = n->properties, next;
    if (set_text (n, NULL) == -1)
      return NULL;
    for (; a; a = next) {
      next = a->next;
      if (xmlStrcmp (a->name, BAD_CAST "template") != 0 &&
          xmlStrcmp (a->name, BAD_CAST "templateFormat") != 0)
        xmlRemoveProp (a);
    }
  }
  /* Nor the source's identity in SMBIOS, or its VM generation ID. */
  for (n = child (root, "sysinfo") ? child (root, "sysinfo")->children : NULL; n; n = n->next) {
    xmlNodePtr e, next;
    if (!is_elem (n, "system"))
      continue;
    for (e = n->children; e; e = next) {
      next = e->next;
      if (is_elem (e, "entry") && (attr_is (e, "name", "uuid") || attr_is (e, "name", "serial")))
        drop (e);
    }
  }
  if ((n = child (root, "genid")) && set_text (n, NULL) == -1)
    return NULL;

  for (n = child (root, "devices") ? child (root, "devices")->children : NULL; n; n = n->next) {
    CLEANUP_FREE char *dev = NULL;

    if (is_elem (n, "interface")) {
      drop (child (n, "mac"));  /* libvirt makes new addresses */
      continue;
    }
    if (!is_elem (n, "disk"))
      continue;
    if (attr (child (n, "target"), "dev", &dev) == -1)
      return NULL;
    for (i = 0; dev && i < d->ndisks && strcmp (d->disks[i].target, dev) != 0; i++)
      ;
    if (!dev || i == d->ndisks) {
      if (shared_writable (n)) {
        ovl_error ("disk %s: virt-overlay does not handle it, and the clone would write to "
                   "it too; make it <readonly/> or <shareable/>, or copy it (virt-clone)",
                   dev ? dev : "?");
        return NULL;
      }
      continue;
    }
    {
      CLEANUP_FREE char *p = clone_path (d->disks[i].overlay, d->name, new_name);
      if (!p)
        return NULL;
      /* Not a source disk's, nor one the clone already has. */
      for (j = 0; j < d->ndisks; j++)
        if (strcmp (d->disks[j].overlay, p) == 0) {
          ovl_error ("disk %s: the clone's overlay '%s' is another disk's", dev, p);
          return NULL;
        }
      for (j = 0; j < *nmade; j++)
        if (strcmp (made[j], p) == 0) {
          ovl_error ("disk %s: the clone's overlay '%s' would serve two of its disks", dev, p);
          return NULL;
        }
      if (!xmlSetProp (child (n, "source"), BAD_CAST "file", BAD_CAST p)) {
        ovl_error ("out of memory");
        return NULL;
      }
      made[(*nmade)++] = OVL_STEAL (p);
    }
  }

  /* --mode: every handled disk's, in our metadata (made if need be). */
  if (mode >= 0) {
    const char *m = mode == OVL_MODE_EPHEMERAL ? "ephemeral" : "persistent";
    xmlNsPtr ns = NULL;

    md = child (root, "metadata");
    if (!md && !(md = xmlNewChild (root, NULL, BAD_CAST "metadata", NULL)))
      goto oom;
    for (o = md->children; o; o = o->next)
      if (o->type == XML_ELEMENT_NODE && o->ns &&
          xmlStrcmp (o->ns->href, BAD_CAST OVL_XML_NS) == 0)
        break;
    if (!o) {
      if (!(o = xmlNewChild (md, NULL, BAD_CAST "overlays", NULL)) ||
          !(ns = xmlNewNs (o, BAD_CAST OVL_XML_NS, BAD_CAST "ovl")))
        goto oom;
      xmlSetNs (o, ns);
    }
    ns = o->ns;
    for (i = 0; i < d->ndisks; i++) {
      for (n = o->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && attr_is (n, "target", d->disks[i].target))
          break;
      if (!n && (!(n = xmlNewChild (o, ns, BAD_CAST "disk", NULL)) ||
                 !xmlSetProp (n, BAD_CAST "target", BAD_CAST d->disks[i].target)))
        goto oom;
      if (!xmlSetProp (n, BAD_CAST "mode", BAD_CAST m))
        goto oom;
    }
  }

  xmlDocDumpMemory (doc, &out, &outlen);
  if (!out)
    goto oom;
  ret = ovl_strdup ((const char *) out);
  xmlFree (out);
  return ret;

 oom:
  ovl_error ("out of memory");
  return NULL;
}

char *
ovl_domxml_clone (const char *xml, size_t len, const struct ovl_config *cfg,
                  const char *new_name, int mode)
{
  CLEANUP_DOMAIN struct ovl_domain *d = ovl_domxml_parse (xml, len, cfg);
  char *ret, **made;
  size_t i, nmade = 0;

  if (!d)
    return NULL;
  if (!(made = ovl_calloc (d->ndisks + 1, sizeof *made)))
    return NULL;
  ret = clone_doc (xml, len, d, new_name, mode, made, &nmade);
  for (i = 0; i < nmade; i++)
    free (made[i]);
  free (made);
  return ret;
}
