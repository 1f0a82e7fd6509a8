/* JSON values and the yajl-based stream parser; see json.h. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "util.h"

/* The one callback error that is not about the input. */
static const char OUT_OF_MEMORY[] = "out of memory";

void
ovl_json_free (struct ovl_json *v)
{
  size_t i;

  if (!v)
    return;
  switch (v->type) {
  case OVL_JSON_STRING:
    free (v->u.s);
    break;
  case OVL_JSON_ARRAY:
  case OVL_JSON_OBJECT:
    for (i = 0; i < v->u.c.n; i++) {
      ovl_json_free (v->u.c.items[i]);
      if (v->u.c.keys)
        free (v->u.c.keys[i]);
    }
    free (v->u.c.items);
    free (v->u.c.keys);
    break;
  default:
    break;
  }
  free (v);
}

void
ovl_json_cleanup (struct ovl_json **v)
{
  ovl_json_free (*v);
}

const struct ovl_json *
ovl_json_get (const struct ovl_json *obj, const char *key)
{
  size_t i;

  if (!obj || obj->type != OVL_JSON_OBJECT)
    return NULL;
  for (i = 0; i < obj->u.c.n; i++)
    if (strcmp (obj->u.c.keys[i], key) == 0)
      return obj->u.c.items[i];
  return NULL;
}

const struct ovl_json *
ovl_json_path (const struct ovl_json *v, const char *path)
{
  char key[128];
  const char *dot;

  while (v && *path) {
    size_t n;
    dot = strchr (path, '.');
    n = dot ? (size_t) (dot - path) : strlen (path);
    if (n >= sizeof key)
      return NULL;
    memcpy (key, path, n);
    key[n] = '\0';
    v = ovl_json_get (v, key);
    path += n + (dot ? 1 : 0);
  }
  return v;
}

const char *
ovl_json_get_string (const struct ovl_json *obj, const char *path)
{
  const struct ovl_json *v = ovl_json_path (obj, path);
  return v && v->type == OVL_JSON_STRING ? v->u.s : NULL;
}

int
ovl_json_get_int (const struct ovl_json *obj, const char *path, long long *out)
{
  const struct ovl_json *v = ovl_json_path (obj, path);
  if (!v || v->type != OVL_JSON_INT || v->is_unsigned)
    return -1;
  *out = v->u.i;
  return 0;
}

int
ovl_json_get_u64 (const struct ovl_json *obj, const char *path, uint64_t *out)
{
  const struct ovl_json *v = ovl_json_path (obj, path);
  if (!v || v->type != OVL_JSON_INT || (!v->is_unsigned && v->u.i < 0))
    return -1;
  *out = v->is_unsigned ? v->u.u : (uint64_t) v->u.i;
  return 0;
}

size_t
ovl_json_array_len (const struct ovl_json *arr)
{
  return arr && arr->type == OVL_JSON_ARRAY ? arr->u.c.n : 0;
}

const struct ovl_json *
ovl_json_array_at (const struct ovl_json *arr, size_t i)
{
  return i < ovl_json_array_len (arr) ? arr->u.c.items[i] : NULL;
}

/* Append V to container C, under KEY for an object (KEY is taken).
 * -1 out of memory (nothing taken). */
static int
container_add (struct ovl_json *c, char *key, struct ovl_json *v)
{
  /* Keys and items grow together: the keys first, to the items' size. */
  size_t kcap = c->u.c.cap, icap = c->u.c.cap;

  if (c->type == OVL_JSON_OBJECT && OVL_RESERVE (c->u.c.keys, kcap, c->u.c.n + 1, 4) == -1)
    return -1;
  if (OVL_RESERVE (c->u.c.items, icap, c->u.c.n + 1, 4) == -1)
    return -1;
  c->u.c.cap = icap;
  if (c->type == OVL_JSON_OBJECT)
    c->u.c.keys[c->u.c.n] = key;
  c->u.c.items[c->u.c.n++] = v;
  return 0;
}

