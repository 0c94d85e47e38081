/* Protobuf messages <-> Lua tables, driven by protobuf-c descriptors, so
 * one converter serves every message of every proto (API requests and
 * replies, mc-proxy routes). Field names are the proto's; enums are
 * integers; bytes are Lua strings; unset submessages are nil. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pbconv.h"

#define MAX_DEPTH 32

#define MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* ---- message -> table ---- */

static void push_message_depth(lua_State *L, const ProtobufCMessage *msg, int depth);

static void push_value(lua_State *L, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        lua_pushinteger(L, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        lua_pushinteger(L, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        lua_pushinteger(L, (lua_Integer) * (const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        lua_pushinteger(L, (lua_Integer) * (const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        lua_pushnumber(L, *(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        lua_pushnumber(L, *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        lua_pushboolean(L, *(const protobuf_c_boolean *)p);
        break;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        lua_pushstring(L, s ? s : "");
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        lua_pushlstring(L, (const char *)b->data, b->data ? b->len : 0);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m)
            push_message_depth(L, m, depth + 1);
        else
            lua_pushnil(L);
        break;
    }
    }
}

static void push_message_depth(lua_State *L, const ProtobufCMessage *msg, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (depth > MAX_DEPTH)
        luaL_error(L, "protobuf message nested deeper than %d", MAX_DEPTH);
    luaL_checkstack(L, 4, "protobuf message");
    lua_createtable(L, 0, (int)d->n_fields);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = MEMBER(size_t, msg, f->quantifier_offset);
            const char *arr = MEMBER(const char *, msg, f->offset);
            size_t sz = type_size(f->type);
            lua_createtable(L, (int)(n < 1024 ? n : 1024), 0);
            for (size_t j = 0; arr && j < n; j++) {
                push_value(L, f, arr + j * sz, depth);
                lua_rawseti(L, -2, (lua_Integer)j + 1);
            }
        } else {
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE &&
                !MEMBER(protobuf_c_boolean, msg, f->quantifier_offset))
                continue;
            push_value(L, f, (const char *)msg + f->offset, depth);
        }
        lua_setfield(L, -2, f->name);
    }
}

void mcp_pb_push(lua_State *L, const ProtobufCMessage *msg)
{
    push_message_depth(L, msg, 0);
}

/* ---- table -> message ---- */

static const char *const MSG_MT = "mcp.pbmessage";

typedef struct pb_box {
    ProtobufCMessage *msg;
} pb_box;

static int box_gc(lua_State *L)
{
    pb_box *b = lua_touserdata(L, 1);
    if (b->msg) {
        protobuf_c_message_free_unpacked(b->msg, NULL);
        b->msg = NULL;
    }
    return 0;
}

static ProtobufCMessage *new_message(lua_State *L, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m)
        luaL_error(L, "out of memory");
    d->message_init(m);
    return m;
}

static void fill_message(lua_State *L, int idx, ProtobufCMessage *m, const char *path, int depth);

static lua_Integer check_int(lua_State *L, int idx, const char *path, const char *name)
{
    int isnum;
    lua_Integer v = lua_tointegerx(L, idx, &isnum);
    if (!isnum)
        luaL_error(L, "field '%s%s': want an integer, got %s", path, name, luaL_typename(L, idx));
    return v;
}

/* Stores the Lua value at idx into p (a field slot or an array element). */
static void store_value(lua_State *L, int idx, const ProtobufCFieldDescriptor *f, void *p,
                        const char *path, int depth)
{
    idx = lua_absindex(L, idx);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        *(int32_t *)p = (int32_t)check_int(L, idx, path, f->name);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = (uint32_t)check_int(L, idx, path, f->name);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)p = (int64_t)check_int(L, idx, path, f->name);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = (uint64_t)check_int(L, idx, path, f->name);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        int isnum;
        lua_Number v = lua_tonumberx(L, idx, &isnum);
        if (!isnum)
            luaL_error(L, "field '%s%s': want a number, got %s", path, f->name,
                       luaL_typename(L, idx));
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)v;
        else
            *(double *)p = v;
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = lua_toboolean(L, idx);
        break;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES: {
        if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
            luaL_error(L, "field '%s%s': want a string, got %s", path, f->name,
                       luaL_typename(L, idx));
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        char *copy = mcp_strndup(s, len);
        if (!copy)
            luaL_error(L, "out of memory");
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            *(char **)p = copy;
        } else {
            ProtobufCBinaryData *b = p;
            b->data = (uint8_t *)copy;
            b->len = len;
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!lua_istable(L, idx))
            luaL_error(L, "field '%s%s': want a table, got %s", path, f->name,
                       luaL_typename(L, idx));
        const ProtobufCMessageDescriptor *sub = f->descriptor;
        ProtobufCMessage *m = new_message(L, sub);
        *(ProtobufCMessage **)p = m; /* owned by the parent from here on, for the __gc guard */
        char subpath[256];
        snprintf(subpath, sizeof subpath, "%s%s.", path, f->name);
        fill_message(L, idx, m, subpath, depth + 1);
        break;
    }
    }
}

static void fill_message(lua_State *L, int idx, ProtobufCMessage *m, const char *path, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > MAX_DEPTH)
        luaL_error(L, "table nested deeper than %d", MAX_DEPTH);
    luaL_checkstack(L, 6, "protobuf message");
    idx = lua_absindex(L, idx);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        int t = lua_getfield(L, idx, f->name);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (t != LUA_TTABLE)
                luaL_error(L, "field '%s%s': want a list, got %s", path, f->name,
                           lua_typename(L, t));
            lua_Integer n = luaL_len(L, -1);
            size_t sz = type_size(f->type);
            if (n > 0) {
                char *arr = calloc((size_t)n, sz);
                if (!arr)
                    luaL_error(L, "out of memory");
                MEMBER(char *, m, f->offset) = arr;
                for (lua_Integer j = 1; j <= n; j++) {
                    lua_rawgeti(L, -1, j);
                    store_value(L, -1, f, arr + (size_t)(j - 1) * sz, path, depth);
                    MEMBER(size_t, m, f->quantifier_offset) = (size_t)j; /* freeable so far */
                    lua_pop(L, 1);
                }
            }
        } else {
            store_value(L, -1, f, (char *)m + f->offset, path, depth);
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
                MEMBER(protobuf_c_boolean, m, f->quantifier_offset) = 1;
        }
        lua_pop(L, 1);
    }
}

ProtobufCMessage *mcp_pb_check(lua_State *L, int idx, const ProtobufCMessageDescriptor *desc)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    /* The message lives in a guarded box while it is filled: a type error
     * raised half-way frees it at the next collection. */
    pb_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->msg = NULL;
    if (luaL_newmetatable(L, MSG_MT)) {
        mcp_set_cfunction(L, "__gc", box_gc);
    }
    lua_setmetatable(L, -2);
    box->msg = new_message(L, desc);
    fill_message(L, idx, box->msg, "", 0);
    ProtobufCMessage *m = box->msg;
    box->msg = NULL;
    lua_pop(L, 1);
    return m;
}
