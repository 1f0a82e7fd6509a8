/* A QMP client for qemu-storage-daemon over a UNIX socket.
 *
 * Commands carry an integer "id"; replies are matched by it, so any number
 * of commands may be in flight (pipelining).  Events that arrive while we
 * wait for something else are queued and can be waited for by name and by
 * the values of fields in their "data".  Every wait has an absolute
 * deadline on CLOCK_MONOTONIC (milliseconds, see ovl_now_ms(); -1 = none).
 * Any protocol or I/O error is fatal for the connection: later calls fail
 * with the same error and nothing stale can be taken for a fresh reply.
 */
#ifndef OVL_QMP_H
#define OVL_QMP_H

#include <stdint.h>

#include "json.h"

struct ovl_qmp;

/* Connect, read the greeting and negotiate capabilities. */
struct ovl_qmp *ovl_qmp_connect (const char *path, int64_t deadline);
/* Connect and queue the negotiation without waiting: the greeting and
 * the negotiation's reply are checked by the first wait, and commands
 * sent meanwhile travel in the same write.  Saves a round trip. */
struct ovl_qmp *ovl_qmp_connect_lazy (const char *path, int64_t deadline);
void ovl_qmp_close (struct ovl_qmp *q);

/* Queue a command; ARGS is a JSON object text or NULL.  Nothing is written
 * until a wait or ovl_qmp_flush().  Returns the id (> 0), or 0 on error. */
uint64_t ovl_qmp_send (struct ovl_qmp *q, const char *execute, const char *args);
/* The same with ARGS built as JSON (ovl_json_object_build), which it
 * takes; NULL ARGS (a failed build) sends nothing and returns 0. */
uint64_t ovl_qmp_send_json (struct ovl_qmp *q, const char *execute, struct ovl_json *args);
int ovl_qmp_flush (struct ovl_qmp *q, int64_t deadline);

/* Wait for the reply to ID.  Returns the "return" value (caller frees) or
 * NULL with the error set; a QMP error reply gives "EXECUTE: CLASS: DESC". */
struct ovl_json *ovl_qmp_wait (struct ovl_qmp *q, uint64_t id, int64_t deadline);
/* send + wait. */
struct ovl_json *ovl_qmp_command (struct ovl_qmp *q, const char *execute,
                                  const char *args, int64_t deadline);

/* Wait for an event called NAME whose data matches the NULL-terminated
 * list of (path, string value) pairs; the event is removed from the queue
 * and returned (caller frees). */
struct ovl_json *ovl_qmp_wait_event (struct ovl_qmp *q, int64_t deadline,
                                     const char *name, ...)
  __attribute__((sentinel));

/* The greeting's version triple, e.g. 7.2.22 -> 70222; 0 if unknown. */
unsigned ovl_qmp_version (const struct ovl_qmp *q);
size_t ovl_qmp_events_queued (const struct ovl_qmp *q);
/* The daemon's pid as our pid namespace sees it (SO_PEERCRED); 0 when it
 * runs where we cannot see it, -1 on error. */
long ovl_qmp_peer_pid (const struct ovl_qmp *q);

#endif
