/* qmp-cmd: send one QMP command to a socket and print its return value
 * as JSON (for shell tests and benchmarks).
 *
 *   qmp-cmd SOCKET COMMAND [ARGUMENTS-JSON]
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "qmp.h"
#include "util.h"

int
main (int argc, char **argv)
{
  struct ovl_qmp *q;
  struct ovl_json *r;
  char *s;

  if (argc < 3) {
    fprintf (stderr, "usage: qmp-cmd SOCKET COMMAND [ARGUMENTS-JSON]\n");
    return 2;
  }
  if (!(q = ovl_qmp_connect (argv[1], ovl_now_ms () + 10000)) ||
      !(r = ovl_qmp_command (q, argv[2], argc > 3 ? argv[3] : NULL, ovl_now_ms () + 10000))) {
    fprintf (stderr, "qmp-cmd: %s\n", ovl_error_msg ());
    ovl_qmp_close (q);
    return 1;
  }
  s = ovl_json_to_string (r);
  printf ("%s\n", s);
  free (s);
  ovl_json_free (r);
  ovl_qmp_close (q);
  return 0;
}
