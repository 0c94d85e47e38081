/* Struct -> Lua table by a table of fields (mcp_field in internal.h): the
 * pushers of the bindings say which members go under which key, and what
 * "unset" looks like, instead of one mcp_set_* line per member. */

#include "internal.h"

/* Whether the member at p is one that MCP_F_OMIT_ZERO leaves out. */
static bool is_zero(mcp_field_kind kind, const void *p)
{
    switch (kind) {
    case MCP_F_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case MCP_F_INT:
        return *(const int *)p == 0;
    case MCP_F_INT64:
        return *(const int64_t *)p == 0;
    case MCP_F_BOOL:
        return !*(const bool *)p;
    case MCP_F_NUMBER:
        return *(const double *)p == 0;
    case MCP_F_STRV:
        return ((const mcp_strv *)p)->n == 0;
    }
    return false;
}

static void push_field(lua_State *L, const mcp_field *f, const char *obj)
{
    const void *p = obj + f->offset;
    if (f->has_offset && !*(const bool *)(obj + f->has_offset - 1))
        return;
    if ((f->flags & MCP_F_OMIT_ZERO) && is_zero(f->kind, p))
        return;
    switch (f->kind) {
    case MCP_F_STRING: {
        const char *s = *(char *const *)p;
        mcp_set_string(L, f->key, !s && (f->flags & MCP_F_NULL_EMPTY) ? "" : s);
        break;
    }
    case MCP_F_INT:
        mcp_set_int(L, f->key, *(const int *)p);
        break;
    case MCP_F_INT64: {
        int64_t v = *(const int64_t *)p;
        if (f->flags & MCP_F_MS)
            mcp_set_number(L, f->key, (lua_Number)v / 1000.0);
        else
            mcp_set_int(L, f->key, v);
        break;
    }
    case MCP_F_BOOL:
        mcp_set_bool(L, f->key, *(const bool *)p);
        break;
    case MCP_F_NUMBER:
        mcp_set_number(L, f->key, *(const double *)p);
        break;
    case MCP_F_STRV:
        mcp_push_strv(L, p);
        lua_setfield(L, -2, f->key);
        break;
    }
}

void mcp_set_fields(lua_State *L, const void *obj, const mcp_field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        push_field(L, &fields[i], obj);
}

void mcp_push_fields(lua_State *L, const void *obj, const mcp_field *fields, size_t n)
{
    lua_createtable(L, 0, (int)n);
    mcp_set_fields(L, obj, fields, n);
}

void mcp_set_fields_table(lua_State *L, const char *key, const void *obj, const mcp_field *fields,
                          size_t n)
{
    mcp_push_fields(L, obj, fields, n);
    lua_setfield(L, -2, key);
}

void mcp_push_fields_array(lua_State *L, const void *items, size_t n, size_t size,
                           const mcp_field *fields, size_t nf)
{
    const char *p = items;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        mcp_push_fields(L, p + i * size, fields, nf);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}
