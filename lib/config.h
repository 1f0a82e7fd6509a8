/* The configuration file: "key = value" lines, '#' comments.
 *
 * Path: $VIRT_OVERLAY_CONFIG, else SYSCONFDIR/virt-overlay/virt-overlay.conf
 * (a missing default file means all defaults).  Unknown keys and bad
 * values are errors naming the file and line.
 */
#ifndef OVL_CONFIG_H
#define OVL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits more than one module must agree on. */
/* Overlays in one batch, so disks handled in one domain: qsd sends about
 * five events per job and the QMP client caps the events it holds. */
#define OVL_MAX_BATCH 256
/* qemu-storage-daemons a batch may be spread over (qsd_daemons). */
#define OVL_QSD_DAEMONS_MAX 8

struct ovl_dirs {
  char **dir;
  size_t n;
};

struct ovl_config {
  char *qsd_socket;
  bool qsd_spawn;
  char *qsd_binary;
  unsigned qsd_daemons;         /* a batch is spread over this many */
  struct ovl_dirs overlay_dirs;
  struct ovl_dirs base_dirs;
  char *state_dir;
  char *managed_save_dir;       /* libvirt's, to spot a managed save */
  unsigned timeout_ms;          /* one deadline for a whole invocation */
  uint64_t cluster_size;
  bool lazy_refcounts;
  bool extended_l2;
  unsigned pool_size;
};

#define OVL_CONFIG_DEFAULT_PATH SYSCONFDIR "/virt-overlay/virt-overlay.conf"

/* Load the configuration (see above).  NULL with the error set. */
struct ovl_config *ovl_config_load (void);
/* Load from PATH; MUST_EXIST false lets a missing file mean defaults.
 * PATH must be a regular file (symlinks followed) of at most 1 MiB. */
struct ovl_config *ovl_config_load_file (const char *path, bool must_exist);
/* Parse LEN bytes of configuration text (any bytes: this is what the
 * fuzzer drives); NAME is the file name for messages. */
struct ovl_config *ovl_config_parse (const char *name, const char *buf, size_t len);
void ovl_config_free (struct ovl_config *c);
#define CLEANUP_CONFIG __attribute__((cleanup (ovl_config_cleanup)))
void ovl_config_cleanup (struct ovl_config **c);

/* Shared checks for option values, also used for per-disk metadata. */
int ovl_check_cluster_size (uint64_t v);
int ovl_parse_dirs (const char *value, struct ovl_dirs *out);
void ovl_dirs_free (struct ovl_dirs *d);

#endif
