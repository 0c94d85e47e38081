/* Protobuf messages <-> Lua tables, driven by protobuf-c descriptors. */
#ifndef MCP_LUA_PBCONV_H
#define MCP_LUA_PBCONV_H

#include <lua.h>
#include <protobuf-c/protobuf-c.h>

/* Pushes msg as a table: every field by its proto name (scalars with their
 * defaults, repeated fields as arrays, unset submessages nil). */
void mcp_pb_push(lua_State *L, const ProtobufCMessage *msg);

/* Builds a message of desc from the table at idx (missing fields keep their
 * defaults; unknown keys are ignored). Raises a Lua error naming the field on
 * a type mismatch. Free with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *mcp_pb_check(lua_State *L, int idx, const ProtobufCMessageDescriptor *desc);

#endif
