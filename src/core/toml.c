/* A TOML 1.0 parser: one pass over the bytes, building a tree of nodes that
 * remember their positions and how each table came to exist (the
 * redefinition rules depend on that). This file builds the tree (tables,
 * arrays, key/value lines, headers); the lexer is toml_lex.c, numbers and
 * dates toml_scalar.c. */
#include "mcp/toml.h"
#include "mcp/util.h"
#include "toml_parser.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- errors and positions ---------- */

/* Records the first error at the current position; later ones are dropped. */
__attribute__((format(printf, 2, 3))) void toml_fail(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mcp_error_set(p->err, "%d:%d: %s", p->line, col_at(p, p->pos), msg);
}

void toml_fail_oom(parser *p)
{
    toml_fail(p, "out of memory");
}

void toml_fail_expected(parser *p, const char *what, int c)
{
    if (c < 0)
        toml_fail(p, "expected a %s, found the end of the document", what);
    else if (c == '\n' || c == '\r')
        toml_fail(p, "expected a %s, found a newline", what);
    else if (c >= 0x20 && c < 0x7f)
        toml_fail(p, "expected a %s, found '%c'", what, c);
    else
        toml_fail(p, "expected a %s, found byte 0x%02x", what, c);
}

/* ---------- nodes ---------- */

node *toml_node_new(parser *p, mcp_toml_type t, int line, int col, int depth)
{
    if (depth > TOML_MAX_DEPTH) {
        toml_fail(p, "nesting deeper than %d levels", TOML_MAX_DEPTH);
        return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n) {
        toml_fail_oom(p);
        return NULL;
    }
    n->v.type = t;
    n->v.line = line;
    n->v.col = col;
    n->depth = depth;
    return n;
}

static node *as_node(mcp_toml_value *v)
{
    return (node *)v;
}

void mcp_toml_free(mcp_toml_value *v)
{
    if (!v)
        return;
    node *n = as_node(v);
    switch (v->type) {
    case MCP_TOML_TABLE:
        for (size_t i = 0; i < v->u.table.len; i++) {
            free(v->u.table.items[i].key);
            mcp_toml_free(v->u.table.items[i].value);
        }
        free(v->u.table.items);
        break;
    case MCP_TOML_ARRAY:
        for (size_t i = 0; i < v->u.array.len; i++)
            mcp_toml_free(v->u.array.items[i]);
        free(v->u.array.items);
        break;
    case MCP_TOML_STRING:
    case MCP_TOML_DATETIME:
    case MCP_TOML_DATETIME_LOCAL:
    case MCP_TOML_DATE_LOCAL:
    case MCP_TOML_TIME_LOCAL:
        free(v->u.str.ptr);
        break;
    default:
        break;
    }
    free(n->hash);
    free(n);
}

static size_t hash_key(const char *k, size_t len)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211u;
    return h;
}

/* Rebuilds the index of a table once it is too big for a linear scan. */
static int table_reindex(node *t)
{
    size_t hcap = 64;
    while (hcap < t->v.u.table.len * 2)
        hcap *= 2;
    size_t *h = calloc(hcap, sizeof *h);
    if (!h)
        return -1;
    for (size_t i = 0; i < t->v.u.table.len; i++) {
        const mcp_toml_kv *kv = &t->v.u.table.items[i];
        size_t slot = hash_key(kv->key, kv->key_len) & (hcap - 1);
        while (h[slot])
            slot = (slot + 1) & (hcap - 1);
        h[slot] = i + 1;
    }
    free(t->hash);
    t->hash = h;
    t->hcap = hcap;
    return 0;
}

static mcp_toml_kv *table_lookup(const node *t, const char *key, size_t len)
{
    const mcp_toml_value *v = &t->v;
    if (t->hash) {
        size_t slot = hash_key(key, len) & (t->hcap - 1);
        for (; t->hash[slot]; slot = (slot + 1) & (t->hcap - 1)) {
            mcp_toml_kv *kv = &v->u.table.items[t->hash[slot] - 1];
            if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
                return kv;
        }
        return NULL;
    }
    for (size_t i = 0; i < v->u.table.len; i++) {
        mcp_toml_kv *kv = &v->u.table.items[i];
        if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
            return kv;
    }
    return NULL;
}

