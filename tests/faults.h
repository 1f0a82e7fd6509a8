/* Fault injection for tests/test-faults: the program is linked with
 * -Wl,--wrap=F (see TEST_FAULTS_WRAP in Makefile.am) for every
 * allocating function and every system call lib/ makes that can fail
 * for reasons outside its control, so that lib/'s calls come here.
 * One call at a time is failed, in the calling thread only: a fake
 * server's thread is never touched. */
#ifndef OVL_FAULTS_H
#define OVL_FAULTS_H

#include <stdbool.h>

enum t_fault {
  T_FAULT_ALLOC,                /* malloc & co. return NULL (ENOMEM) */
  T_FAULT_SYSCALL,              /* I/O calls fail: EIO, ENOSPC for writes */
};

/* Count calls of KIND from now on, and fail the Nth (0 is the first;
 * LONG_MAX: only count). */
void t_fault_arm (enum t_fault kind, long n);
/* Stop failing; returns how many calls were counted since arming. */
long t_fault_disarm (void);
/* The function whose call was failed since arming, or NULL. */
const char *t_fault_failed (void);
/* The return address in the caller of that function (for addr2line). */
void *t_fault_caller (void);

#endif
