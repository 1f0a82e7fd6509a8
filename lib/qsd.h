/* The long-lived qemu-storage-daemon: connect to it, or start it.
 *
 * If nothing answers on the configured socket and qsd_spawn is on, we
 * start qsd there ourselves, under an exclusive lock beside the socket so
 * that concurrent callers start one daemon, not several.  qsd is started
 * with --daemonize (the parent exits when the monitor is ready) and
 * --pidfile, in its own session, with stdio on /dev/null and no inherited
 * descriptors: libvirt reads the hook's stdout and stderr to EOF, so a
 * daemon holding them would hang libvirtd.
 *
 * Every wait ends at the caller's deadline (the start lock, qsd's first
 * process, the QMP greeting): a qsd not ready by then is killed with its
 * process group, so that no half-started one keeps the socket path, and
 * the error says what it did (exited with N, killed by signal N, could
 * not be run, exited without listening, not ready in time, or connected
 * but did not answer).
 */
#ifndef OVL_QSD_H
#define OVL_QSD_H

#include <stdint.h>

#include "config.h"
#include "qmp.h"

/* Daemon INDEX (0 .. qsd_daemons-1) listens on qsd_socket, or on
 * qsd_socket.INDEX for the others. */
struct ovl_qmp *ovl_qsd_connect (const struct ovl_config *cfg, unsigned index,
                                 int64_t deadline);
char *ovl_qsd_socket (const struct ovl_config *cfg, unsigned index);

#endif