/* items (len used of *cap) with room for one more: doubled when full. NULL
 * when out of memory (reported; items then left as they were). */
static void *reserve(parser *p, void *items, size_t len, size_t *cap, size_t size)
{
    if (len < *cap)
        return items;
    size_t want = *cap ? *cap * 2 : 4;
    void *grown = realloc(items, want * size);
    if (!grown) {
        toml_fail_oom(p);
        return NULL;
    }
    *cap = want;
    return grown;
}

/* Adds key -> value to table t (the key must be absent); takes ownership of
 * value only on success. */
static int table_add(parser *p, node *t, const key_part *k, node *value)
{
    mcp_toml_value *v = &t->v;
    mcp_toml_kv *items = reserve(p, v->u.table.items, v->u.table.len, &t->cap, sizeof *items);
    if (!items)
        return -1;
    v->u.table.items = items;
    char *key = mcp_strndup(k->s, k->len);
    if (!key) {
        toml_fail_oom(p);
        return -1;
    }
    mcp_toml_kv *kv = &v->u.table.items[v->u.table.len++];
    kv->key = key;
    kv->key_len = k->len;
    kv->value = &value->v;
    kv->line = k->line;
    kv->col = k->col;
    bool grow = t->hash ? v->u.table.len * 2 > t->hcap : v->u.table.len > 16;
    if (grow || t->hash) {
        if (grow) {
            if (table_reindex(t) != 0) {
                /* Undo so that the caller still owns value. */
                v->u.table.len--;
                free(key);
                toml_fail_oom(p);
                return -1;
            }
        } else {
            size_t slot = hash_key(key, k->len) & (t->hcap - 1);
            while (t->hash[slot])
                slot = (slot + 1) & (t->hcap - 1);
            t->hash[slot] = v->u.table.len;
        }
    }
    return 0;
}

static int array_push(parser *p, node *a, node *item)
{
    mcp_toml_value *v = &a->v;
    mcp_toml_value **items = reserve(p, v->u.array.items, v->u.array.len, &a->cap, sizeof *items);
    if (!items)
        return -1;
    v->u.array.items = items;
    v->u.array.items[v->u.array.len++] = &item->v;
    return 0;
}

/* Marks an inline table and everything in it immutable. */
static void freeze(node *n)
{
    if (n->v.type == MCP_TOML_TABLE) {
        n->flags |= NODE_FROZEN;
        for (size_t i = 0; i < n->v.u.table.len; i++)
            freeze(as_node(n->v.u.table.items[i].value));
    } else if (n->v.type == MCP_TOML_ARRAY) {
        for (size_t i = 0; i < n->v.u.array.len; i++)
            freeze(as_node(n->v.u.array.items[i]));
    }
}

/* ---------- values ---------- */

/* Consumes c when it is the next byte. */
static bool eat(parser *p, int c)
{
    if (peek(p) != c)
        return false;
    p->pos++;
    return true;
}

static node *parse_value(parser *p, int depth);
static int parse_keyval(parser *p, node *table, int depth_base);

static node *parse_array(parser *p, int depth)
{
    node *a = toml_node_new(p, MCP_TOML_ARRAY, p->line, col_at(p, p->pos), depth);
    if (!a)
        return NULL;
    p->pos++; /* [ */
    for (;;) {
        toml_skip_ws_comments_newlines(p);
        if (p->failed)
            goto fail;
        if (eat(p, ']'))
            return a;
        node *item = parse_value(p, depth + 1);
        if (!item)
            goto fail;
        if (array_push(p, a, item) != 0) {
            mcp_toml_free(&item->v);
            goto fail;
        }
        toml_skip_ws_comments_newlines(p);
        if (p->failed)
            goto fail;
        if (eat(p, ']'))
            return a;
        if (!eat(p, ',')) {
            toml_fail(p, "expected ',' or ']' in an array");
            goto fail;
        }
    }
fail:
    mcp_toml_free(&a->v);
    return NULL;
}

