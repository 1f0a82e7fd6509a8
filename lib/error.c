/* Thread-local last-error buffer; see error.h. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define OVL_ERROR_MAX 1024

static __thread char errbuf[OVL_ERROR_MAX];

void
ovl_verror (const char *fmt, va_list ap)
{
  int saved = errno;
  errno = saved;                /* %m reads errno */
  vsnprintf (errbuf, sizeof errbuf, fmt, ap);
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
  /* Prefix, then as much of the old message as fits. */
  n = strlen (pre);
  memcpy (errbuf, pre, n + 1);
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
