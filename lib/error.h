/* The one error channel of virt-overlay.
 *
 * Library code reports an error exactly once, where it happens, with
 * ovl_error(), and returns -1 or NULL.  Only the programs (hook/, cli/)
 * print it, with ovl_error_msg().  The message is per thread so that test
 * helpers running in threads do not clobber the caller's error.
 *
 * Messages carry untrusted data (paths and values from the domain XML,
 * replies of qemu-storage-daemon): control characters are stored escaped
 * (\n, \t, \r, \xNN), so that every message is one line of a log.
 */
#ifndef OVL_ERROR_H
#define OVL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* The message is formatted before it replaces the current one, so its
 * arguments may include ovl_error_msg (). */
void ovl_error (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
void ovl_verror (const char *fmt, va_list ap) __attribute__((format (printf, 1, 0)));
/* Prefix the current error with more context ("vda: " + old message). */
void ovl_error_prefix (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
const char *ovl_error_msg (void);
void ovl_error_clear (void);
/* SRC into DST (DSTLEN bytes, always terminated) with the bytes below 0x20
 * and 0x7f escaped; an escape that does not fit is dropped whole. */
void ovl_escape_controls (char *dst, size_t dstlen, const char *src);

#endif
