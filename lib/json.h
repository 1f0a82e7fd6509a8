/* JSON values and a bounded stream parser for QMP.
 *
 * This is the only module that sees yajl.  Bytes are fed as they arrive,
 * in any chunking; every time a top-level value closes, a complete message
 * is queued and can be taken with ovl_json_parser_next().  The parser caps
 * the size of one message and the nesting depth: QMP input comes from a
 * daemon we trust more than the domain XML, but a wedged or hostile peer
 * must not make the hook allocate without limit.  The ledger is read with
 * the same parser.
 *
 * The byte cap counts every byte fed since the last message closed
 * (whitespace and partial top-level tokens included) plus the messages
 * queued and not yet taken, and is checked as yajl consumes the input, so
 * one huge feed is refused about max_bytes in, and the parser never holds
 * more than about max_bytes of input.
 *
 * Integers are read exactly over [INT64_MIN, UINT64_MAX] (QEMU prints
 * unsigned 64-bit values, e.g. device addresses); other numbers are
 * doubles.  Anything out of range is an error, never a rounded value.
 */
#ifndef OVL_JSON_H
#define OVL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ovl_json_type {
  OVL_JSON_NULL,
  OVL_JSON_BOOL,
  OVL_JSON_INT,
  OVL_JSON_DOUBLE,
  OVL_JSON_STRING,
  OVL_JSON_ARRAY,
  OVL_JSON_OBJECT,
};

struct ovl_json {
  enum ovl_json_type type;
  /* An OVL_JSON_INT above INT64_MAX: its value is in u.u, not u.i.  Use
   * ovl_json_get_int / ovl_json_get_u64 rather than reading u directly. */
  bool is_unsigned;
  union {
    bool b;
    long long i;
    uint64_t u;
    double d;
    char *s;
    struct {
      struct ovl_json **items;
      char **keys;              /* objects only */
      size_t n, cap;
    } c;
  } u;
};

void ovl_json_free (struct ovl_json *v);
#define CLEANUP_JSON __attribute__((cleanup (ovl_json_cleanup)))
void ovl_json_cleanup (struct ovl_json **v);

/* Lookups: NULL when absent or of another type. */
const struct ovl_json *ovl_json_get (const struct ovl_json *obj, const char *key);
/* Dotted path of object keys: "data.status". */
const struct ovl_json *ovl_json_path (const struct ovl_json *v, const char *path);
const char *ovl_json_get_string (const struct ovl_json *obj, const char *path);
/* -1 when absent, not an integer, or out of the range of the result. */
int ovl_json_get_int (const struct ovl_json *obj, const char *path, long long *out);
int ovl_json_get_u64 (const struct ovl_json *obj, const char *path, uint64_t *out);
size_t ovl_json_array_len (const struct ovl_json *arr);
const struct ovl_json *ovl_json_array_at (const struct ovl_json *arr, size_t i);

/* Serialise (compact) into a new string; used for diagnostics and tests. */
char *ovl_json_to_string (const struct ovl_json *v);

/* A new object built from members, in order, like libvirt's
 * virJSONValueObjectAdd: each member is a "TYPE:NAME" string followed
 * by its value, and the list ends with NULL:
 *   "s:NAME", const char *     a string (NULL is an error; it must be
 *                              UTF-8: QMP cannot carry anything else)
 *   "S:NAME", const char *     the same, left out when NULL
 *   "u:NAME", uint64_t         an unsigned integer
 *   "b:NAME", int              a boolean
 *   "o:NAME", struct ovl_json *  a value built before, taken over (NULL,
 *                              a failed build, is an error)
 * Returns the object, or NULL with the error set; every "o:" value is
 * taken either way, so builds nest without leaks. */
struct ovl_json *ovl_json_object_build (const char *spec, ...);

/* Whether S is well-formed UTF-8 (no overlong forms, no surrogates). */
bool ovl_utf8_valid (const char *s);

struct ovl_buf;
/* Append S to B as a JSON string literal, quotes included. */
int ovl_json_append_string (struct ovl_buf *b, const char *s);

/* Stream parser. */
struct ovl_json_parser;

#define OVL_JSON_DEFAULT_MAX_BYTES (1024 * 1024)
#define OVL_JSON_DEFAULT_MAX_DEPTH 64

struct ovl_json_parser *ovl_json_parser_new (size_t max_bytes, unsigned max_depth);
void ovl_json_parser_free (struct ovl_json_parser *p);
/* What errors name as the input ("QMP" unless set); LABEL is copied. */
int ovl_json_parser_set_label (struct ovl_json_parser *p, const char *label);
/* Feed bytes; completed messages are queued.  -1 on malformed input or a
 * broken limit; after that the parser refuses further input. */
int ovl_json_parser_feed (struct ovl_json_parser *p, const void *data, size_t len);
/* End of input: -1 if a message was left incomplete, or anything other
 * than whitespace follows the last complete message. */
int ovl_json_parser_finish (struct ovl_json_parser *p);
/* Take the oldest complete message (caller frees), or NULL. */
struct ovl_json *ovl_json_parser_next (struct ovl_json_parser *p);
/* True while a message has started but not closed. */
bool ovl_json_parser_in_message (const struct ovl_json_parser *p);

#endif
