/* Helpers shared by the test programs: data files, temporary
 * directories, required tools, and a real qemu-storage-daemon. */
#ifndef OVL_TESTUTIL_H
#define OVL_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* exit 77 (skip) unless PROG is installed; in CI (OVL_REQUIRE_ALL=1) a
 * missing tool is a failure instead. */
void t_require (const char *prog);
/* Read a whole file; NULL if it does not exist. */
char *t_read_file (const char *path, size_t *len);
/* The golden file PATH for output GOT (a new string), or NULL when it
 * is missing.  With OVL_REGENERATE=1 in the environment, GOT is written
 * there first. */
char *t_golden (const char *path, const char *got);
/* $srcdir/tests/data/REL */
char *t_data_path (const char *rel);
/* A fresh 0711 directory under $TMPDIR, removed by t_rmtree. */
char *t_mkdtemp (void);
void t_rmtree (const char *dir);
/* Run a shell command; 0 if it succeeded, else -1 (it is named on
 * stderr).  T_RUN fails the test. */
int t_run (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
#define T_RUN(...) assert_int_equal (t_run (__VA_ARGS__), 0)

/* A real qemu-storage-daemon with one monitor on SOCK, a child of the
 * test in the foreground, its output in LOG: if it goes away, the test
 * can say how and what it said (t_qsd_state). */
struct t_qsd {
  pid_t pid;
  char *sock;
  char *pidfile;
  char *log;
  int status;                   /* its wait status, once reaped */
  bool reaped;
};
/* How many descriptors this process has open. */
int t_open_fds (void);

/* gc's questions to libvirt (struct ovl_gc_ops), answered as by a
 * libvirt that knows no domain. */
int t_gc_unknown (void *opaque, const char *uuid);
int t_gc_unused (void *opaque, const char *path, const char **who);

/* Alive and not a zombie. */
bool t_pid_alive (pid_t pid);
int t_qsd_start (struct t_qsd *q, const char *dir);
void t_qsd_stop (struct t_qsd *q);
/* "running", or how it ended, then the last lines of its log: for a
 * failure message.  Static storage. */
const char *t_qsd_state (struct t_qsd *q);
bool t_qsd_running (struct t_qsd *q);

#endif
