/* JSON values and the yajl-based stream parser; see json.h. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "error.h"
#include "json.h"
#include "util.h"

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
  if (!v || v->type != OVL_JSON_INT)
    return -1;
  *out = v->u.i;
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
  case OVL_JSON_INT: return ovl_buf_printf (b, "%lld", v->u.i);
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

struct ovl_json_parser {
  yajl_handle h;
  size_t max_bytes;
  unsigned max_depth;
  size_t msg_bytes;             /* bytes fed since the last message closed */
  bool failed;
  const char *cb_error;         /* set by a callback that cancels the parse */

  /* Containers open in the current message; stack[0] is the root. */
  struct ovl_json **stack;
  unsigned depth;
  char *pending_key;            /* key waiting for its value */

  /* Complete messages, oldest first. */
  struct ovl_json **done;
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
push_done (struct ovl_json_parser *p, struct ovl_json *v)
{
  if (p->done_head > 0 && p->done_head == p->ndone) {
    p->ndone = p->done_head = 0;
  }
  if (p->ndone == p->done_cap) {
    size_t cap = p->done_cap ? p->done_cap * 2 : 8;
    struct ovl_json **d = realloc (p->done, cap * sizeof *d);
    if (!d)
      return -1;
    p->done = d;
    p->done_cap = cap;
  }
  p->done[p->ndone++] = v;
  return 0;
}

/* Attach a new value to the open container, or make it the message. */
static int
add_value (struct ovl_json_parser *p, struct ovl_json *v)
{
  struct ovl_json *parent;

  if (!v) {
    p->cb_error = "out of memory";
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
    if (parent->u.c.n == parent->u.c.cap) {
      size_t cap = parent->u.c.cap ? parent->u.c.cap * 2 : 4;
      struct ovl_json **items = realloc (parent->u.c.items, cap * sizeof *items);
      if (!items) goto oom;
      parent->u.c.items = items;
      if (parent->type == OVL_JSON_OBJECT) {
        char **keys = realloc (parent->u.c.keys, cap * sizeof *keys);
        if (!keys) goto oom;
        parent->u.c.keys = keys;
      }
      parent->u.c.cap = cap;
    }
    if (parent->type == OVL_JSON_OBJECT) {
      parent->u.c.keys[parent->u.c.n] = p->pending_key;
      p->pending_key = NULL;
    }
    parent->u.c.items[parent->u.c.n++] = v;
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
  p->cb_error = "out of memory";
  return 0;
}

static struct ovl_json *
new_value (enum ovl_json_type t)
{
  struct ovl_json *v = calloc (1, sizeof *v);
  if (v)
    v->type = t;
  return v;
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

static int
cb_integer (void *ctx, long long i)
{
  struct ovl_json *v = new_value (OVL_JSON_INT);
  if (v) v->u.i = i;
  return add_value (ctx, v);
}

static int
cb_double (void *ctx, double d)
{
  struct ovl_json *v = new_value (OVL_JSON_DOUBLE);
  if (v) v->u.d = d;
  return add_value (ctx, v);
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
    p->cb_error = "out of memory";
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
    if (push_done (p, p->stack[0]) == -1) {
      ovl_json_free (p->stack[0]);
      p->cb_error = "out of memory";
      return 0;
    }
    p->msg_bytes = 0;
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
  .yajl_integer = cb_integer,
  .yajl_double = cb_double,
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
  p->stack = calloc (p->max_depth, sizeof *p->stack);
  p->h = yajl_alloc (&callbacks, NULL, p);
  if (!p->stack || !p->h) {
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
  free (p->stack);
  if (p->h)
    yajl_free (p->h);
  free (p);
}

static int
parser_fail (struct ovl_json_parser *p, const unsigned char *data, size_t len)
{
  if (p->cb_error)
    ovl_error ("QMP: bad JSON from peer: %s", p->cb_error);
  else {
    unsigned char *msg = yajl_get_error (p->h, 0, data, len);
    char *nl;
    if (msg && (nl = strchr ((char *) msg, '\n')))
      *nl = '\0';
    ovl_error ("QMP: malformed JSON from peer: %s", msg ? (char *) msg : "parse error");
    if (msg)
      yajl_free_error (p->h, msg);
  }
  parser_drop_partial (p);
  p->failed = true;
  return -1;
}

int
ovl_json_parser_feed (struct ovl_json_parser *p, const void *data, size_t len)
{
  yajl_status st;

  if (p->failed) {
    ovl_error ("QMP: parser already failed");
    return -1;
  }
  p->msg_bytes += len;
  st = yajl_parse (p->h, data, len);
  if (st != yajl_status_ok)
    return parser_fail (p, data, len);
  /* Only bytes of a message still open count against the cap; a chunk
   * that closed a message reset the counter in the callback. */
  if (p->depth > 0 && p->msg_bytes > p->max_bytes) {
    p->cb_error = "message too large";
    return parser_fail (p, data, len);
  }
  if (p->depth == 0)
    p->msg_bytes = 0;
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
    ovl_error ("QMP: connection closed in the middle of a message");
    return -1;
  }
  return 0;
}

struct ovl_json *
ovl_json_parser_next (struct ovl_json_parser *p)
{
  if (p->done_head >= p->ndone)
    return NULL;
  return p->done[p->done_head++];
}

bool
ovl_json_parser_in_message (const struct ovl_json_parser *p)
{
  return p->depth > 0;
}