static node *parse_inline_table(parser *p, int depth)
{
    node *t = toml_node_new(p, MCP_TOML_TABLE, p->line, col_at(p, p->pos), depth);
    if (!t)
        return NULL;
    t->flags = NODE_DEFINED;
    p->pos++; /* { */
    toml_skip_ws(p);
    bool closed = eat(p, '}');
    while (!closed) {
        if (parse_keyval(p, t, depth) != 0)
            goto fail;
        toml_skip_ws(p);
        if (eat(p, '}')) {
            closed = true;
        } else if (!eat(p, ',')) {
            toml_fail(p, "expected ',' or '}' in an inline table (which must fit on one line)");
            goto fail;
        } else {
            toml_skip_ws(p);
            if (peek(p) == '}') {
                toml_fail(p, "trailing comma in an inline table");
                goto fail;
            }
        }
    }
    freeze(t);
    return t;
fail:
    mcp_toml_free(&t->v);
    return NULL;
}

static node *parse_string_value(parser *p, int depth)
{
    int line = p->line, col = col_at(p, p->pos);
    buf b = {0};
    if (toml_parse_string(p, &b, true) != 0) {
        free(b.s);
        return NULL;
    }
    node *v = toml_node_new(p, MCP_TOML_STRING, line, col, depth);
    if (!v) {
        free(b.s);
        return NULL;
    }
    v->v.u.str.ptr = b.s;
    v->v.u.str.len = b.len;
    return v;
}

static node *parse_bool(parser *p, int depth)
{
    int line = p->line, col = col_at(p, p->pos);
    bool value;
    if (lookahead(p, "true")) {
        value = true;
        p->pos += 4;
    } else if (lookahead(p, "false")) {
        value = false;
        p->pos += 5;
    } else {
        return toml_parse_scalar_token(p, depth); /* reports what it found */
    }
    if (is_token_char(peek(p))) {
        p->pos -= value ? 4 : 5;
        toml_fail(p, "invalid value (booleans are lowercase true or false)");
        return NULL;
    }
    node *v = toml_node_new(p, MCP_TOML_BOOL, line, col, depth);
    if (v)
        v->v.u.boolean = value;
    return v;
}

/* Parses one value; depth is the nesting level it will sit at. */
static node *parse_value(parser *p, int depth)
{
    switch (peek(p)) {
    case '"':
    case '\'':
        return parse_string_value(p, depth);
    case '[':
        return parse_array(p, depth);
    case '{':
        return parse_inline_table(p, depth);
    case 't':
    case 'f':
        return parse_bool(p, depth);
    default:
        return toml_parse_scalar_token(p, depth);
    }
}

/* ---------- key/value pairs and headers ---------- */

static const char *type_desc(const mcp_toml_value *v)
{
    return mcp_toml_type_name(v->type);
}

/* Sets the parser position to a key part so that an error points at it. */
static void point_at(parser *p, const key_part *kp)
{
    p->line = kp->line;
    p->line_start = 0;
    p->pos = (size_t)kp->col - 1;
}

/* A new table (or array) under key k of parent, with flags; NULL on failure. */
static node *add_child(parser *p, node *parent, const key_part *k, mcp_toml_type type, int line,
                       int col, unsigned flags)
{
    node *child = toml_node_new(p, type, line, col, parent->depth + 1);
    if (!child)
        return NULL;
    child->flags = flags;
    if (table_add(p, parent, k, child) != 0) {
        free(child);
        return NULL;
    }
    return child;
}

/* Walks the dotted parts of a key (all but the last) from table t,
 * creating dotted tables; existing ones must themselves be dotted tables. */
