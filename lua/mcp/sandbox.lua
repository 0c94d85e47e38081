-- mcp.sandbox: the globals a policy sees (issue #14.9, SPEC §7 "policies
-- touch the world only through agent"): Lua's own libraries without what
-- reaches past the agent object — no os.execute, io.popen, package.loadlib,
-- debug library, bytecode, or the raw C core (`mcp.core`, `mcp.host.*`).
-- The library modules under mcp.* stay trusted: a policy may require them.
-- `eval` scripts are the operator's own and keep the full environment.
local M = {}

local function copy(t, without)
    local out = {}
    for k, v in pairs(t) do
        if not (without and without[k]) then out[k] = v end
    end
    return out
end

local BLOCKED = { ["mcp.core"] = true }

local function safe_require(name)
    if type(name) ~= "string" then error("require: module name must be a string", 2) end
    if BLOCKED[name] or name:match("^mcp%.host%.") then
        error(string.format("policies reach the world through `agent`: %s is not for them", name), 2)
    end
    return require(name)
end

local globals = {}
for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
                     "rawlen", "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring",
                     "type", "xpcall", "collectgarbage", "_VERSION" }) do
    globals[k] = _G[k]
end
globals.string = copy(string, { dump = true })
globals.table = copy(table)
globals.math = copy(math)
globals.utf8 = copy(utf8)
globals.coroutine = copy(coroutine)
globals.os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime, getenv = os.getenv }
globals.io = copy(io, { popen = true, input = true, output = true, tmpfile = true })
globals.require = safe_require
-- text chunks only, in the policy's world unless given another
globals.load = function(chunk, name, _, env) return load(chunk, name, "t", env or globals) end
globals.loadfile = function(path, _, env) return loadfile(path, "t", env or globals) end
globals.dofile = function(path)
    local f = assert(loadfile(path, "t", globals))
    return f()
end
globals._G = globals

--- The curated globals table (read through by each policy's own _ENV).
M.globals = globals

return M
