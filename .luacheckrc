-- luacheck configuration for the Lua library, the policies and their specs.
std = "lua54"
max_line_length = 120
include_files = { "lua/**/*.lua", "policies/**/*.lua", "tests/lua/**/*.lua", ".luacheckrc" }

files["tests/lua/**/*_spec.lua"] = {
    std = "+busted",
}
