/* A program that does nothing, linked with the hook's libraries (libxml2
 * and yajl): the floor of the hook's start-up cost. */
#include <config.h>

#include <libxml/xmlversion.h>
#include <yajl/yajl_version.h>

int
main (int argc, char **argv)
{
  (void) argv;
  /* Reference both libraries so --as-needed keeps them. */
  if (argc > 99) {
    xmlCheckVersion (LIBXML_VERSION);
    return yajl_version ();
  }
  return 0;
}
