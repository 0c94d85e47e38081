/* libFuzzer: protobuf bytes decoded into Lua tables (src/lua/pbconv.c), and
 * the table encoded back. The first byte picks the message type; a decoded
 * message must survive push then check and pack to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "grpc/health/v1/health.pb-c.h"
#include "mcp/agent/v1/agent.pb-c.h"
#include "../../src/lua/pbconv.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &mcp__agent__v1__deploy_request__descriptor,
    &mcp__agent__v1__deploy_response__descriptor,
    &mcp__agent__v1__service_request__descriptor,
    &mcp__agent__v1__component_result__descriptor,
    &mcp__agent__v1__service_response__descriptor,
    &mcp__agent__v1__list_services_request__descriptor,
    &mcp__agent__v1__list_services_response__descriptor,
    &mcp__agent__v1__service_info__descriptor,
    &mcp__agent__v1__component_info__descriptor,
    &mcp__agent__v1__port_mapping__descriptor,
    &mcp__agent__v1__route_status__descriptor,
    &mcp__agent__v1__event__descriptor,
    &mcp__agent__v1__watch_events_request__descriptor,
    &mcp__agent__v1__component_status__descriptor,
    &mcp__agent__v1__service_status__descriptor,
    &mcp__agent__v1__recover_request__descriptor,
    &mcp__agent__v1__recover_entry__descriptor,
    &mcp__agent__v1__recover_report__descriptor,
    &mcp__agent__v1__boot_status_request__descriptor,
    &mcp__agent__v1__boot_service_status__descriptor,
    &mcp__agent__v1__boot_stage__descriptor,
    &mcp__agent__v1__boot_status_response__descriptor,
    &mcp__agent__v1__node_status_request__descriptor,
    &mcp__agent__v1__node_status_response__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
    &grpc__health__v1__health_check_response__descriptor,
};
#define N_TYPES (sizeof types / sizeof types[0])

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    L = luaL_newstate();
    if (!L)
        abort();
    return 0;
}

/* check(table, descriptor) -> light userdata of the built message */
static int do_check(lua_State *l)
{
    const ProtobufCMessageDescriptor *d = lua_touserdata(l, 2);
    ProtobufCMessage *m = mcp_pb_check(l, 1, d);
    lua_pushlightuserdata(l, m);
    return 1;
}

/* Whether m or a submessage kept fields this build does not know. */
static int has_unknown(const ProtobufCMessage *m)
{
    if (m->n_unknown_fields)
        return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)base;
            for (size_t j = 0; j < n; j++)
                if (has_unknown(v[j]))
                    return 1;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)base;
            if (sub && has_unknown(sub))
                return 1;
        }
    }
    return 0;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf || protobuf_c_message_pack(m, buf) != *len)
        abort();
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] % N_TYPES];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m)
        return 0;
    int top = lua_gettop(L);
    lua_pushcfunction(L, do_check);
    mcp_pb_push(L, m);
    lua_pushlightuserdata(L, (void *)d);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK)
        __builtin_trap(); /* what push made, check must take */
    ProtobufCMessage *back = lua_touserdata(L, -1);
    /* Unknown fields are not kept in the table: compare only messages without them. */
    if (!has_unknown(m)) {
        size_t a_len, b_len;
        uint8_t *a = pack(m, &a_len), *b = pack(back, &b_len);
        if (a_len != b_len || memcmp(a, b, a_len) != 0)
            __builtin_trap(); /* the table lost or changed a field */
        free(a);
        free(b);
    }
    protobuf_c_message_free_unpacked(back, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
