/* placeholder until the Lua host lands */ typedef int mcp_lua_unused;
