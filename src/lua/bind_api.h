/* What the two halves of core.api share: the server's (bind_api.c) and the
 * client's (bind_api_client.c). */
#ifndef MCP_LUA_BIND_API_H
#define MCP_LUA_BIND_API_H

#include <lua.h>
#include <protobuf-c/protobuf-c.h>

/* The method of the agent's API at "/package.Service/Method", or NULL. */
const ProtobufCMethodDescriptor *mcp_api_find_method(const char *path);
/* Adds call and watch to the table on top (host_idx: the host upvalue) and
 * makes the stream metatable. */
void mcp_api_client_open(lua_State *L, int host_idx);

#endif
