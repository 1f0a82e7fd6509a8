/* Thread-local last-error buffer; see error.h. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define OVL_ERROR_MAX 1024

static __thread char errbuf[OVL_ERROR_MAX];

void
ovl_escape_controls (char *dst, size_t dstlen, const char *src)
{
  size_t o = 0;

  if (dstlen == 0)
    return;
  for (; *src; src++) {
    unsigned char c = (unsigned char) *src;
    char esc[5] = { (char) c, '\0' };
    size_t n;

    if (c == '\n')
      memcpy (esc, "\\n", 3);
    else if (c == '\t')
      memcpy (esc, "\\t", 3);
    else if (c == '\r')
      memcpy (esc, "\\r", 3);
    else if (c < 0x20 || c == 0x7f)
      snprintf (esc, sizeof esc, "\\x%02x", c);
    n = strlen (esc);
    if (o + n >= dstlen)
      break;
    memcpy (dst + o, esc, n);
    o += n;
  }
  dst[o] = '\0';
}

void
ovl_verror (const char *fmt, va_list ap)
{
  char raw[OVL_ERROR_MAX];
  int saved = errno;

  errno = saved;                /* %m reads errno */
  vsnprintf (raw, sizeof raw, fmt, ap);
  ovl_escape_controls (errbuf, sizeof errbuf, raw);
  errno = saved;
}

void
ovl_error (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  ovl_verror (fmt, ap);
  va_end (ap);
}

void
ovl_error_prefix (const char *fmt, ...)
{
  char old[OVL_ERROR_MAX], pre[OVL_ERROR_MAX];
  va_list ap;
  size_t n;
  int saved = errno;

  memcpy (old, errbuf, sizeof old);
  va_start (ap, fmt);
  vsnprintf (pre, sizeof pre, fmt, ap);
  va_end (ap);
  /* Prefix, then as much of the old (already escaped) message as fits. */
  ovl_escape_controls (errbuf, sizeof errbuf, pre);
  n = strlen (errbuf);
  if (n < sizeof errbuf - 1)
    snprintf (errbuf + n, sizeof errbuf - n, "%s", old);
  errno = saved;
}

const char *
ovl_error_msg (void)
{
  return errbuf[0] ? errbuf : "unknown error";
}

void
ovl_error_clear (void)
{
  errbuf[0] = '\0';
}