static node *descend_dotted(parser *p, node *t, const key_path *k, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        const key_part *kp = &k->parts[i];
        mcp_toml_kv *kv = table_lookup(t, kp->s, kp->len);
        if (!kv) {
            t = add_child(p, t, kp, MCP_TOML_TABLE, kp->line, kp->col,
                          NODE_DOTTED | (t->flags & NODE_FROZEN));
            if (!t)
                return NULL;
            continue;
        }
        node *n = as_node(kv->value);
        if (n->v.type != MCP_TOML_TABLE || !(n->flags & NODE_DOTTED) || (n->flags & NODE_FROZEN)) {
            point_at(p, kp);
            toml_fail(p, "cannot add keys to '%.*s' (a %s defined at line %d)", (int)kp->len, kp->s,
                      n->v.type == MCP_TOML_TABLE ? "table" : type_desc(&n->v), n->v.line);
            return NULL;
        }
        t = n;
    }
    return t;
}

/* Where the parser is: saved before a walk that may point errors elsewhere. */
typedef struct position {
    size_t pos, line_start;
    int line;
} position;

static position position_of(const parser *p)
{
    position at = {p->pos, p->line_start, p->line};
    return at;
}

static void position_restore(parser *p, position at)
{
    p->pos = at.pos;
    p->line_start = at.line_start;
    p->line = at.line;
}

/* key = value into table (which is the current table or an inline table). */
static int parse_keyval(parser *p, node *table, int depth_base)
{
    key_path k = {0};
    int rc = -1;
    if (toml_parse_key(p, &k) != 0)
        goto fail;
    toml_skip_ws(p);
    if (peek(p) != '=') {
        toml_fail(p, "expected '=' after a key");
        goto fail;
    }
    p->pos++;
    toml_skip_ws(p);
    /* The value sits below the table and each dotted part. */
    node *value = parse_value(p, depth_base + (int)k.n);
    if (!value)
        goto fail;
    position saved = position_of(p);
    node *t = descend_dotted(p, table, &k, k.n - 1);
    const key_part *last = &k.parts[k.n - 1];
    if (t && table_lookup(t, last->s, last->len)) {
        point_at(p, last);
        toml_fail(p, "duplicate key '%.*s'", (int)last->len, last->s);
        t = NULL;
    }
    if (!t || table_add(p, t, last, value) != 0) {
        mcp_toml_free(&value->v);
        goto fail;
    }
    position_restore(p, saved);
    rc = 0;
fail:
    toml_key_path_free(&k);
    return rc;
}

/* Walks a header's parent parts, creating implicit tables; an array of
 * tables leads into its last element. */
static node *descend_header(parser *p, const key_path *k, int line, int col)
{
    node *t = p->root;
    for (size_t i = 0; i + 1 < k->n; i++) {
        const key_part *kp = &k->parts[i];
        mcp_toml_kv *kv = table_lookup(t, kp->s, kp->len);
        if (!kv) {
            t = add_child(p, t, kp, MCP_TOML_TABLE, line, col, NODE_IMPLICIT);
            if (!t)
                return NULL;
            continue;
        }
        node *n = as_node(kv->value);
        if (n->v.type == MCP_TOML_ARRAY && (n->flags & NODE_AOT) && n->v.u.array.len > 0)
            n = as_node(n->v.u.array.items[n->v.u.array.len - 1]);
        if (n->v.type != MCP_TOML_TABLE || (n->flags & NODE_FROZEN)) {
            point_at(p, kp);
            toml_fail(p, "'%.*s' is already a%s %s (line %d), not a table", (int)kp->len, kp->s,
                      (n->flags & NODE_FROZEN) ? "n inline" : "", type_desc(&n->v), n->v.line);
            return NULL;
        }
        t = n;
    }
    return t;
}