static struct ovl_json *
new_value (enum ovl_json_type type)
{
  struct ovl_json *v = calloc (1, sizeof *v);
  if (v)
    v->type = type;
  return v;
}

/* Whether S is well-formed UTF-8 (no overlong forms, no surrogates). */
bool
ovl_utf8_valid (const char *s)
{
  const unsigned char *p = (const unsigned char *) s;

  while (*p) {
    unsigned c = *p, n, min, i;
    if (c < 0x80) { p++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { n = 1; min = 0x80; c &= 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; min = 0x800; c &= 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; min = 0x10000; c &= 0x07; }
    else return false;
    for (i = 1; i <= n; i++) {
      if ((p[i] & 0xc0) != 0x80)
        return false;
      c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
      return false;
    p += n + 1;
  }
  return true;
}

/* One member of ovl_json_object_build: the value for TYPE from AP, or
 * NULL (error set).  *SKIP: an "S:" member whose string is NULL. */
static struct ovl_json *
build_member (const char *spec, va_list *ap, bool *skip)
{
  struct ovl_json *v = NULL, *child;
  const char *str;
  char type = spec[0];

  *skip = false;
  switch (type) {
  case 's':
  case 'S':
    str = va_arg (*ap, const char *);
    if (!str) {
      *skip = type == 'S';
      if (type == 's')
        ovl_error ("JSON member '%s': no string", spec + 2);
      return NULL;
    }
    if (!ovl_utf8_valid (str)) {
      ovl_error ("JSON member '%s': not valid UTF-8", spec + 2);
      return NULL;
    }
    if ((v = new_value (OVL_JSON_STRING)) && !(v->u.s = strdup (str))) {
      free (v);
      v = NULL;
    }
    break;
  case 'u':
    if ((v = new_value (OVL_JSON_INT))) {
      v->u.u = va_arg (*ap, uint64_t);
      v->is_unsigned = v->u.u > INT64_MAX;
      if (!v->is_unsigned)
        v->u.i = (long long) v->u.u;
    }
    else
      (void) va_arg (*ap, uint64_t);
    break;
  case 'b':
    if ((v = new_value (OVL_JSON_BOOL)))
      v->u.b = va_arg (*ap, int) != 0;
    else
      (void) va_arg (*ap, int);
    break;
  case 'o':
    child = va_arg (*ap, struct ovl_json *);
    if (!child)                 /* its own error is set already */
      return NULL;
    return child;
  default:
    abort ();                   /* checked by the caller */
  }
  if (!v)
    ovl_error ("out of memory");
  return v;
}

struct ovl_json *
ovl_json_object_build (const char *spec, ...)
{
  struct ovl_json *obj = new_value (OVL_JSON_OBJECT);
  bool failed = !obj;
  va_list ap;

  if (!obj)
    ovl_error ("out of memory");
  va_start (ap, spec);
  for (; spec; spec = va_arg (ap, const char *)) {
    struct ovl_json *v;
    char *key = NULL;
    bool skip;

    if (strlen (spec) < 3 || spec[1] != ':' || !strchr ("sSubo", spec[0])) {
      ovl_error ("JSON member '%s': expected TYPE:NAME, TYPE one of s S u b o", spec);
      failed = true;
      break;                    /* the rest cannot be read safely */
    }
    v = build_member (spec, &ap, &skip);
    if (skip)
      continue;
    /* After a failure, keep reading: children passed by "o:" are ours. */
    if (!v) {
      failed = true;
      continue;
    }
    if (failed) {
      ovl_json_free (v);
      continue;
    }
    if (!(key = strdup (spec + 2)) || container_add (obj, key, v) == -1) {
      ovl_error ("out of memory");
      failed = true;
      free (key);
      ovl_json_free (v);
    }
  }
  va_end (ap);
  if (failed) {
    ovl_json_free (obj);
    return NULL;
  }
  return obj;
}

int
ovl_json_append_string (struct ovl_buf *b, const char *s)
{
  const unsigned char *p;

  if (ovl_buf_append (b, "\"", 1) == -1)
    return -1;
  for (p = (const unsigned char *) s; *p; p++) {
    int r;
    if (*p == '"' || *p == '\\')
      r = ovl_buf_printf (b, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      r = ovl_buf_printf (b, "\\u%04x", *p);
    else
      r = ovl_buf_append (b, p, 1);
    if (r == -1)
      return -1;
  }
  return ovl_buf_append (b, "\"", 1);
}

/* All the digits of D, and a double still when read back: "%.17g"
 * alone prints 2.0 as 2 and -0.0 as -0, which read back as integers. */
static int
double_to_string (struct ovl_buf *b, double d)
{
  char s[64];

  snprintf (s, sizeof s, "%.17g", d);
  return ovl_buf_printf (b, "%s%s", s,
                         strspn (s, "-0123456789") == strlen (s) ? ".0" : "");
}

static int
to_string (struct ovl_buf *b, const struct ovl_json *v)
{
  size_t i;

  switch (v->type) {
  case OVL_JSON_NULL: return ovl_buf_printf (b, "null");
  case OVL_JSON_BOOL: return ovl_buf_printf (b, v->u.b ? "true" : "false");
  case OVL_JSON_INT:
    if (v->is_unsigned)
      return ovl_buf_printf (b, "%" PRIu64, v->u.u);
    return ovl_buf_printf (b, "%lld", v->u.i);
  case OVL_JSON_DOUBLE: return double_to_string (b, v->u.d);
  case OVL_JSON_STRING: return ovl_json_append_string (b, v->u.s);
  case OVL_JSON_ARRAY:
  case OVL_JSON_OBJECT:
    if (ovl_buf_append (b, v->type == OVL_JSON_ARRAY ? "[" : "{", 1) == -1)
      return -1;
    for (i = 0; i < v->u.c.n; i++) {
      if (i && ovl_buf_append (b, ",", 1) == -1)
        return -1;
      if (v->type == OVL_JSON_OBJECT &&
          (ovl_json_append_string (b, v->u.c.keys[i]) == -1 ||
           ovl_buf_append (b, ":", 1) == -1))
        return -1;
      if (to_string (b, v->u.c.items[i]) == -1)
        return -1;
    }
    return ovl_buf_append (b, v->type == OVL_JSON_ARRAY ? "]" : "}", 1);
  }
  return -1;
}

char *
ovl_json_to_string (const struct ovl_json *v)
{
  struct ovl_buf b = OVL_BUF_INIT;
  if (to_string (&b, v) == -1) {
    ovl_buf_reset (&b);
    return NULL;
  }
  return ovl_buf_steal (&b);
}

/* ---- the stream parser ---- */

/* No message closed in the piece being parsed. */
#define NOT_CLOSED SIZE_MAX

struct ovl_json_parser {
  yajl_handle h;
  char *label;                  /* names the input in errors */
  size_t max_bytes;
  unsigned max_depth;
  size_t msg_bytes;             /* bytes fed since the last message closed */
  size_t queued_bytes;          /* input bytes of the messages in done[] */
  size_t closed_at;             /* offset in the piece where one last closed */
  bool pending;                 /* not only whitespace since the last close */
  bool failed;
  const char *cb_error;         /* set by a callback that cancels the parse */

  /* Containers open in the current message; stack[0] is the root. */
  struct ovl_json **stack;
  unsigned depth;
  char *pending_key;            /* key waiting for its value */

  /* Complete messages, oldest first, with the input bytes each took. */
  struct ovl_json **done;
  size_t *done_bytes;
  size_t ndone, done_cap, done_head;
};

static void
parser_drop_partial (struct ovl_json_parser *p)
{
  if (p->depth > 0)
    ovl_json_free (p->stack[0]);
  p->depth = 0;
  free (p->pending_key);
  p->pending_key = NULL;
}

static int
push_done (struct ovl_json_parser *p, struct ovl_json *v, size_t bytes)
{
  if (p->done_head > 0 && p->done_head == p->ndone) {
    p->ndone = p->done_head = 0;
  }
  size_t bcap = p->done_cap, dcap = p->done_cap;

  if (OVL_RESERVE (p->done_bytes, bcap, p->ndone + 1, 8) == -1 ||
      OVL_RESERVE (p->done, dcap, p->ndone + 1, 8) == -1)
    return -1;
  p->done_cap = dcap;
  p->done_bytes[p->ndone] = bytes;
  p->done[p->ndone++] = v;
  p->queued_bytes += bytes;
  return 0;
}

/* Attach a new value to the open container, or make it the message. */
static int
add_value (struct ovl_json_parser *p, struct ovl_json *v)
{
  struct ovl_json *parent;

  if (!v) {
    p->cb_error = OUT_OF_MEMORY;
    return 0;
  }
  if (p->depth == 0) {
    /* A top-level scalar: QMP only ever sends objects. */
    if (v->type != OVL_JSON_OBJECT && v->type != OVL_JSON_ARRAY) {
      ovl_json_free (v);
      p->cb_error = "top-level value is not an object";
      return 0;
    }
  }
  else {
    parent = p->stack[p->depth - 1];
    if (container_add (parent, p->pending_key, v) == -1)
      goto oom;
    p->pending_key = NULL;
  }

  if (v->type == OVL_JSON_OBJECT || v->type == OVL_JSON_ARRAY) {
    if (p->depth >= p->max_depth) {
      if (p->depth == 0)
        ovl_json_free (v);
      p->cb_error = "nesting too deep";
      return 0;
    }
    p->stack[p->depth++] = v;
  }
  return 1;

 oom:
  ovl_json_free (v);
  p->cb_error = OUT_OF_MEMORY;
  return 0;
}

static int
cb_null (void *ctx)
{
  return add_value (ctx, new_value (OVL_JSON_NULL));
}

static int
cb_boolean (void *ctx, int b)
{
  struct ovl_json *v = new_value (OVL_JSON_BOOL);
  if (v) v->u.b = b;
  return add_value (ctx, v);
}

/* TEXT (NUL-terminated, already checked by yajl's lexer) as an exact
 * integer if it has no fraction or exponent, else as a double. */
static struct ovl_json *
number_value (struct ovl_json_parser *p, const char *text)
{
  bool integer = !strpbrk (text, ".eE");
  struct ovl_json *v = new_value (integer ? OVL_JSON_INT : OVL_JSON_DOUBLE);

  if (!v) {
    p->cb_error = OUT_OF_MEMORY;
    return NULL;
  }
  errno = 0;
  if (!integer)
    v->u.d = strtod (text, NULL);
  else if (text[0] == '-')
    v->u.i = strtoll (text, NULL, 10);
  else {
    v->u.u = strtoull (text, NULL, 10);
    if (v->u.u <= INT64_MAX)
      v->u.i = (long long) v->u.u;
    else
      v->is_unsigned = true;
  }
  if (errno == ERANGE && (integer || isinf (v->u.d))) {
    p->cb_error = integer ? "integer out of range" : "number out of range";
    free (v);
    return NULL;
  }
  return v;
}

static int
cb_number (void *ctx, const char *s, size_t len)
{
  struct ovl_json_parser *p = ctx;
  char small[32];
  CLEANUP_FREE char *big = NULL;
  char *text = small;
  struct ovl_json *v;

  /* yajl hands the raw text, not NUL-terminated. */
  if (len >= sizeof small && !(text = big = malloc (len + 1))) {
    p->cb_error = OUT_OF_MEMORY;
    return 0;
  }
  memcpy (text, s, len);
  text[len] = '\0';
  if (!(v = number_value (p, text)))
    return 0;
  return add_value (p, v);
}

static int
cb_string (void *ctx, const unsigned char *s, size_t len)
{
  struct ovl_json_parser *p = ctx;
  struct ovl_json *v;

  if (memchr (s, '\0', len)) {
    p->cb_error = "string contains a NUL character";
    return 0;
  }
  v = new_value (OVL_JSON_STRING);
  if (v && !(v->u.s = strndup ((const char *) s, len))) {
    free (v);
    v = NULL;
  }
  return add_value (p, v);
}

static int
cb_start_map (void *ctx)
{
  return add_value (ctx, new_value (OVL_JSON_OBJECT));
}

static int
cb_map_key (void *ctx, const unsigned char *k, size_t len)
{
  struct ovl_json_parser *p = ctx;

  if (memchr (k, '\0', len)) {
    p->cb_error = "key contains a NUL character";
    return 0;
  }
  free (p->pending_key);
  p->pending_key = strndup ((const char *) k, len);
  if (!p->pending_key) {
    p->cb_error = OUT_OF_MEMORY;
    return 0;
  }
  return 1;
}

static int
cb_end_container (void *ctx)
{
  struct ovl_json_parser *p = ctx;

  p->depth--;
  if (p->depth == 0) {
    /* Where in the piece being parsed the message closed: what it took
     * is what came before, the rest belongs to the next one. */
    size_t at = yajl_get_bytes_consumed (p->h);
    size_t before = p->closed_at == NOT_CLOSED ? p->msg_bytes : 0;
    size_t from = p->closed_at == NOT_CLOSED ? 0 : p->closed_at;

    if (push_done (p, p->stack[0], before + at - from) == -1) {
      ovl_json_free (p->stack[0]);
      p->cb_error = OUT_OF_MEMORY;
      return 0;
    }
    p->closed_at = at;
  }
  return 1;
}

static int
cb_start_array (void *ctx)
{
  return add_value (ctx, new_value (OVL_JSON_ARRAY));
}

static const yajl_callbacks callbacks = {
  .yajl_null = cb_null,
  .yajl_boolean = cb_boolean,
  .yajl_number = cb_number,
  .yajl_string = cb_string,
  .yajl_start_map = cb_start_map,
  .yajl_map_key = cb_map_key,
  .yajl_end_map = cb_end_container,
  .yajl_start_array = cb_start_array,
  .yajl_end_array = cb_end_container,
};

struct ovl_json_parser *
ovl_json_parser_new (size_t max_bytes, unsigned max_depth)
{
  struct ovl_json_parser *p = ovl_calloc (1, sizeof *p);

  if (!p)
    return NULL;
  p->max_bytes = max_bytes ? max_bytes : OVL_JSON_DEFAULT_MAX_BYTES;
  p->max_depth = max_depth ? max_depth : OVL_JSON_DEFAULT_MAX_DEPTH;
  p->closed_at = NOT_CLOSED;
  p->stack = calloc (p->max_depth, sizeof *p->stack);
  p->label = strdup ("QMP");
  p->h = yajl_alloc (&callbacks, NULL, p);
  if (!p->stack || !p->label || !p->h) {
    ovl_error ("out of memory");
    ovl_json_parser_free (p);
    return NULL;
  }
  /* A QMP stream is a sequence of values. */
  yajl_config (p->h, yajl_allow_multiple_values, 1);
  return p;
}

void
ovl_json_parser_free (struct ovl_json_parser *p)
{
  size_t i;

  if (!p)
    return;
  parser_drop_partial (p);
  for (i = p->done_head; i < p->ndone; i++)
    ovl_json_free (p->done[i]);
  free (p->done);
  free (p->done_bytes);
  free (p->stack);
  free (p->label);
  if (p->h)
    yajl_free (p->h);
  free (p);
}

int
ovl_json_parser_set_label (struct ovl_json_parser *p, const char *label)
{
  char *l = ovl_strdup (label);

  if (!l)
    return -1;
  free (p->label);
  p->label = l;
  return 0;
}

static int
parser_fail (struct ovl_json_parser *p)
{
  if (p->cb_error && strcmp (p->cb_error, OUT_OF_MEMORY) == 0)
    ovl_error ("%s: %s", p->label, OUT_OF_MEMORY);
  else if (p->cb_error)
    ovl_error ("%s: bad JSON: %s", p->label, p->cb_error);
  else {
    unsigned char *msg = yajl_get_error (p->h, 0, NULL, 0);
    char *nl;
    if (msg && (nl = strchr ((char *) msg, '\n')))
      *nl = '\0';
    ovl_error ("%s: malformed JSON: %s", p->label, msg ? (char *) msg : "parse error");
    if (msg)
      yajl_free_error (p->h, msg);
  }
  parser_drop_partial (p);
  p->failed = true;
  return -1;
}

static bool
all_blank (const unsigned char *d, size_t len)
{
  size_t i;
  for (i = 0; i < len; i++)
    if (!strchr (" \t\n\r\v\f", d[i]) || d[i] == '\0')
      return false;
  return true;
}

/* Parse one piece that cannot take the input past the cap by more than
 * one byte, then account for it. */
static int
feed_piece (struct ovl_json_parser *p, const unsigned char *d, size_t n)
{
  p->closed_at = NOT_CLOSED;
  if (yajl_parse (p->h, d, n) != yajl_status_ok)
    return parser_fail (p);
  if (p->closed_at == NOT_CLOSED) {
    p->msg_bytes += n;
    p->pending = p->pending || !all_blank (d, n);
  }
  else {
    p->msg_bytes = n - p->closed_at;
    p->pending = !all_blank (d + p->closed_at, n - p->closed_at);
  }
  p->closed_at = NOT_CLOSED;
  if (p->queued_bytes > p->max_bytes || p->msg_bytes > p->max_bytes - p->queued_bytes) {
    p->cb_error = p->queued_bytes ? "too much input unread" : "message too large";
    return parser_fail (p);
  }
  return 0;
}

int
ovl_json_parser_feed (struct ovl_json_parser *p, const void *data, size_t len)
{
  const unsigned char *d = data;

  if (p->failed) {
    ovl_error ("%s: parser already failed", p->label);
    return -1;
  }
  /* yajl re-scans a partial token on every call and keeps it in memory:
   * never give it more than one byte beyond the cap at a time, so that
   * the cap is checked as the bytes are consumed. */
  while (len > 0) {
    size_t room = p->max_bytes - p->queued_bytes - p->msg_bytes;
    size_t n = len <= room ? len : room + 1;

    if (feed_piece (p, d, n) == -1)
      return -1;
    d += n;
    len -= n;
  }
  return 0;
}

int
ovl_json_parser_finish (struct ovl_json_parser *p)
{
  if (p->failed)
    return -1;
  if (p->depth > 0) {
    parser_drop_partial (p);
    p->failed = true;
    ovl_error ("%s: input ended in the middle of a message", p->label);
    return -1;
  }
  /* Nothing but whitespace after the last message (or no input at
   * all, which yajl would call a premature end). */
  if (!p->pending)
    return 0;
  /* A top-level number only ends here, and junk is only seen here. */
  p->closed_at = NOT_CLOSED;
  if (yajl_complete_parse (p->h) != yajl_status_ok)
    return parser_fail (p);
  /* yajl lets an unterminated string after a complete value pass. */
  parser_drop_partial (p);
  p->failed = true;
  ovl_error ("%s: input ended in the middle of a value", p->label);
  return -1;
}

struct ovl_json *
ovl_json_parser_next (struct ovl_json_parser *p)
{
  if (p->done_head >= p->ndone)
    return NULL;
  p->queued_bytes -= p->done_bytes[p->done_head];
  return p->done[p->done_head++];
}

bool
ovl_json_parser_in_message (const struct ovl_json_parser *p)
{
  return p->depth > 0;
}
