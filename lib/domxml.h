/* The domain XML: which disks get overlays, and how.
 *
 * The XML is untrusted (whoever may define a domain need not be root):
 * input is capped, and a linear pre-scan of the raw bytes bounds what
 * makes libxml2's time grow faster than the input (attributes per
 * element, namespaces, names: see the limits below), no network, no DTD
 * (a document with one is refused, so no entity can be declared), no
 * XInclude processing.  A disk is handled
 * when it is <disk type='file' device='disk'> with <driver type='qcow2'>,
 * a <source file>, and a <backingStore type='file'> giving
 * <format type='qcow2|raw'> and <source file>; every other disk is left to
 * libvirt.
 *
 * A disk of that shape is still left to libvirt when either image is not a
 * plain file we can name in a qcow2 header: <encryption> (in <source>, or
 * in <disk> as libvirt once wrote it), <dataStore> (an external data
 * file), <slices> (the image is part of its file), fdgroup (libvirt hands
 * QEMU a descriptor, the path is a label), or no file attribute.  An
 * overlay made from such a disk's paths would write the guest's data
 * unencrypted, lose its data file, or use the whole base file as base.
 * Left alone means nothing is created: if the overlay is missing, libvirt
 * fails the start itself.  When our metadata names such a disk, the admin
 * asked for an overlay: the parse fails, saying why.  Each disk may be
 * named once in the metadata.  Per-disk policy comes from our element in
 * <metadata>:
 *
 *   <ovl:overlays xmlns:ovl="urn:virt-overlay:domain:1">
 *     <ovl:disk target="vda" mode="ephemeral" cluster-size="131072"
 *               lazy-refcounts="on" extended-l2="on" size="21474836480"/>
 *   </ovl:overlays>
 */
#ifndef OVL_DOMXML_H
#define OVL_DOMXML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "image.h"

#define OVL_XML_NS "urn:virt-overlay:domain:1"
#define OVL_XML_MAX (4 * 1024 * 1024)
/* Checked on the raw bytes before libxml2 parses them (its time grows
 * faster than the input past these).  libvirt's own elements have a
 * handful of attributes; it writes one namespace declaration per
 * application element in <metadata> plus a few on <domain>; a domain with
 * 256 disks and 4096 vCPUs has some 30000 names in all. */
#define OVL_XML_MAX_ATTRS 256         /* on one element */
#define OVL_XML_MAX_NS_DECLS 256      /* in the document */
#define OVL_XML_MAX_NAMES 100000      /* tags, attributes, references, comments, PIs */

enum ovl_mode { OVL_MODE_PERSISTENT, OVL_MODE_EPHEMERAL };

struct ovl_disk {
  char *target;
  char *overlay;
  char *base;
  enum ovl_format base_format;
  enum ovl_mode mode;
  uint64_t size;                /* 0: the base's */
  uint64_t cluster_size;
  bool lazy_refcounts;
  bool extended_l2;
};

struct ovl_domain {
  char *name;
  char *uuid;                   /* validated: 36 chars of hex and '-' */
  struct ovl_disk *disks;
  size_t ndisks, disks_cap;
  char **files;                 /* every disk's every <source file>, backing */
  size_t nfiles, files_cap;     /* chains included, handled or not */
};

/* Parse LEN bytes of domain XML; options default to CFG's. */
struct ovl_domain *ovl_domxml_parse (const char *xml, size_t len,
                                     const struct ovl_config *cfg);
/* The XML of a linked clone of the domain in XML, named NEW_NAME: no
 * UUID and no MAC addresses (libvirt makes new ones), an empty <nvram>
 * (made afresh from its template), and each disk virt-overlay handles
 * on a new overlay beside the source's (its name with the source
 * domain's name replaced by NEW_NAME, or NEW_NAME- in front) over the
 * same base, with mode MODE (an enum ovl_mode) or, if MODE < 0, the
 * source's.  Refused (NULL, error set) when the source has a disk that
 * virt-overlay does not handle and that the guest can write: both
 * domains would write to it.  A new string. */
char *ovl_domxml_clone (const char *xml, size_t len, const struct ovl_config *cfg,
                        const char *new_name, int mode);

void ovl_domain_free (struct ovl_domain *d);
#define CLEANUP_DOMAIN __attribute__((cleanup (ovl_domain_cleanup)))
void ovl_domain_cleanup (struct ovl_domain **d);

bool ovl_domain_has_ephemeral (const struct ovl_domain *d);
/* One line per handled disk, for tests and --plan. */
char *ovl_domain_plan (const struct ovl_domain *d);

#endif