/* [table] or [[array of tables]] starting at '['. */
static int parse_header(parser *p)
{
    int line = p->line, col = col_at(p, p->pos);
    bool aot = peek_at(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    key_path k = {0};
    int rc = -1;
    if (toml_parse_key(p, &k) != 0)
        goto fail;
    toml_skip_ws(p);
    if (aot ? !lookahead(p, "]]") : peek(p) != ']') {
        toml_fail(p,
                  aot ? "expected ']]' to close the header" : "expected ']' to close the header");
        goto fail;
    }
    p->pos += aot ? 2 : 1;
    position saved = position_of(p);
    node *parent = descend_header(p, &k, line, col);
    if (!parent)
        goto fail;
    const key_part *last = &k.parts[k.n - 1];
    mcp_toml_kv *kv = table_lookup(parent, last->s, last->len);
    node *target = NULL;
    if (aot) {
        node *arr = kv ? as_node(kv->value) : NULL;
        if (arr && !(arr->v.type == MCP_TOML_ARRAY && (arr->flags & NODE_AOT))) {
            point_at(p, last);
            toml_fail(p, "'%.*s' is already a %s (line %d), not an array of tables", (int)last->len,
                      last->s, type_desc(&arr->v), arr->v.line);
            goto fail;
        }
        if (!arr && !(arr = add_child(p, parent, last, MCP_TOML_ARRAY, line, col, NODE_AOT)))
            goto fail;
        target = toml_node_new(p, MCP_TOML_TABLE, line, col, arr->depth + 1);
        if (!target)
            goto fail;
        target->flags = NODE_DEFINED;
        if (array_push(p, arr, target) != 0) {
            free(target);
            goto fail;
        }
    } else if (kv) {
        target = as_node(kv->value);
        if (target->v.type != MCP_TOML_TABLE || !(target->flags & NODE_IMPLICIT) ||
            (target->flags & (NODE_DEFINED | NODE_DOTTED | NODE_FROZEN))) {
            point_at(p, last);
            toml_fail(p, "'%.*s' is already defined (line %d)", (int)last->len, last->s,
                      target->v.line);
            goto fail;
        }
        target->flags = (target->flags & ~(unsigned)NODE_IMPLICIT) | NODE_DEFINED;
        target->v.line = line;
        target->v.col = col;
    } else if (!(target = add_child(p, parent, last, MCP_TOML_TABLE, line, col, NODE_DEFINED))) {
        goto fail;
    }
    p->cur = target;
    position_restore(p, saved);
    rc = 0;
fail:
    toml_key_path_free(&k);
    return rc;
}

static int parse_document(parser *p)
{
    if (lookahead(p, "\xef\xbb\xbf"))
        p->pos += 3; /* BOM */
    while (!p->failed) {
        toml_skip_ws(p);
        toml_skip_comment(p);
        if (p->failed)
            break;
        if (at_end(p))
            return 0;
        if (toml_eat_newline(p))
            continue;
        if (peek(p) == '[') {
            if (parse_header(p) != 0)
                break;
        } else if (parse_keyval(p, p->cur, p->cur->depth) != 0) {
            break;
        }
        toml_expect_line_end(p);
    }
    return -1;
}

mcp_toml_value *mcp_toml_parse(const char *text, size_t len, mcp_error *err)
{
    parser p = {.s = text ? text : "", .len = text ? len : 0, .line = 1, .err = err};
    if (!toml_validate_utf8(&p))
        return NULL;
    p.root = toml_node_new(&p, MCP_TOML_TABLE, 1, 1, 0);
    if (!p.root)
        return NULL;
    p.root->flags = NODE_DEFINED;
    p.cur = p.root;
    if (parse_document(&p) != 0) {
        mcp_toml_free(&p.root->v);
        return NULL;
    }
    return &p.root->v;
}

const mcp_toml_kv *mcp_toml_find(const mcp_toml_value *table, const char *key)
{
    if (!table || table->type != MCP_TOML_TABLE || !key)
        return NULL;
    return table_lookup((const node *)table, key, strlen(key));
}

const char *mcp_toml_type_name(mcp_toml_type t)
{
    switch (t) {
    case MCP_TOML_TABLE:
        return "table";
    case MCP_TOML_ARRAY:
        return "array";
    case MCP_TOML_STRING:
        return "string";
    case MCP_TOML_INTEGER:
        return "integer";
    case MCP_TOML_FLOAT:
        return "float";
    case MCP_TOML_BOOL:
        return "bool";
    case MCP_TOML_DATETIME:
        return "datetime";
    case MCP_TOML_DATETIME_LOCAL:
        return "datetime-local";
    case MCP_TOML_DATE_LOCAL:
        return "date-local";
    case MCP_TOML_TIME_LOCAL:
        return "time-local";
    }
    return "unknown";
}
