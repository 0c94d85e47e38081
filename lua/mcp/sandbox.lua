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

--- A require that refuses the raw C core and the host's modules;
--- refused(name) is the error text.
function M.guarded_require(refused)
    return function(name)
        if type(name) ~= "string" then error("require: module name must be a string", 2) end
        if name == "mcp.core" or name:match("^mcp%.host%.") then error(refused(name), 2) end
        return require(name)
    end
end

--- Gives env Lua's loaders for text chunks only, run in env unless given
--- another environment, and env as its own _G. Returns env.
function M.confine_loaders(env)
    env.load = function(chunk, name, _, e) return load(chunk, name, "t", e or env) end
    env.loadfile = function(path, _, e) return loadfile(path, "t", e or env) end
    env.dofile = function(path)
        local f = assert(loadfile(path, "t", env))
        return f()
    end
    env._G = env
    return env
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
globals.require = M.guarded_require(function(name)
    return string.format("policies reach the world through `agent`: %s is not for them", name)
end)
M.confine_loaders(globals)

--- The curated globals table (read through by each policy's own _ENV).
M.globals = globals

return M
