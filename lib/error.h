/* The one error channel of virt-overlay.
 *
 * Library code reports an error exactly once, where it happens, with
 * ovl_error(), and returns -1 or NULL.  Only the programs (hook/, cli/)
 * print it, with ovl_error_msg().  The message is per thread so that test
 * helpers running in threads do not clobber the caller's error.
 */
#ifndef OVL_ERROR_H
#define OVL_ERROR_H

#include <stdarg.h>

void ovl_error (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
void ovl_verror (const char *fmt, va_list ap) __attribute__((format (printf, 1, 0)));
/* Prefix the current error with more context ("vda: " + old message). */
void ovl_error_prefix (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
const char *ovl_error_msg (void);
void ovl_error_clear (void);

#endif
